/**
 * Encryption at rest with real `credsync run` daemons on one PostgreSQL schema (issue 14): the table
 * holds only envelopes while the other mirror gets the plaintext; key rotation with one daemon on the
 * old key set and one on the new, `rewrap` while both run; a daemon missing the key leaves its mirror
 * untouched and says which key id it lacks.
 *
 * Needs dist/ (npx tsc -p tsconfig.build.json). PostgreSQL from the global setup (inject('pgUrl')).
 */
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { processGroup, type Daemon } from '../../support/daemon.js';
import { freshSchema, quoteIdent, withAdmin, type FreshSchema } from '../../support/pg-server.js';
import { tempDir } from '../../support/tmp.js';
import { waitFor } from '../../support/wait.js';
import { authPath, authRow, authRows, configPath, configRows, fileSig, logged, stderrTails, waitJson, writeAuth, writeConfig } from './helpers.js';

const pgUrl = inject('pgUrl');
const skipReason = inject('pgSkipReason');

const keyEntry = (kid: string): string => `${kid}:${randomBytes(32).toString('base64')}`;
const K1 = keyEntry('k1');
const K2 = keyEntry('k2');

const cred = (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: 'claude',
  email: id.replace(/\.json$/, ''),
  refresh_token: `rt-${id}-${randomBytes(6).toString('hex')}`,
  ...extra,
});

/** The key id of a stored envelope (rows as PostgreSQL returns them), or `plain`. */
const kidOf = (content: unknown): string => {
  const o = content as Record<string, unknown>;
  return o && o.$credsync === 'enc.v1' ? String(o.kid) : 'plain';
};

describe.skipIf(!pgUrl)(`encryption at rest with daemons on PostgreSQL${pgUrl ? '' : ` (skipped: ${skipReason})`}`, () => {
  const g = processGroup('all');
  let ns: FreshSchema;
  let root: { path: string; remove(): Promise<void> };
  let A: Daemon | undefined, B: Daemon | undefined, C: Daemon | undefined, D: Daemon | undefined;
  let a: string, b: string, c: string, d: string;
  const env = (mirror: string, extra: Record<string, string>): Record<string, string> => ({
    PGSTORE_DSN: pgUrl,
    PGSTORE_SCHEMA: ns.schema,
    CREDSYNC_LOCAL_DIR: mirror,
    CREDSYNC_LOG_LEVEL: 'info',
    ...extra,
  });
  const cli = (args: string[], keys: string): ReturnType<typeof g.cli> =>
    g.cli(args, { env: { PGSTORE_DSN: pgUrl, PGSTORE_SCHEMA: ns.schema, CREDSYNC_ENCRYPTION_KEYS: keys }, timeoutMs: 60_000 });

  beforeAll(async () => {
    ns = freshSchema(pgUrl);
    root = await tempDir('credsync-enc-e2e-');
    [a, b, c, d] = ['a', 'b', 'c', 'd'].map((m) => join(root.path, m)) as [string, string, string, string];
    // Rotation step 1 done everywhere (k2 added as decrypt-only); step 2 (k2 primary) reached B only.
    [A, B] = await Promise.all([g.start({ env: env(a, { CREDSYNC_ENCRYPTION_KEYS: `${K1},${K2}` }), name: 'A' }), g.start({ env: env(b, { CREDSYNC_ENCRYPTION_KEYS: `${K2},${K1}` }), name: 'B' })]);
  });

  afterAll(async () => {
    await g.killAll();
    await ns?.drop().catch(() => {});
    await root?.remove();
  });

  const dump = (): void => onTestFailed(() => console.error(stderrTails([A, B, C, D])));

  it('the table holds only envelopes, no planted token; the other mirror has the plaintext', async () => {
    dump();
    const fromA = cred('from-a.json');
    const fromB = cred('team/from-b.json');
    await writeAuth(a, 'from-a.json', fromA);
    await writeAuth(b, 'team/from-b.json', fromB);
    const cfg = `port: 8317\napi-keys:\n  - canary-${randomBytes(8).toString('hex')}\n`;
    await writeConfig(a, cfg);
    await waitJson(authPath(b, 'from-a.json'), fromA, 5000);
    await waitJson(authPath(a, 'team/from-b.json'), fromB, 5000);
    await waitFor('config on B', async () => (await readFile(configPath(b), 'utf8').catch(() => '')) === cfg, 5000);
    const rows = await authRows(pgUrl, ns.schema);
    expect(rows.map((r) => [r.id, kidOf(r.content)])).toEqual([
      ['from-a.json', 'k1'],
      ['team/from-b.json', 'k2'],
    ]);
    const everything = rows.map((r) => r.contentText).join('\n') + (await configRows(pgUrl, ns.schema)).map((r) => r.content).join('\n');
    for (const token of [fromA.refresh_token, fromB.refresh_token, cfg.split('- ')[1]!.trim()]) expect(everything).not.toContain(token as string);
    expect(kidOf(JSON.parse((await configRows(pgUrl, ns.schema))[0]!.content))).toBe('k1');
  });

  it('rewrap while both daemons run loses no update; after the last daemon takes the new key, nothing is left under k1', async () => {
    dump();
    const ids = Array.from({ length: 20 }, (_, i) => `bulk-${i}.json`);
    const want = new Map(ids.map((id) => [id, cred(id)]));
    for (const id of ids) await writeAuth(a, id, want.get(id));
    for (const id of ids) await waitJson(authPath(b, id), want.get(id), 5000);
    const untouched = await fileSig(authPath(b, 'bulk-0.json'));

    // A (old primary) refreshes tokens while rewrap runs with the new key set.
    const rewrap = cli(['rewrap', '--json'], `${K2},${K1}`);
    for (const id of ids.slice(10)) {
      const v = cred(id, { refreshed: true });
      want.set(id, v);
      await writeAuth(a, id, v);
    }
    const r = await rewrap;
    expect(r.code, r.stderr).toBe(0);
    // Every refresh arrives in B: nothing lost.
    for (const id of ids) await waitJson(authPath(b, id), want.get(id), 5000);
    for (const id of ids) await waitJson(authPath(a, id), want.get(id), 5000);
    // A sentinel through the same path: when it has arrived, the rewrap's notifications were handled too.
    const s = cred('sentinel.json');
    await writeAuth(b, 'sentinel.json', s);
    await waitJson(authPath(a, 'sentinel.json'), s, 5000);
    expect(await fileSig(authPath(b, 'bulk-0.json')), 'a re-encryption is not a change: the mirror file is not rewritten').toEqual(untouched);

    // Rotation step 2 on A, then rewrap again: everything under k2.
    await A!.stop();
    A = await g.start({ env: env(a, { CREDSYNC_ENCRYPTION_KEYS: `${K2},${K1}` }), name: 'A2' });
    const r2 = await cli(['rewrap', '--json'], `${K2},${K1}`);
    expect(r2.code, r2.stderr).toBe(0);
    const rows = await authRows(pgUrl, ns.schema);
    expect(new Set(rows.map((x) => kidOf(x.content)))).toEqual(new Set(['k2']));
    expect(kidOf(JSON.parse((await configRows(pgUrl, ns.schema))[0]!.content))).toBe('k2');
    const doc = await g.cli(['doctor', '--json'], { env: { PGSTORE_DSN: pgUrl, PGSTORE_SCHEMA: ns.schema, CREDSYNC_ENCRYPTION_KEYS: K2, CREDSYNC_LOCAL_DIR: b }, timeoutMs: 60_000 });
    const check = (JSON.parse(doc.stdout) as { checks: Array<{ check: string; status: string; detail: string }> }).checks.find((x) => x.check === 'store encryption');
    expect(check).toMatchObject({ status: 'ok' });
    expect(check!.detail).toMatch(/under primary key k2/);
    // The restarted A still has every item (nothing was lost or rejected across the restart).
    for (const id of ids) await waitJson(authPath(a, id), want.get(id), 5000);
  });

  it('a daemon missing the key leaves its mirror untouched, never overwrites the store, and says which key id it lacks', async () => {
    dump();
    // C: only the old key; its mirror holds an older copy of an item. D: no key at all.
    const stale = { type: 'claude', email: 'bulk-3', refresh_token: 'rt-stale' };
    await writeAuth(c, 'bulk-3.json', stale);
    const staleSig = await fileSig(authPath(c, 'bulk-3.json'));
    const rowBefore = await authRow(pgUrl, ns.schema, 'bulk-3.json');
    C = await g.start({ env: env(c, { CREDSYNC_ENCRYPTION_KEYS: K1 }), name: 'C' });
    D = await g.start({ env: env(d, {}), name: 'D' });
    await C.waitForLog((l) => /encrypted with key id k2, which is not configured: add it to CREDSYNC_ENCRYPTION_KEYS/.test(l.json?.msg ?? ''), 10_000);
    await D.waitForLog((l) => /encrypted with key id k2, and this process has no encryption key: set CREDSYNC_ENCRYPTION_KEYS/.test(l.json?.msg ?? ''), 10_000);
    // A change that C cannot read either: still not written.
    const fresh = cred('bulk-3.json', { refreshed: 'again' });
    await writeAuth(b, 'bulk-3.json', fresh);
    await waitJson(authPath(a, 'bulk-3.json'), fresh, 5000);
    const s = cred('sentinel2.json');
    await writeAuth(b, 'sentinel2.json', s);
    await waitJson(authPath(a, 'sentinel2.json'), s, 5000);
    await C.waitForLog((l) => (l.json?.msg ?? '').includes('sentinel2.json'), 10_000);
    expect(await fileSig(authPath(c, 'bulk-3.json'))).toEqual(staleSig);
    expect(JSON.parse(await readFile(authPath(c, 'bulk-3.json'), 'utf8'))).toEqual(stale);
    // D's mirror: nothing written (no credential it cannot read).
    expect(await readFile(authPath(d, 'bulk-3.json'), 'utf8').catch(() => null)).toBeNull();
    // The store kept the newest copy, encrypted: C's stale copy was not pushed over it.
    const row = await authRow(pgUrl, ns.schema, 'bulk-3.json');
    expect(row!.version).not.toBe(rowBefore!.version);
    expect(kidOf(row!.content)).toBe('k2');
    expect(logged(C, /not overwriting the stored item/).length + logged(C, /validate bulk-3\.json/).length).toBeGreaterThan(0);
  });

  it('a tampered row (one ciphertext byte flipped) never reaches a mirror: both keep their copy and say it does not decrypt', async () => {
    dump();
    const id = 'bulk-5.json';
    const sigA = await fileSig(authPath(a, id));
    const sigB = await fileSig(authPath(b, id));
    const row = (await authRow(pgUrl, ns.schema, id))!;
    const env = row.content as { ct: string };
    const ct = Buffer.from(env.ct, 'base64url');
    ct[ct.length - 20] = ct[ct.length - 20]! ^ 0x40;
    await withAdmin(pgUrl, (sql) =>
      sql.unsafe(`UPDATE ${quoteIdent(ns.schema)}.auth_store SET content = jsonb_set(content, '{ct}', to_jsonb($1::text)) WHERE id = $2`, [ct.toString('base64url'), id]),
    );
    onTestFailed(() => console.error([A!, B!].map((x) => x.lines.filter((l) => l.raw.includes('bulk-5')).map((l) => l.raw).join('\n')).join('\n---\n')));
    for (const dmn of [A!, B!]) await dmn.waitForLog((l) => (l.json?.msg ?? '').startsWith(`decrypt auths/${id}: encrypted with key id k2 but does not decrypt`), 10_000);
    expect(await fileSig(authPath(a, id))).toEqual(sigA);
    expect(await fileSig(authPath(b, id))).toEqual(sigB);
  });
});
