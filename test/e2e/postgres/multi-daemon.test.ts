/**
 * Two or three real `credsync run` processes on one PostgreSQL database (each test its own schema),
 * each with its own mirror: propagation, operator SQL, CLIProxyAPI compatibility of the rows,
 * simultaneous edits, crashes, LISTEN connection loss, JSONB normalisation, idleness, seeding, and a
 * database restart (on a private embedded server, so the shared one is never disturbed).
 *
 * Needs dist/ (npx tsc -p tsconfig.build.json). PostgreSQL comes from the global setup (inject('pgUrl'));
 * outside CI the tests skip, saying why, when no server can be had; in CI that is a failure.
 */
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { processGroup, type Daemon } from '../../support/daemon.js';
import { adminSql, backendsOf, freshSchema, quoteIdent, withAdmin, type FreshSchema } from '../../support/pg-server.js';
import { tempDir } from '../../support/tmp.js';
import { sleep, waitFor } from '../../support/wait.js';
import {
  authPath,
  authRow,
  authRows,
  cliproxyUpsertAuth,
  configPath,
  configRows,
  conflictFiles,
  cred,
  exists,
  fileSig,
  logged,
  readJson,
  startPrivateServer,
  stderrTails,
  waitGone,
  waitJson,
  waitNoRow,
  waitRow,
  withDatabase,
  writeAuth,
  writeConfig,
  type PrivateServer,
} from './helpers.js';

const pgUrl = inject('pgUrl');
const skipReason = inject('pgSkipReason');

/** Environment of one daemon: CLIProxyAPI's variables (PGSTORE_DSN + PGSTORE_SCHEMA) or a store URL. */
function pgEnv(dsn: string, schema: string, mirror: string, o: { via?: 'pgstore' | 'url'; extra?: Record<string, string> } = {}): Record<string, string> {
  const store: Record<string, string> =
    o.via === 'url'
      ? { CREDSYNC_STORE: `${dsn}${dsn.includes('?') ? '&' : '?'}schema=${encodeURIComponent(schema)}` }
      : { PGSTORE_DSN: dsn, PGSTORE_SCHEMA: schema };
  return { ...store, CREDSYNC_LOCAL_DIR: mirror, CREDSYNC_DEBOUNCE: '20ms', CREDSYNC_RECONCILE_INTERVAL: '60s', CREDSYNC_LOG_LEVEL: 'info', ...o.extra };
}

const stats = (xs: number[]): string => {
  if (!xs.length) return 'n/a';
  const s = [...xs].sort((a, b) => a - b);
  const med = s[Math.floor(s.length / 2)]!;
  return `n=${s.length} min=${s[0]} median=${med} max=${s[s.length - 1]} ms`;
};

/** Dumps the daemons' recent stderr when a test fails. */
function dumpOnFailure(daemons: () => Array<Daemon | undefined>): void {
  onTestFailed(() => {
    console.error(stderrTails(daemons()));
  });
}

/** The LISTEN backends of daemons on this schema (default application_name 'credsync:listen'). */
async function listenBackends(url: string, schema: string): Promise<Array<{ pid: number; query: string }>> {
  const all = await backendsOf(url, 'credsync:listen');
  return all.filter((b) => b.query === `LISTEN ${quoteIdent(`credsync.${schema}`)}`);
}

describe.skipIf(!pgUrl)(`credsync daemons on one PostgreSQL database${pgUrl ? '' : ` (skipped: ${skipReason})`}`, () => {
  // ------------------------------------------------------------------ three daemons, one schema

  describe('three daemons on one schema', () => {
    const g = processGroup('all');
    let ns: FreshSchema;
    let root: { path: string; remove(): Promise<void> };
    let A: Daemon, B: Daemon, C: Daemon;
    let a: string, b: string, c: string;
    const latency = { create: [] as number[], update: [] as number[], delete: [] as number[], sqlUpdate: [] as number[], sqlInsert: [] as number[], sqlDelete: [] as number[] };

    beforeAll(async () => {
      ns = freshSchema(pgUrl);
      root = await tempDir('credsync-pg3-');
      [a, b, c] = ['a', 'b', 'c'].map((m) => join(root.path, m)) as [string, string, string];
      // A and B as CLIProxyAPI configures it (PGSTORE_*), C with a store URL.
      [A, B, C] = await Promise.all([
        g.start({ env: pgEnv(pgUrl, ns.schema, a), name: 'A' }),
        g.start({ env: pgEnv(pgUrl, ns.schema, b), name: 'B' }),
        g.start({ env: pgEnv(pgUrl, ns.schema, c, { via: 'url' }), name: 'C' }),
      ]);
    });

    afterAll(async () => {
      console.info(
        `[e2e/postgres] propagation latency to the other two mirrors (max of both):\n` +
          Object.entries(latency)
            .map(([k, v]) => `  ${k}: ${stats(v)} [${v.join(', ')}]`)
            .join('\n'),
      );
      await g.killAll();
      await ns?.drop().catch(() => {});
      await root?.remove();
    });

    const others = (m: string): string[] => [a, b, c].filter((x) => x !== m);

    it('create, update and delete propagate between the daemons (create latency < 1 s)', async () => {
      dumpOnFailure(() => [A, B, C]);
      // creates on A (flat and nested ids), each timed until it is in B and C
      const ids = ['claude-one@example.com.json', 'claude-two@example.com.json', 'gemini-three@example.com.json', 'codex-four.json', 'team/five.json', 'team/deep/six.json'];
      for (const id of ids) {
        const v = cred(id);
        const t0 = Date.now();
        await writeAuth(a, id, v);
        const ms = Math.max(...(await Promise.all(others(a).map((m) => waitJson(authPath(m, id), v, 3000, t0)))));
        latency.create.push(ms);
        expect(ms, `create ${id}: A → B and C latency (ms)`).toBeLessThan(1000);
        await waitRow(pgUrl, ns.schema, id, v);
      }
      // creates on B and C reach the others too
      for (const [m, id] of [
        [b, 'from-b.json'],
        [c, 'from-c.json'],
      ] as const) {
        const v = cred(id);
        const t0 = Date.now();
        await writeAuth(m, id, v);
        const ms = Math.max(...(await Promise.all(others(m).map((o) => waitJson(authPath(o, id), v, 3000, t0)))));
        latency.create.push(ms);
        expect(ms, `create ${id} latency (ms)`).toBeLessThan(1000);
      }

      // updates from each daemon in turn
      let n = 0;
      for (const m of [b, c, a, b]) {
        const id = ids[n % ids.length]!;
        const v = cred(id, { access_token: `at-updated-${n}`, last_refresh: new Date(Date.UTC(2025, 1, 1, 0, 0, n)).toISOString() });
        n++;
        await sleep(30);
        const t0 = Date.now();
        await writeAuth(m, id, v);
        const ms = Math.max(...(await Promise.all(others(m).map((o) => waitJson(authPath(o, id), v, 3000, t0)))));
        latency.update.push(ms);
        expect(ms, `update ${id} latency (ms)`).toBeLessThan(1000);
        await waitRow(pgUrl, ns.schema, id, v);
      }

      // a delete on C (one of 8 credentials: well under the 50% guard)
      const doomed = 'codex-four.json';
      const t0 = Date.now();
      await unlink(authPath(c, doomed));
      const ms = Math.max(...(await Promise.all(others(c).map((o) => waitGone(authPath(o, doomed), 3000, t0)))));
      latency.delete.push(ms);
      await waitNoRow(pgUrl, ns.schema, doomed);
      // A correctness bound, not a benchmark (bench/ measures latency): generous enough for a loaded 2-core CI machine.
      expect(ms, 'delete latency (ms)').toBeLessThan(3000);
      // and a nested one on A
      await unlink(authPath(a, 'team/deep/six.json'));
      await Promise.all(others(a).map((o) => waitGone(authPath(o, 'team/deep/six.json'))));
      await waitNoRow(pgUrl, ns.schema, 'team/deep/six.json');
      // nothing else went with them
      const rows = await authRows(pgUrl, ns.schema);
      expect(rows.map((r) => r.id).sort()).toEqual(['claude-one@example.com.json', 'claude-two@example.com.json', 'from-b.json', 'from-c.json', 'gemini-three@example.com.json', 'team/five.json']);
      for (const m of [a, b, c]) for (const r of rows) expect(await readJson(authPath(m, r.id)), `${m}/${r.id}`).toEqual(r.content);
      for (const d of [A, B, C]) expect(logged(d, /^conflict /), `${d.name} conflicts`).toEqual([]);
    });

    it("an operator's SQL UPDATE / DELETE and CLIProxyAPI's upsert reach every mirror", async () => {
      dumpOnFailure(() => [A, B, C]);
      const ids = ['op-1.json', 'op-2.json', 'op-3.json'];
      for (const id of ids) await writeAuth(a, id, cred(id));
      for (const id of ids) for (const m of [b, c]) await waitJson(authPath(m, id), cred(id));
      await sleep(100);
      let opSince = 0;
      const sql = adminSql(pgUrl);
      try {
        const table = `${quoteIdent(ns.schema)}.auth_store`;
        // UPDATE with a literal, as in psql
        const updated = cred('op-1.json', { access_token: 'at-set-by-operator', note: "it's \"quoted\" ünïcode" });
        const lit = JSON.stringify(updated).replace(/'/g, "''");
        opSince = Date.now();
        let t0 = Date.now();
        const r1 = await sql.unsafe(`UPDATE ${table} SET content = '${lit}' WHERE id = 'op-1.json'`);
        expect(r1.count).toBe(1);
        latency.sqlUpdate.push(Math.max(...(await Promise.all([a, b, c].map((m) => waitJson(authPath(m, 'op-1.json'), updated, 3000, t0))))));

        // DELETE
        t0 = Date.now();
        const r2 = await sql.unsafe(`DELETE FROM ${table} WHERE id = 'op-2.json'`);
        expect(r2.count).toBe(1);
        latency.sqlDelete.push(Math.max(...(await Promise.all([a, b, c].map((m) => waitGone(authPath(m, 'op-2.json'), 3000, t0))))));

        // CLIProxyAPI's upsert: insert path (nested id), then update path
        const inserted = { type: 'gemini', email: 'new@example.com', token: { access_token: 'at-go', refresh_token: 'rt-go', expiry: '2030-01-01T00:00:00Z' }, project_id: 'p-1' };
        t0 = Date.now();
        await cliproxyUpsertAuth(sql, ns.schema, 'go/gemini-new@example.com.json', inserted);
        expect((await authRow(pgUrl, ns.schema, 'go/gemini-new@example.com.json'))?.jsonType, 'the upsert stored a JSON object').toBe('object');
        latency.sqlInsert.push(Math.max(...(await Promise.all([a, b, c].map((m) => waitJson(authPath(m, 'go/gemini-new@example.com.json'), inserted, 3000, t0))))));
        const upserted = { ...inserted, token: { ...inserted.token, access_token: 'at-go-2' } };
        t0 = Date.now();
        await cliproxyUpsertAuth(sql, ns.schema, 'go/gemini-new@example.com.json', upserted);
        latency.sqlUpdate.push(Math.max(...(await Promise.all([a, b, c].map((m) => waitJson(authPath(m, 'go/gemini-new@example.com.json'), upserted, 3000, t0))))));

        // an operator UPDATE of the config row too
        const cfg = 'port: 8317\nauth-dir: ./auths\ndebug: true\n';
        await writeConfig(a, 'port: 8317\nauth-dir: ./auths\n');
        for (const m of [b, c]) await waitFor(`config in ${m}`, async () => (await readFile(configPath(m), 'utf8').catch(() => '')) === 'port: 8317\nauth-dir: ./auths\n', 3000, 5);
        await sql.unsafe(`UPDATE ${quoteIdent(ns.schema)}.config_store SET content = '${cfg}', updated_at = NOW() WHERE id = 'config'`);
        for (const m of [a, b, c]) await waitFor(`operator's config in ${m}`, async () => (await readFile(configPath(m), 'utf8').catch(() => '')) === cfg, 3000, 5);
      } finally {
        await sql.end({ timeout: 5 });
      }
      for (const l of [...latency.sqlUpdate, ...latency.sqlDelete, ...latency.sqlInsert]) expect(l, 'SQL change → every mirror (ms)').toBeLessThan(1000);
      // nobody pushed the pulled changes back
      await sleep(200);
      for (const d of [A, B, C]) expect(logged(d, /^(push|conflict) auths\/(op-1|go\/)/, opSince), `${d.name} echoed an operator change`).toEqual([]);
      expect(await exists(authPath(a, 'op-3.json'))).toBe(true);
    });

    it('two store changes of one credential a few ms apart: the second one reaches every mirror too (not left stale)', async () => {
      dumpOnFailure(() => [A, B, C]);
      // A proxy refreshing a token twice in a row (or an operator's two UPDATEs): the second
      // notification arrives while the daemons are still pulling the first one.
      const id = 'twice.json';
      await writeAuth(a, id, cred(id, { step: 0 }));
      for (const m of [b, c]) await waitJson(authPath(m, id), cred(id, { step: 0 }));
      await sleep(100);
      const sql = adminSql(pgUrl);
      const stale: string[] = [];
      try {
        const table = `${quoteIdent(ns.schema)}.auth_store`;
        let n = 0;
        for (const gap of [0, 2, 4, 6, 8, 10, 12, 15, 0, 2, 4, 6, 8, 10, 12, 15]) {
          n++;
          const first = cred(id, { step: n, access_token: `at-${n}-first` });
          const second = cred(id, { step: n, access_token: `at-${n}-second` });
          await sql.unsafe(`UPDATE ${table} SET content = $1::text::jsonb, updated_at = NOW() WHERE id = $2`, [JSON.stringify(first), id]);
          if (gap) await sleep(gap);
          await sql.unsafe(`UPDATE ${table} SET content = $1::text::jsonb, updated_at = NOW() WHERE id = $2`, [JSON.stringify(second), id]);
          for (const [name, m] of [
            ['A', a],
            ['B', b],
            ['C', c],
          ] as const) {
            // well past propagation (tens of ms) and well before the 60 s periodic reconcile
            const ok = await waitJson(authPath(m, id), second, 2000).then(
              () => true,
              () => false,
            );
            if (!ok) {
              const held = (await readJson(authPath(m, id))) as { access_token?: string } | undefined;
              stale.push(`gap ${gap} ms: mirror ${name} kept ${held?.access_token}`);
            }
          }
          if (stale.length >= 3) break; // enough evidence; keep the test short
        }
      } finally {
        await sql.end({ timeout: 5 });
      }
      expect(stale, 'mirrors left with the first of two quick store changes (the second notification was dropped)').toEqual([]);
    });

    it("rows written by credsync are what CLIProxyAPI's store reads (ids, JSONB content, config row 'config' with LF)", async () => {
      dumpOnFailure(() => [A, B, C]);
      // pretty-printed, unusual key order, non-ASCII, numbers and nested objects, as a proxy writes them
      const flat = '{\n    "type": "claude",\n    "email": "user@example.com",\n    "expired": "2030-01-01T00:00:00+08:00",\n    "last_refresh": "2025-03-01T10:00:00Z",\n    "access_token": "sk-ant-oat01-x",\n    "refresh_token": "sk-ant-ort01-y",\n    "n": 12.5,\n    "disabled": false,\n    "meta": {"z": 1, "a": [1, "two", null], "名前": "テスト"}\n}\n';
      const nested = { type: 'codex', email: 'n@team', id_token: 'eyJ.x.y', account_id: 'acc-1' };
      await writeFile(authPath(a, 'claude-user@example.com.json'), flat);
      await writeAuth(b, 'team/nested/codex-n@team.json', nested);
      const cfgCrlf = 'port: 8317\r\nauth-dir: "~/.cli-proxy-api"\r\ndebug: false\r\nproxy-url: ""\r\n';
      await writeConfig(c, cfgCrlf);

      await waitRow(pgUrl, ns.schema, 'claude-user@example.com.json', JSON.parse(flat));
      await waitRow(pgUrl, ns.schema, 'team/nested/codex-n@team.json', nested);
      const wantCfg = cfgCrlf.replace(/\r\n/g, '\n');
      await waitFor('config row with LF endings', async () => (await configRows(pgUrl, ns.schema)).some((r) => r.content === wantCfg), 3000, 10);

      await withAdmin(pgUrl, async (sql) => {
        const q = (t: string): string => `${quoteIdent(ns.schema)}.${quoteIdent(t)}`;
        // the tables have exactly CLIProxyAPI's columns
        const cols = await sql.unsafe(
          `SELECT table_name AS t, column_name AS c, data_type AS dt, is_nullable AS n FROM information_schema.columns
            WHERE table_schema = $1 ORDER BY table_name, ordinal_position`,
          [ns.schema],
        );
        expect(cols.map((r) => `${r.t}.${r.c}:${r.dt}:${r.n}`)).toEqual([
          'auth_store.id:text:NO',
          'auth_store.content:jsonb:NO',
          'auth_store.created_at:timestamp with time zone:NO',
          'auth_store.updated_at:timestamp with time zone:NO',
          'config_store.id:text:NO',
          'config_store.content:text:NO',
          'config_store.created_at:timestamp with time zone:NO',
          'config_store.updated_at:timestamp with time zone:NO',
        ]);
        // the Go store's reads: SELECT id, content FROM auth_store / config_store WHERE id = 'config'
        const flatRow = await sql.unsafe(`SELECT id, content::text AS c, jsonb_typeof(content) AS jt, content = $2::text::jsonb AS same FROM ${q('auth_store')} WHERE id = $1`, [
          'claude-user@example.com.json',
          flat,
        ]);
        expect(flatRow).toHaveLength(1);
        expect(flatRow[0]!.jt).toBe('object');
        expect(flatRow[0]!.same, 'JSONB content equals the file as JSON').toBe(true);
        expect(JSON.parse(flatRow[0]!.c as string)).toEqual(JSON.parse(flat));
        const nestedRow = await sql.unsafe(`SELECT content = $2::text::jsonb AS same FROM ${q('auth_store')} WHERE id = $1`, ['team/nested/codex-n@team.json', JSON.stringify(nested)]);
        expect(nestedRow[0]?.same, 'nested id stored as "team/nested/codex-n@team.json"').toBe(true);
        const ids = (await sql.unsafe(`SELECT id FROM ${q('auth_store')}`)).map((r) => r.id as string);
        for (const id of ids) {
          expect(id, 'ids are relative to auths/').not.toMatch(/^(auths\/|\/)/);
          expect(id).toMatch(/\.json$/);
        }
        const cfg = await sql.unsafe(`SELECT id, content FROM ${q('config_store')}`);
        expect(cfg.map((r) => r.id)).toEqual(['config']);
        expect(cfg[0]!.content).toBe(wantCfg);
        expect(cfg[0]!.content as string).not.toContain('\r');
      });
      // CLIProxyAPI would write each row to <auth-dir>/<id>: every mirror holds exactly that
      const rows = await authRows(pgUrl, ns.schema);
      for (const m of [a, b, c]) {
        for (const r of rows) await waitJson(authPath(m, r.id), r.content);
      }
      for (const m of [a, b]) await waitFor(`config in ${m}`, async () => (await readFile(configPath(m), 'utf8').catch(() => '')).replace(/\r\n/g, '\n') === wantCfg, 3000, 5);
      // the proxy's own formatting of the file it wrote is left alone
      expect(await readFile(authPath(a, 'claude-user@example.com.json'), 'utf8')).toBe(flat);
    });

    it('key order and whitespace differences cause no writes at all (no push, updated_at unchanged, other mirrors untouched for 3 s)', async () => {
      dumpOnFailure(() => [A, B, C]);
      const id = 'norm.json';
      const id2 = 'norm-sql.json';
      const v = { type: 'claude', email: 'norm@example.com', access_token: 'at-norm', refresh_token: 'rt-norm', last_refresh: '2025-04-01T00:00:00Z', meta: { b: 2, a: 1, list: [3, 2, 1] } };
      await writeAuth(a, id, v);
      await writeAuth(a, id2, { ...v, email: 'norm2@example.com' });
      for (const m of [b, c]) {
        await waitJson(authPath(m, id), v);
        await waitJson(authPath(m, id2), { ...v, email: 'norm2@example.com' });
      }
      await sleep(500); // settle: every echo (notifications of our own pushes) has been judged
      const row0 = (await authRow(pgUrl, ns.schema, id))!;
      const row20 = (await authRow(pgUrl, ns.schema, id2))!;
      const sigs0 = await Promise.all([b, c].flatMap((m) => [fileSig(authPath(m, id)), fileSig(authPath(m, id2))]));
      const sigA2 = await fileSig(authPath(a, id2));

      const since = Date.now();
      // same JSON, reversed key order, tabs, CRLF and a trailing newline
      const reorder = (o: Record<string, unknown>): Record<string, unknown> => {
        const out: Record<string, unknown> = {};
        for (const k of Object.keys(o).reverse()) {
          const x = o[k];
          out[k] = x && typeof x === 'object' && !Array.isArray(x) ? reorder(x as Record<string, unknown>) : x;
        }
        return out;
      };
      const rewritten = JSON.stringify(reorder(v), null, '\t').replace(/\n/g, '\r\n') + '\r\n';
      await writeFile(authPath(a, id), rewritten);
      // and an operator rewriting a row with the same JSON in another order (a no-op for JSONB)
      await withAdmin(pgUrl, (sql) =>
        sql.unsafe(`UPDATE ${quoteIdent(ns.schema)}.auth_store SET content = $1::text::jsonb WHERE id = $2`, [JSON.stringify(reorder({ ...v, email: 'norm2@example.com' }), null, 1), id2]),
      );
      await sleep(3000);

      const row1 = (await authRow(pgUrl, ns.schema, id))!;
      const row21 = (await authRow(pgUrl, ns.schema, id2))!;
      expect(row1.updatedAt.getTime(), 'updated_at of the rewritten file’s row').toBe(row0.updatedAt.getTime());
      expect(row1.version).toBe(row0.version);
      expect(row21.updatedAt.getTime()).toBe(row20.updatedAt.getTime());
      expect(row21.version).toBe(row20.version);
      const sigs1 = await Promise.all([b, c].flatMap((m) => [fileSig(authPath(m, id)), fileSig(authPath(m, id2))]));
      expect(sigs1, 'mirror B and C files (mtime ns, inode, size)').toEqual(sigs0);
      expect(await fileSig(authPath(a, id2)), 'mirror A file of the SQL no-op').toEqual(sigA2);
      expect(await readFile(authPath(a, id), 'utf8'), 'A’s file is left as written').toBe(rewritten);
      for (const d of [A, B, C]) expect(logged(d, /^(push|pull|delete|conflict) /, since), `${d.name} acted during the quiet period`).toEqual([]);
    });

    it('simultaneous edits of one credential on two daemons: one winner by last_refresh, the loser kept, everyone converges (5 rounds)', async () => {
      dumpOnFailure(() => [A, B, C]);
      const id = 'race.json';
      const initial = cred(id, { last_refresh: '2025-05-01T00:00:00Z', round: -1 });
      await writeAuth(a, id, initial);
      for (const m of [b, c]) await waitJson(authPath(m, id), initial);
      const where: string[] = [];
      for (let round = 0; round < 5; round++) {
        await sleep(150); // both daemons hold the same base
        const t = Date.UTC(2025, 5, 1, 0, round, 0);
        const older = cred(id, { access_token: `at-r${round}-older`, last_refresh: new Date(t).toISOString(), round });
        const newer = cred(id, { access_token: `at-r${round}-newer`, last_refresh: new Date(t + 5000).toISOString(), round });
        // alternate which side holds the newer copy
        const [winnerMirror, loserMirror] = round % 2 === 0 ? [a, b] : [b, a];
        const since = Date.now();
        await Promise.all([writeFile(authPath(winnerMirror, id), JSON.stringify(newer, null, 2)), writeFile(authPath(loserMirror, id), JSON.stringify(older, null, 2))]);

        // one winner: the newer copy, everywhere
        await waitRow(pgUrl, ns.schema, id, newer, 5000);
        for (const m of [a, b, c]) await waitJson(authPath(m, id), newer, 5000);
        // the loser is preserved under .credsync/conflicts/ (never a silent overwrite)
        const kept = await waitFor(
          `round ${round}: the losing copy (${String(older.access_token)}) under .credsync/conflicts`,
          async () => {
            for (const [name, m] of [
              ['A', a],
              ['B', b],
            ] as const) {
              const hit = (await conflictFiles(m)).find((f) => f.text.includes(String(older.access_token)));
              if (hit) return { name, file: hit.name, onLosingDaemon: m === loserMirror };
            }
            return null;
          },
          3000,
        );
        expect(kept.file).toMatch(/race\.json$/);
        expect(await exists(join(c, '.credsync', 'conflicts')) && (await conflictFiles(c)).some((f) => f.text.includes(String(older.access_token))), 'C has no conflict of its own').toBe(false);
        where.push(`r${round}:${kept.name}${kept.onLosingDaemon ? '(loser)' : '(winner)'}`);
        const conflictLogs = [A, B].flatMap((d) => logged(d, /^conflict auths\/race\.json/, since));
        expect(conflictLogs.length, `round ${round}: conflict logged`).toBeGreaterThanOrEqual(1);
        // stays converged (no flip-flop afterwards)
        await sleep(200);
        const row = await authRow(pgUrl, ns.schema, id);
        expect(row?.content).toEqual(newer);
        for (const m of [a, b, c]) expect(await readJson(authPath(m, id)), `round ${round} ${m}`).toEqual(newer);
      }
      // Which mirror keeps the loser depends on whose CAS landed first: the daemon that detects the
      // conflict keeps the other copy (the loser's own daemon, or the winner's when the loser wrote first).
      console.info(`[e2e/postgres] conflict copies kept on: ${where.join(' ')}`);
    });

    it("killing the LISTEN connections (pg_terminate_backend on 'credsync:listen'): daemons log it, stay up, and changes made right after still propagate", async () => {
      dumpOnFailure(() => [A, B, C]);
      const ids = ['listen-1.json', 'listen-2.json'];
      for (const id of ids) await writeAuth(a, id, cred(id));
      for (const id of ids) for (const m of [b, c]) await waitJson(authPath(m, id), cred(id));
      const before = await listenBackends(pgUrl, ns.schema);
      expect(before, 'one LISTEN connection per daemon on this schema').toHaveLength(3);

      const since = Date.now();
      const killed = await withAdmin(pgUrl, async (sql) => {
        const pids = before.map((x) => Number(x.pid)).join(', ');
        const rows = await sql.unsafe(`SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'credsync:listen' AND pid IN (${pids})`);
        return rows.filter((r) => r.ok).length;
      });
      expect(killed).toBe(3);
      // right after: an operator's UPDATE (every daemon misses its notification) and an edit on A
      const sqlChange = cred('listen-1.json', { access_token: 'at-while-unlistened' });
      await withAdmin(pgUrl, (sql) => sql.unsafe(`UPDATE ${quoteIdent(ns.schema)}.auth_store SET content = $1::text::jsonb WHERE id = 'listen-1.json'`, [JSON.stringify(sqlChange)]));
      const fileChange = cred('listen-2.json', { access_token: 'at-edited-on-A-while-unlistened' });
      await writeAuth(a, 'listen-2.json', fileChange);

      for (const m of [a, b, c]) await waitJson(authPath(m, 'listen-1.json'), sqlChange, 8000);
      for (const m of [b, c]) await waitJson(authPath(m, 'listen-2.json'), fileChange, 8000);
      for (const d of [A, B, C]) {
        await d.waitForLog((l) => /LISTEN connection .* lost|subscription lost/.test(l.json?.msg ?? l.raw), 3000, since);
        expect(d.running, `${d.name} alive`).toBe(true);
      }
      // re-subscribed, with a new connection each
      const after = await waitFor('three new LISTEN connections', async () => {
        const x = await listenBackends(pgUrl, ns.schema);
        return x.length === 3 ? x : null;
      });
      for (const x of after) expect(before.map((y) => y.pid)).not.toContain(x.pid);
      for (const d of [A, B, C]) expect((await d.get('/readyz')).status).toBe(200);
      // and live notifications work again
      const v3 = cred('listen-2.json', { access_token: 'at-after-relisten' });
      const t0 = Date.now();
      await writeAuth(c, 'listen-2.json', v3);
      const ms = Math.max(await waitJson(authPath(a, 'listen-2.json'), v3, 3000, t0), await waitJson(authPath(b, 'listen-2.json'), v3, 3000, t0));
      expect(ms).toBeLessThan(1000);
    });
  });

  // ------------------------------------------------------------------ crash and restart

  describe('a daemon killed with SIGKILL', () => {
    const g = processGroup('all');
    let ns: FreshSchema;
    let root: { path: string; remove(): Promise<void> };
    let A: Daemon | undefined, B: Daemon | undefined;

    beforeAll(async () => {
      ns = freshSchema(pgUrl);
      root = await tempDir('credsync-pgkill-');
    });
    afterAll(async () => {
      await g.killAll();
      await ns?.drop().catch(() => {});
      await root?.remove();
    });

    it('catches up after restart: its offline file edit is pushed, a DB change made meanwhile is pulled', async () => {
      dumpOnFailure(() => [A, B]);
      const a = join(root.path, 'a');
      const b = join(root.path, 'b');
      A = await g.start({ env: pgEnv(pgUrl, ns.schema, a), name: 'A' });
      B = await g.start({ env: pgEnv(pgUrl, ns.schema, b), name: 'B' });
      const ids = ['k1.json', 'k2.json', 'k3.json', 'k4.json', 'k5.json'];
      for (const id of ids) await writeAuth(a, id, cred(id));
      for (const id of ids) await waitJson(authPath(b, id), cred(id));
      await sleep(200);

      const k = await B.kill();
      expect(k.signal).toBe('SIGKILL');

      // while B is down: its proxy refreshes k1; an operator changes k2 in the DB; A edits k3 and deletes k5
      const k1 = cred('k1.json', { access_token: 'at-k1-refreshed-on-B-offline', last_refresh: '2025-07-01T00:00:00Z' });
      await writeAuth(b, 'k1.json', k1);
      const k2 = cred('k2.json', { access_token: 'at-k2-set-in-db' });
      await withAdmin(pgUrl, (sql) => sql.unsafe(`UPDATE ${quoteIdent(ns.schema)}.auth_store SET content = $1::text::jsonb, updated_at = NOW() WHERE id = 'k2.json'`, [JSON.stringify(k2)]));
      const k3 = cred('k3.json', { access_token: 'at-k3-edited-on-A' });
      await writeAuth(a, 'k3.json', k3);
      await waitRow(pgUrl, ns.schema, 'k3.json', k3);
      await unlink(authPath(a, 'k5.json'));
      await waitNoRow(pgUrl, ns.schema, 'k5.json');
      await waitJson(authPath(a, 'k2.json'), k2);

      B = await g.start({ env: pgEnv(pgUrl, ns.schema, b), name: 'B (restarted)' });
      // ready = the initial reconcile is done: everything is in place already
      expect(await readJson(authPath(b, 'k2.json')), 'DB change pulled').toEqual(k2);
      expect(await readJson(authPath(b, 'k3.json')), 'A’s edit pulled').toEqual(k3);
      expect(await exists(authPath(b, 'k5.json')), 'A’s delete applied').toBe(false);
      expect((await authRow(pgUrl, ns.schema, 'k1.json'))?.content, 'offline edit pushed').toEqual(k1);
      await waitJson(authPath(a, 'k1.json'), k1);
      expect(await readJson(authPath(b, 'k4.json'))).toEqual(cred('k4.json'));
      for (const d of [A, B]) expect(logged(d, /^conflict /), `${d.name} conflicts`).toEqual([]);
      expect(await conflictFiles(b)).toEqual([]);
      // and it is live again
      const k4 = cred('k4.json', { access_token: 'at-k4-after-restart' });
      const t0 = Date.now();
      await writeAuth(a, 'k4.json', k4);
      expect(await waitJson(authPath(b, 'k4.json'), k4, 3000, t0)).toBeLessThan(1000);
    });
  });

  // ------------------------------------------------------------------ seeding

  describe('seeding the config', () => {
    const g = processGroup('all');
    let ns: FreshSchema;
    let root: { path: string; remove(): Promise<void> };
    let A: Daemon | undefined, B: Daemon | undefined;

    beforeAll(async () => {
      ns = freshSchema(pgUrl);
      root = await tempDir('credsync-pgseed-');
    });
    afterAll(async () => {
      await g.killAll();
      await ns?.drop().catch(() => {});
      await root?.remove();
    });

    it('a fresh schema with no config row: CREDSYNC_SEED_CONFIG fills row "config"; a second daemon does not overwrite it', async () => {
      dumpOnFailure(() => [A, B]);
      // CLIProxyAPI's tables, empty (no config row)
      await withAdmin(pgUrl, async (sql) => {
        await sql.unsafe(`CREATE SCHEMA ${quoteIdent(ns.schema)}`);
        await sql.unsafe(`CREATE TABLE ${ns.table('config_store')} (id TEXT PRIMARY KEY, content TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())`);
        await sql.unsafe(`CREATE TABLE ${ns.table('auth_store')} (id TEXT PRIMARY KEY, content JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())`);
      });
      const seedA = join(root.path, 'seed-a.yaml');
      const seedB = join(root.path, 'seed-b.yaml');
      const seedText = 'port: 8317\r\nauth-dir: ./auths\r\nrequest-retry: 3\r\n';
      await writeFile(seedA, seedText);
      await writeFile(seedB, 'port: 9999\nauth-dir: ./other\n');
      const a = join(root.path, 'a');
      const b = join(root.path, 'b');
      expect(await configRows(pgUrl, ns.schema)).toEqual([]);

      A = await g.start({ env: pgEnv(pgUrl, ns.schema, a, { extra: { CREDSYNC_SEED_CONFIG: seedA } }), name: 'A' });
      const want = seedText.replace(/\r\n/g, '\n');
      const rows = await waitFor('config row', async () => {
        const r = await configRows(pgUrl, ns.schema);
        return r.length ? r : null;
      });
      expect(rows.map((r) => r.id)).toEqual(['config']);
      expect(rows[0]!.content, 'seed stored with LF endings').toBe(want);
      expect((await readFile(configPath(a), 'utf8')).replace(/\r\n/g, '\n')).toBe(want);
      expect(logged(A, /^seed config\/config\.yaml/)).toHaveLength(1);
      await sleep(200);

      B = await g.start({ env: pgEnv(pgUrl, ns.schema, b, { extra: { CREDSYNC_SEED_CONFIG: seedB } }), name: 'B' });
      expect(await readFile(configPath(b), 'utf8'), 'B pulled the stored config instead of seeding its own').toBe(want);
      await sleep(500);
      const after = await configRows(pgUrl, ns.schema);
      expect(after).toHaveLength(1);
      expect(after[0]!.content).toBe(want);
      expect(after[0]!.updatedAt.getTime(), 'row not rewritten').toBe(rows[0]!.updatedAt.getTime());
      expect(logged(B, /^seed /), 'B seeded').toEqual([]);
      expect((await readFile(configPath(a), 'utf8')).replace(/\r\n/g, '\n')).toBe(want);
      expect(logged(B, /^push config/), 'B pushed a config').toEqual([]);
      for (const d of [A, B]) expect(logged(d, /^conflict /), `${d.name} conflicts`).toEqual([]);
    });
  });
});

// ------------------------------------------------------------------ private server: restart, idleness

describe('daemons on a private embedded PostgreSQL (restart, idleness)', () => {
  const g = processGroup('all');
  let priv: PrivateServer | undefined;
  let why = '';
  let root: { path: string; remove(): Promise<void> };
  let A: Daemon | undefined, B: Daemon | undefined;

  beforeAll(async () => {
    const r = await startPrivateServer();
    if (typeof r === 'string') why = r;
    else priv = r;
    root = await tempDir('credsync-pgpriv-');
  }, 90_000);
  afterAll(async () => {
    await g.killAll();
    await priv?.server.stop().catch((err: Error) => console.error(`stopping the private server: ${err.message}`));
    await root?.remove();
  }, 60_000);

  it('an idle daemon issues no statements between periodic reconciles', async (ctx) => {
    if (!priv) return ctx.skip(why);
    dumpOnFailure(() => [A, B]);
    const url = priv.server.url;
    const db = 'credsync_idle';
    await withAdmin(url, (sql) => sql.unsafe(`CREATE DATABASE ${db}`));
    const dsn = withDatabase(url, db);
    const schema = 'idle';
    const a = join(root.path, 'idle-a');
    const b = join(root.path, 'idle-b');
    const started = await Promise.all([g.start({ env: pgEnv(dsn, schema, a), name: 'idle A' }), g.start({ env: pgEnv(dsn, schema, b), name: 'idle B' })]);
    [A, B] = started;
    for (const id of ['i1.json', 'i2.json', 'i3.json']) await writeAuth(a, id, cred(id));
    for (const id of ['i1.json', 'i2.json', 'i3.json']) await waitJson(authPath(b, id), cred(id));
    await writeConfig(b, 'port: 8317\n');
    await waitFor('config on A', async () => exists(configPath(a)));
    await sleep(1000);

    const sample = async (): Promise<{ calls: number | null; backends: Array<{ pid: number; state: string; qs: number; app: string }> }> =>
      withAdmin(url, async (sql) => {
        const backends = (
          await sql.unsafe(`SELECT pid, state, query_start, application_name AS app FROM pg_stat_activity WHERE datname = $1 ORDER BY pid`, [db])
        ).map((r) => ({ pid: r.pid as number, state: r.state as string, qs: (r.query_start as Date | null)?.getTime() ?? 0, app: r.app as string }));
        let calls: number | null = null;
        if (priv!.statements) {
          const r = await sql.unsafe(`SELECT coalesce(sum(calls), 0)::bigint AS n FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)`, [db]);
          calls = Number(r[0]!.n);
        }
        return { calls, backends };
      });
    const s0 = await sample();
    const since = Date.now();
    await sleep(5000);
    const s1 = await sample();
    const apps = s0.backends.map((x) => x.app).sort();
    expect(apps.filter((x) => x === 'credsync:listen'), 'each daemon holds its LISTEN connection').toHaveLength(2);
    expect(s1.backends, 'backends of the daemons: same pids, states and query_start after 5 s').toEqual(s0.backends);
    for (const x of s1.backends) expect(x.state, `backend ${x.pid} (${x.app})`).toBe('idle');
    if (priv.statements) expect(s1.calls! - s0.calls!, 'statements run in the database in 5 idle seconds (pg_stat_statements)').toBe(0);
    else console.info(`[e2e/postgres] idle check by pg_stat_activity only (${priv.statementsNote})`);
    for (const d of [A, B]) expect(logged(d!, /./, since), `${d!.name} logged while idle`).toEqual([]);
    console.info(`[e2e/postgres] idle 5 s: ${s0.backends.length} backends unchanged; statements Δ ${priv.statements ? s1.calls! - s0.calls! : 'n/a'}`);
    await Promise.all([A.stop(), B.stop()]);
  });

  it('a database restart in the middle of 100 sequential updates loses nothing; /readyz 503 during the outage, 200 after; daemons stay up', async (ctx) => {
    if (!priv) return ctx.skip(why);
    dumpOnFailure(() => [A, B]);
    const server = priv.server;
    const schema = 'restart';
    const a = join(root.path, 'rs-a');
    const b = join(root.path, 'rs-b');
    [A, B] = await Promise.all([g.start({ env: pgEnv(server.url, schema, a), name: 'restart A' }), g.start({ env: pgEnv(server.url, schema, b), name: 'restart B' })]);
    const ids = ['s0.json', 's1.json', 's2.json', 's3.json', 's4.json'];
    const final = new Map<string, Record<string, unknown>>();
    for (const id of ids) {
      final.set(id, cred(id, { n: -1 }));
      await writeAuth(a, id, final.get(id));
    }
    for (const id of ids) await waitJson(authPath(b, id), final.get(id));

    const STOP_AT = 35;
    const START_AT = 65;
    let stopping: Promise<void> | undefined;
    let down = 0;
    let up = 0;
    const readyDuring: number[] = [];
    for (let i = 0; i < 100; i++) {
      if (i === STOP_AT) {
        stopping = server.stopProcess();
        down = Date.now();
      }
      if (i === START_AT) {
        await stopping;
        // both daemons report the outage
        for (const d of [A, B]) {
          await waitFor(`${d.name} /readyz 503 during the outage`, async () => (await d.get('/readyz')).status === 503, 10_000, 50);
          readyDuring.push(503);
        }
        await server.start();
        up = Date.now();
      }
      const id = ids[i % ids.length]!;
      const v = cred(id, { n: i, access_token: `at-${i}`, last_refresh: new Date(Date.UTC(2025, 8, 1) + i * 1000).toISOString() });
      final.set(id, v);
      await writeAuth(a, id, v);
      await sleep(25);
    }
    const t0 = Date.now();
    for (const id of ids) await waitRow(server.url, schema, id, final.get(id), 15_000);
    for (const id of ids) await waitJson(authPath(b, id), final.get(id), 15_000);
    const caughtUp = Date.now() - t0;
    for (const id of ids) expect(await readJson(authPath(a, id)), `A/${id} still final`).toEqual(final.get(id));
    for (const d of [A, B]) {
      await waitFor(`${d.name} /readyz 200 after the restart`, async () => (await d.get('/readyz')).status === 200, 20_000, 50);
      expect(d.running, `${d.name} alive`).toBe(true);
      expect(logged(d, /^conflict /), `${d.name} conflicts`).toEqual([]);
    }
    expect(await conflictFiles(a)).toEqual([]);
    expect(await conflictFiles(b)).toEqual([]);
    const rows = await authRows(server.url, schema);
    expect(rows.map((r) => r.id)).toEqual(ids);
    expect(readyDuring).toEqual([503, 503]);
    console.info(`[e2e/postgres] restart: outage ${up - down} ms; everything final in DB and mirror B ${caughtUp} ms after the last write`);
  }, 90_000);
});
