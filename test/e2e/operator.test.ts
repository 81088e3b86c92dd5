/**
 * What an operator sees from the one-shot commands: status that works offline and creates nothing,
 * dry runs, output that stays short at scale, guards that explain, limits, and a fresh mirror's layout.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { processGroup, type CliResult } from '../support/daemon.js';
import { freshSchema, startEmbeddedPostgres, withAdmin, type EmbeddedPgServer } from '../support/pg-server.js';
import { tempDir } from '../support/tmp.js';
import { fill } from '../support/files.js';

const pgUrl = inject('pgUrl');
const fail = (r: CliResult): string => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

/** Every path under `root` with its size and mtime: what "creates nothing, changes nothing" is checked against. */
async function snapshot(root: string): Promise<string[]> {
  if (!existsSync(root)) return [];
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const st = await stat(p);
      out.push(`${p} ${e.isDirectory() ? 'dir' : st.size} ${st.mtimeMs}`);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out.sort();
}

describe('operator experience', () => {
  const g = processGroup('all');
  let tmp: { path: string; remove(): Promise<void> };
  let n = 0;
  const caseDir = async (): Promise<string> => {
    const d = join(tmp.path, `case-${++n}`);
    await mkdir(d, { recursive: true });
    return d;
  };
  const dirEnv = (d: string) => ({ CREDSYNC_STORE: pathToFileURL(join(d, 'store')).href, CREDSYNC_LOCAL_DIR: join(d, 'mirror') });

  beforeAll(async () => {
    tmp = await tempDir('credsync-operator-');
  });
  afterAll(async () => {
    await tmp.remove();
  });

  describe('status with the database stopped', () => {
    let pg: EmbeddedPgServer;
    beforeAll(async () => {
      pg = await startEmbeddedPostgres();
    }, 60_000);
    afterAll(async () => {
      await pg?.stop();
    });

    it('exits non-zero, says it is offline, prints the pending push, and creates nothing', async () => {
      const d = await caseDir();
      const env = { PGSTORE_DSN: `${pg.url}?connect_timeout=2`, PGSTORE_SCHEMA: 'offline_case', CREDSYNC_LOCAL_DIR: join(d, 'mirror') };
      await fill(join(d, 'mirror'), { 'auths/a.json': '{"type":"claude","n":1}', 'config/config.yaml': 'port: 1\n' });
      expect((await g.cli(['sync'], { env })).code).toBe(0);
      await pg.stopProcess();
      try {
        await writeFile(join(d, 'mirror', 'auths', 'a.json'), '{"type":"claude","n":2}');
        const queued = await g.cli(['sync'], { env });
        expect(queued.code, fail(queued)).toBe(1);
        const before = await snapshot(d);
        const r = await g.cli(['status'], { env });
        expect(r.code, fail(r)).toBe(1);
        expect(r.stdout).toMatch(/OFFLINE/);
        expect(r.stdout).toMatch(/pending auths\/a\.json since/);
        const j = await g.cli(['status', '--json'], { env });
        const parsed = JSON.parse(j.stdout) as { online: boolean; pending: { key: string }[]; ready?: unknown };
        expect(parsed.online).toBe(false);
        expect(parsed.pending.map((p) => p.key)).toEqual(['auths/a.json']);
        expect(parsed).not.toHaveProperty('ready');
        expect(await snapshot(d)).toEqual(before);
      } finally {
        await pg.start();
      }
    });
  });

  it('a key=value DSN with its password never shows in the daemon\'s logs, /status or /metrics', async (ctx) => {
    if (!pgUrl) ctx.skip();
    const u = new URL(pgUrl);
    const password = decodeURIComponent(u.password);
    if (password.length < 4) ctx.skip();
    const d = await caseDir();
    const dsn = `host=${u.hostname} port=${u.port} user=${decodeURIComponent(u.username)} password=${password} dbname=${u.pathname.slice(1) || 'postgres'}`;
    await fill(join(d, 'mirror'), { 'auths/a.json': '{"type":"claude"}' });
    const daemon = await g.start({ env: { PGSTORE_DSN: dsn, PGSTORE_SCHEMA: `kv_${Date.now().toString(36)}`, CREDSYNC_LOCAL_DIR: join(d, 'mirror'), CREDSYNC_LOG_LEVEL: 'debug' }, name: 'kv-dsn' });
    const status = await daemon.get('/status');
    const metrics = await daemon.get('/metrics');
    expect(status.status).toBe(200);
    expect(status.body).toContain('password=***');
    await daemon.stop();
    for (const [what, text] of [['stderr', daemon.stderr], ['/status', status.body], ['/metrics', metrics.body]] as const) expect(text, what).not.toContain(password);
  });

  it('status against a fresh PostgreSQL schema creates neither schema nor tables nor mirror folders', async (ctx) => {
    if (!pgUrl) ctx.skip();
    const fx = await freshSchema(pgUrl);
    try {
      const d = await caseDir();
      const r = await g.cli(['status', '--exit-code'], { env: { PGSTORE_DSN: fx.dsn, PGSTORE_SCHEMA: fx.schema, CREDSYNC_LOCAL_DIR: join(d, 'mirror') } });
      expect(r.code, fail(r)).toBe(0);
      expect(await readdir(d)).toEqual([]);
      const rows = await withAdmin(pgUrl, (sql) => sql`SELECT 1 FROM pg_namespace WHERE nspname = ${fx.schema}`);
      expect(rows.length, 'status created the schema').toBe(0);
    } finally {
      await fx.drop();
    }
  });

  it('status --exit-code is 1 when something differs, 0 when all is in sync; status KEY explains one key', async () => {
    const d = await caseDir();
    await fill(join(d, 'store'), { 'auths/a.json': '{"a":1}', 'config/config.yaml': 'p: 1\n' });
    expect((await g.cli(['pull'], { env: dirEnv(d) })).code).toBe(0);
    expect((await g.cli(['status', '--exit-code'], { env: dirEnv(d) })).code).toBe(0);
    await writeFile(join(d, 'mirror', 'auths', 'a.json'), '{"a":2}');
    const r = await g.cli(['status', '--exit-code'], { env: dirEnv(d) });
    expect(r.code, fail(r)).toBe(1);
    const k = await g.cli(['status', 'auths/a.json', '--json'], { env: dirEnv(d) });
    const detail = (JSON.parse(k.stdout) as { key: { state: string; localHash: string; storeVersion: string; base: { hash: string }; why: string } }).key;
    expect(detail.state).toBe('differs');
    expect(detail.localHash).toMatch(/^[0-9a-f]{64}$/);
    expect(detail.storeVersion).toBeTruthy();
    expect(detail.base.hash).not.toBe(detail.localHash);
    expect(detail.why).toMatch(/changed since the base/);
  });

  it('--dry-run on pull, push and sync prints the plan per key and changes nothing', async () => {
    const d = await caseDir();
    await fill(join(d, 'store'), { 'auths/s.json': '{"s":1}' });
    await fill(join(d, 'mirror'), { 'auths/m.json': '{"m":1}' });
    const before = await snapshot(d);
    for (const cmd of ['pull', 'push', 'sync']) {
      const r = await g.cli([cmd, '--dry-run'], { env: dirEnv(d) });
      expect(r.code, fail(r)).toBe(0);
      expect(r.stdout).toMatch(/dry run, nothing changed/);
      if (cmd !== 'push') expect(r.stdout).toMatch(/would pull auths\/s\.json/);
      if (cmd !== 'pull') expect(r.stdout).toMatch(/would push auths\/m\.json/);
      const j = JSON.parse((await g.cli([cmd, '--dry-run', '--json'], { env: dirEnv(d) })).stdout) as { dryRun: boolean; mode: string; counts: Record<string, number> };
      expect(j).toMatchObject({ dryRun: true, mode: cmd });
    }
    expect(await snapshot(d)).toEqual(before);
  });

  it('pull of an empty store into an empty mirror exits 4 unless --allow-empty', async () => {
    const d = await caseDir();
    await mkdir(join(d, 'store'), { recursive: true });
    const r = await g.cli(['pull'], { env: dirEnv(d) });
    expect(r.code, fail(r)).toBe(4);
    expect(r.stdout + r.stderr).toMatch(/empty and so is the mirror.*--allow-empty/);
    expect((await g.cli(['pull', '--allow-empty'], { env: dirEnv(d) })).code).toBe(0);
  });

  it('a fresh mirror has auths/ and config/ (0700) after any start', async () => {
    const d = await caseDir();
    await fill(join(d, 'store'), { 'config/config.yaml': 'p: 1\n' });
    expect((await g.cli(['pull'], { env: dirEnv(d) })).code).toBe(0);
    for (const sub of ['auths', 'config']) expect((await stat(join(d, 'mirror', sub))).mode & 0o777).toBe(0o700);
  });

  it('a pull of 5,000 credentials prints a few dozen lines at the default level, and one JSON report', async () => {
    const d = await caseDir();
    const files: Record<string, string> = { 'config/config.yaml': 'p: 1\n' };
    for (let i = 0; i < 5000; i++) files[`auths/c${i}.json`] = JSON.stringify({ type: 'claude', email: `u${i}@x`, refresh_token: `rt-${i}` });
    await fill(join(d, 'store'), files);
    const r = await g.cli(['pull'], { env: dirEnv(d), timeoutMs: 120_000 });
    expect(r.code, fail(r)).toBe(0);
    const lines = (r.stdout + r.stderr).split('\n').filter(Boolean).length;
    expect(lines, r.stdout + r.stderr).toBeLessThan(30);
    expect(r.stdout).toMatch(/pulled 5001/);
    const again = await g.cli(['pull', '--json'], { env: dirEnv(d), timeoutMs: 120_000 });
    const j = JSON.parse(again.stdout) as { mode: string; store: string; durationMs: number; counts: Record<string, number> };
    expect(j.mode).toBe('pull');
    expect(j.counts).toMatchObject({ pulled: 0, pushed: 0, rejected: 0, refusedByGuard: 0 });
    expect(typeof j.durationMs).toBe('number');
  }, 240_000);

  it('a guard refusal is one line with the count, the first keys and the command that accepts it; exit 4', async () => {
    const d = await caseDir();
    const files: Record<string, string> = {};
    for (let i = 0; i < 8; i++) files[`auths/k${i}.json`] = `{"k":${i}}`;
    await fill(join(d, 'store'), files);
    expect((await g.cli(['sync'], { env: dirEnv(d) })).code).toBe(0);
    for (let i = 0; i < 6; i++) await (await import('node:fs/promises')).rm(join(d, 'mirror', 'auths', `k${i}.json`));
    const r = await g.cli(['sync'], { env: dirEnv(d) });
    expect(r.code, fail(r)).toBe(4);
    const held = r.stdout.split('\n').filter((l) => /held/.test(l));
    expect(held, r.stdout).toHaveLength(1);
    expect(held[0]).toMatch(/held 6: .*exceeds --max-delete 50%.*credsync sync --max-delete 6 .*auths\/k0\.json/);
  });

  it('an item larger than CREDSYNC_MAX_ITEM_BYTES is refused with its size, and the rest syncs', async () => {
    const d = await caseDir();
    await fill(join(d, 'store'), { 'auths/big.json': JSON.stringify({ pad: 'x'.repeat(3000) }), 'auths/ok.json': '{"ok":1}' });
    const r = await g.cli(['pull'], { env: { ...dirEnv(d), CREDSYNC_MAX_ITEM_BYTES: '2KiB' } });
    expect(r.code, fail(r)).toBe(1);
    expect(r.stdout).toMatch(/rejected auths\/big\.json \(store\): larger than 2 KiB \(\d+ bytes\); raise CREDSYNC_MAX_ITEM_BYTES/);
    expect(await readFile(join(d, 'mirror', 'auths', 'ok.json'), 'utf8')).toBe('{"ok":1}');
    expect(existsSync(join(d, 'mirror', 'auths', 'big.json'))).toBe(false);
  });
});
