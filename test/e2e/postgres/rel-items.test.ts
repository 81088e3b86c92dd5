/**
 * Issue 8 items 5, 6, 8, 12, 13 with two real daemons on real PostgreSQL (what a user notices).
 * Written by the rel helper; lives outside its allowed test folders: copy into test/e2e/postgres/ to run.
 */
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { processGroup, type Daemon } from '../../support/daemon.js';
import { freshSchema, quoteIdent, withAdmin, type FreshSchema } from '../../support/pg-server.js';
import { tempDir } from '../../support/tmp.js';
import { sleep, waitFor } from '../../support/wait.js';
import { authPath, authRow, logged, stderrTails, waitJson, waitRow, writeAuth } from './helpers.js';

const pgUrl = inject('pgUrl');
const skipReason = inject('pgSkipReason');

describe.skipIf(!pgUrl)(`issue 8 file and content items with real daemons${pgUrl ? '' : ` (skipped: ${skipReason})`}`, () => {
  const g = processGroup('all');
  let ns: FreshSchema;
  let root: { path: string; remove(): Promise<void> };
  let A: Daemon, B: Daemon;
  let a: string, b: string;
  const env = (schema: string, mirror: string): Record<string, string> => ({
    PGSTORE_DSN: pgUrl,
    PGSTORE_SCHEMA: schema,
    CREDSYNC_LOCAL_DIR: mirror,
    CREDSYNC_DEBOUNCE: '20ms',
    CREDSYNC_RECONCILE_INTERVAL: '2s',
    CREDSYNC_LOG_LEVEL: 'info',
  });
  const upsertText = (id: string, text: string): Promise<unknown> =>
    withAdmin(pgUrl, (sql) =>
      sql.unsafe(
        `INSERT INTO ${quoteIdent(ns.schema)}.auth_store (id, content) VALUES ($1, $2::text::jsonb) ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, updated_at = NOW()`,
        [id, text],
      ),
    );

  beforeAll(async () => {
    ns = freshSchema(pgUrl);
    root = await tempDir('credsync-rel-');
    [a, b] = ['a', 'b'].map((m) => join(root.path, m)) as [string, string];
    [A, B] = await Promise.all([g.start({ env: env(ns.schema, a), name: 'A' }), g.start({ env: env(ns.schema, b), name: 'B' })]);
    for (const i of [1, 2, 3, 4, 5, 6]) await writeAuth(a, `base${i}.json`, { n: i });
    for (const i of [1, 2, 3, 4, 5, 6]) await waitRow(pgUrl, ns.schema, `base${i}.json`, { n: i });
  });
  afterAll(async () => {
    await g.killAll();
    await ns?.drop().catch(() => {});
    await root?.remove();
  });
  const dump = (): void => onTestFailed(() => console.error(stderrTails([A, B])));

  it('item 5: a row 20 directories deep is pulled and stays, through several full reconciles', async () => {
    dump();
    const id = Array.from({ length: 20 }, (_, i) => `d${String(i + 1).padStart(2, '0')}`).join('/') + '/deep.json';
    await upsertText(id, '{"deep":1}');
    await Promise.all([a, b].map((m) => waitJson(authPath(m, id), { deep: 1 })));
    await sleep(5000); // two periodic reconciles
    expect(await authRow(pgUrl, ns.schema, id)).not.toBeNull();
    expect(logged(A, /deleted locally|removed from store/).concat(logged(B, /deleted locally|removed from store/))).toEqual([]);
  });

  it('item 13: .hidden.json, team/.dot.json and UPPER.JSON travel both ways', async () => {
    dump();
    for (const id of ['.hidden.json', 'team/.dot.json', 'UPPER.JSON']) {
      await upsertText(id, `{"id":"${id}"}`);
      await Promise.all([a, b].map((m) => waitJson(authPath(m, id), { id })));
    }
    await writeAuth(b, '.from-b.json', { x: 1 });
    await waitRow(pgUrl, ns.schema, '.from-b.json', { x: 1 });
    await waitJson(authPath(a, '.from-b.json'), { x: 1 });
  });

  it('item 12: a change of an integer beyond 2^53 and under __proto__ reaches the mirrors', async () => {
    dump();
    await upsertText('big.json', '{"n":9007199254740992,"__proto__":{"a":1}}');
    await waitFor('big.json pulled', async () => (await readFile(authPath(b, 'big.json'), 'utf8').catch(() => '')).includes('9007199254740992'));
    await upsertText('big.json', '{"n":9007199254740993,"__proto__":{"a":1}}');
    await waitFor('big int change pulled', async () => (await readFile(authPath(b, 'big.json'), 'utf8').catch(() => '')).includes('9007199254740993'), 5000);
    await upsertText('big.json', '{"n":9007199254740993,"__proto__":{"a":2}}');
    await waitFor('__proto__ change pulled', async () => /"a": ?2/.test(await readFile(authPath(a, 'big.json'), 'utf8').catch(() => '')), 5000);
  });

  it('item 8: a 10,000-deep row is rejected, everything else keeps syncing', async () => {
    dump();
    await upsertText('nest.json', '{"a":' + '['.repeat(10_000) + ']'.repeat(10_000) + '}');
    await writeAuth(a, 'after-nest.json', { ok: 1 });
    await waitJson(authPath(b, 'after-nest.json'), { ok: 1 });
    expect(logged(A, /Maximum call stack/).concat(logged(B, /Maximum call stack/))).toEqual([]);
    expect(A.running && B.running).toBe(true);
  });

  it('item 6: a FIFO swapped in under a credential name blocks nothing and deletes nothing', async () => {
    dump();
    await writeAuth(a, 'fifo.json', { f: 1 });
    await waitRow(pgUrl, ns.schema, 'fifo.json', { f: 1 });
    await waitJson(authPath(b, 'fifo.json'), { f: 1 });
    execFileSync('mkfifo', [join(a, 'auths', '.swap')]);
    await rename(join(a, 'auths', '.swap'), authPath(a, 'fifo.json'));
    await sleep(300);
    await writeAuth(a, 'after-fifo.json', { ok: 2 });
    await waitJson(authPath(b, 'after-fifo.json'), { ok: 2 });
    await sleep(3000); // a periodic reconcile
    expect(await authRow(pgUrl, ns.schema, 'fifo.json')).not.toBeNull();
    await waitJson(authPath(b, 'fifo.json'), { f: 1 });
    expect(logged(A, /fifo\.json.*(deleted|removed)|(deleted|removed).*fifo\.json/)).toEqual([]);
  });
});
