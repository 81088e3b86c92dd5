/**
 * Two real `credsync run` processes sharing one directory store (CREDSYNC_STORE=file:///…), each
 * with its own mirror: what a user of two proxy pods would notice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, readFile, readdir, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { processGroup, withDaemonLogs, type Daemon, type ProcessGroup } from '../support/daemon.js';
import { sleep, waitFor } from '../support/wait.js';
import { tempDir } from '../support/tmp.js';

// ------------------------------------------------------------------ helpers

interface Setup {
  root: string;
  store: string;
  a: string;
  b: string;
  storeUrl: string;
}

async function layout(prefix: string): Promise<Setup & { remove(): Promise<void> }> {
  const t = await tempDir(`credsync-e2e-${prefix}-`);
  const store = join(t.path, 'store');
  return { root: t.path, store, a: join(t.path, 'a'), b: join(t.path, 'b'), storeUrl: pathToFileURL(store).href, remove: t.remove };
}

const envFor = (s: Setup, mirror: string, extra: Record<string, string> = {}): Record<string, string> => ({
  CREDSYNC_STORE: s.storeUrl,
  CREDSYNC_LOCAL_DIR: mirror,
  CREDSYNC_DEBOUNCE: '20ms',
  CREDSYNC_RECONCILE_INTERVAL: '60s',
  CREDSYNC_LOG_LEVEL: 'info',
  ...extra,
});

const authPath = (root: string, id: string): string => join(root, 'auths', ...id.split('/'));
const configPath = (root: string): string => join(root, 'config', 'config.yaml');

/** What a proxy does when it refreshes a token: plain (non-atomic) write of the whole file. */
async function writeAuth(root: string, id: string, value: unknown): Promise<void> {
  const p = authPath(root, id);
  await mkdir(dirname(p), { recursive: true });
  await writeFile(p, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
}

/** What a careful writer (and credsync itself) does: temp file in the same directory, then rename over. */
async function atomicWriteAuth(root: string, id: string, value: unknown): Promise<void> {
  const p = authPath(root, id);
  await mkdir(dirname(p), { recursive: true });
  const tmp = `${p}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(value, null, 2));
  await rename(tmp, p);
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Waits until `path` holds JSON deep-equal to `want`; returns how long that took from `since`. */
async function waitJson(path: string, want: unknown, timeoutMs = 3000, since = Date.now()): Promise<number> {
  const wantS = JSON.stringify(want);
  await waitFor(
    `${path} to equal ${wantS.slice(0, 80)}`,
    async () => {
      const got = await readJson(path);
      return got !== undefined && JSON.stringify(got) === wantS;
    },
    timeoutMs,
    2,
  ).catch(async (err: Error) => {
    const got = await readFile(path, 'utf8').catch(() => '<missing>');
    throw new Error(`${err.message}; file holds: ${got.slice(0, 200)}`);
  });
  return Date.now() - since;
}

async function waitGone(path: string, timeoutMs = 3000): Promise<void> {
  await waitFor(`${path} to be removed`, async () => !(await exists(path)), timeoutMs, 5);
}

/** Every regular file under `root` (recursively, skipping `.credsync*`), with mtime and inode. */
async function snapshot(root: string): Promise<Map<string, { mtimeMs: number; ino: number; size: number }>> {
  const out = new Map<string, { mtimeMs: number; ino: number; size: number }>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (e.name.startsWith('.credsync')) continue;
      const full = join(dir, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(full, r);
      else if (e.isFile()) {
        const st = await stat(full);
        out.set(r, { mtimeMs: st.mtimeMs, ino: st.ino, size: st.size });
      }
    }
  };
  await walk(root, '');
  return out;
}

async function oneShot(g: ProcessGroup, s: Setup, mirror: string, args: string[]) {
  return g.cli(args, { env: envFor(s, mirror) });
}

/** `it`, but a failure carries the recent logs of the group's daemons. */
const itL = (g: ProcessGroup, name: string, fn: () => Promise<void>, timeout?: number): void => {
  it(name, () => withDaemonLogs(g.daemons, fn), timeout);
};

const SECRET = 'rt-1//0gSECRETSECRETSECRETdoNotLog';

// ------------------------------------------------------------------ shared pair

describe('two daemons on one directory store', () => {
  const g = processGroup('all');
  let s: Awaited<ReturnType<typeof layout>>;
  let A: Daemon;
  let B: Daemon;
  const latencies: number[] = [];

  beforeAll(async () => {
    s = await layout('pair');
    [A, B] = await Promise.all([g.start({ env: envFor(s, s.a), name: 'A' }), g.start({ env: envFor(s, s.b), name: 'B' })]);
  });

  afterAll(async () => {
    if (latencies.length) console.info(`[e2e] A→B propagation latency (ms): ${latencies.join(', ')}`);
    await g.killAll();
    await s?.remove();
  });

  itL(g, 'a credential written into mirror A appears, equal as JSON, in mirror B within 1 s (nested ids too, 0600)', async () => {
    const cred = { type: 'claude', email: 'a@b.com', access_token: 'at-1', refresh_token: SECRET, last_refresh: new Date().toISOString() };
    const t0 = Date.now();
    await writeAuth(s.a, 'claude-a@b.com.json', cred);
    const ms = await waitJson(authPath(s.b, 'claude-a@b.com.json'), cred, 3000, t0);
    latencies.push(ms);
    expect(ms, 'A→B propagation latency (ms)').toBeLessThan(1000);
    expect((await stat(authPath(s.b, 'claude-a@b.com.json'))).mode & 0o777).toBe(0o600);

    const nested = { type: 'gemini', email: 'x@team', refresh_token: 'nested-token' };
    const t1 = Date.now();
    await writeAuth(s.a, 'team/x.json', nested);
    const ms2 = await waitJson(authPath(s.b, 'team/x.json'), nested, 3000, t1);
    latencies.push(ms2);
    expect(ms2, 'A→B propagation latency for a nested id (ms)').toBeLessThan(1000);
    expect((await stat(authPath(s.b, 'team/x.json'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(s.b, 'auths', 'team'))).mode & 0o777).toBe(0o700);
    // and the store holds both, equal as JSON
    expect(await readJson(authPath(s.store, 'claude-a@b.com.json'))).toEqual(cred);
    expect(await readJson(authPath(s.store, 'team/x.json'))).toEqual(nested);

    // a few more round trips for a latency figure
    for (let i = 0; i < 5; i++) {
      const v = { type: 'codex', n: i, refresh_token: `rt-${i}` };
      const t = Date.now();
      await writeAuth(s.a, 'codex-lat.json', v);
      const m = await waitJson(authPath(s.b, 'codex-lat.json'), v, 3000, t);
      latencies.push(m);
      expect(m).toBeLessThan(1000);
      await sleep(50);
    }
  });

  itL(g, 'an edit on B propagates to A, and a delete on A propagates to B and the store', async () => {
    // ≥3 credentials in the store so a single delete stays under the 50% guard
    const ids = ['edit-1.json', 'edit-2.json', 'edit-3.json', 'doomed.json'];
    for (const id of ids) await writeAuth(s.a, id, { type: 'claude', id, refresh_token: `rt-${id}`, v: 1 });
    for (const id of ids) await waitJson(authPath(s.b, id), { type: 'claude', id, refresh_token: `rt-${id}`, v: 1 });

    const edited = { type: 'claude', id: 'edit-2.json', refresh_token: 'rt-edited-on-B', v: 2, last_refresh: new Date().toISOString() };
    const t0 = Date.now();
    await writeAuth(s.b, 'edit-2.json', edited);
    const ms = await waitJson(authPath(s.a, 'edit-2.json'), edited, 3000, t0);
    expect(ms, 'B→A latency (ms)').toBeLessThan(1000);
    expect(await readJson(authPath(s.store, 'edit-2.json'))).toEqual(edited);

    await unlink(authPath(s.a, 'doomed.json'));
    await waitGone(authPath(s.store, 'doomed.json'));
    await waitGone(authPath(s.b, 'doomed.json'));
    // nothing else went with it
    for (const id of ['edit-1.json', 'edit-2.json', 'edit-3.json']) {
      expect(await exists(authPath(s.a, id))).toBe(true);
      expect(await exists(authPath(s.b, id))).toBe(true);
      expect(await exists(authPath(s.store, id))).toBe(true);
    }
  });

  itL(g, 'a file in A that is not a JSON object is not copied to the store or to B; status lists it as rejected; the daemon names it', async () => {
    const since = Date.now();
    await writeAuth(s.a, 'truncated.json', '{"type":"claude","refresh_token":"rt-trunc');
    await writeAuth(s.a, 'array.json', '[{"type":"claude"}]');
    // the daemon names each file in a log line
    const l1 = await A.waitForLog((l) => /truncated\.json/.test(l.raw) && l.json?.level !== undefined && l.json.level >= 40, 3000, since);
    const l2 = await A.waitForLog((l) => /array\.json/.test(l.raw) && l.json?.level !== undefined && l.json.level >= 40, 3000, since);
    expect(l1.json?.msg).toMatch(/not valid JSON|JSON/);
    expect(l2.json?.msg).toMatch(/not a JSON object/);
    // a good file written afterwards propagates: by then the bad ones would have too
    const marker = { type: 'claude', marker: true, refresh_token: 'rt-marker' };
    await writeAuth(s.a, 'after-bad.json', marker);
    await waitJson(authPath(s.b, 'after-bad.json'), marker);
    await sleep(200);
    for (const id of ['truncated.json', 'array.json']) {
      expect(await exists(authPath(s.store, id)), `store/${id}`).toBe(false);
      expect(await exists(authPath(s.b, id)), `B/${id}`).toBe(false);
    }

    // `credsync status --json` against A's mirror lists them as rejected, with a reason
    const r = await oneShot(g, s, s.a, ['status', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const st = JSON.parse(r.stdout) as { counts: Record<string, number>; items: { key: string; state: string; source?: string; reason?: string }[] };
    const trunc = st.items.find((i) => i.key === 'auths/truncated.json');
    const arr = st.items.find((i) => i.key === 'auths/array.json');
    expect(trunc).toMatchObject({ state: 'rejected', source: 'local' });
    expect(trunc?.reason).toMatch(/JSON/);
    expect(arr).toMatchObject({ state: 'rejected', source: 'local' });
    expect(arr?.reason).toMatch(/not a JSON object/);
    expect(st.counts.rejected).toBeGreaterThanOrEqual(2);
    // the daemon's own /status says the same
    const live = JSON.parse((await A.get('/status')).body) as typeof st;
    expect(live.items.find((i) => i.key === 'auths/array.json')?.state).toBe('rejected');

    // fixing the file makes it propagate
    const fixed = { type: 'claude', refresh_token: 'rt-trunc-fixed' };
    await writeAuth(s.a, 'truncated.json', fixed);
    await waitJson(authPath(s.b, 'truncated.json'), fixed);
    await unlink(authPath(s.a, 'array.json'));
  });

  itL(g, 'config/config.yaml propagates; a config that is not a YAML mapping is rejected and the store keeps the last good one', async () => {
    const good = 'port: 8317\nremote-management:\n  allow-remote: false\nauth-dir: ./auths\n';
    await mkdir(join(s.a, 'config'), { recursive: true });
    await writeFile(configPath(s.a), good);
    await waitFor('config on B', async () => (await readFile(configPath(s.b), 'utf8').catch(() => '')) === good, 3000, 5);
    expect(await readFile(configPath(s.store), 'utf8')).toBe(good);
    expect((await stat(configPath(s.b))).mode & 0o777).toBe(0o600);

    const since = Date.now();
    await writeFile(configPath(s.a), '- just\n- a\n- list\n');
    await A.waitForLog((l) => /config\/config\.yaml/.test(l.raw) && /mapping/.test(l.raw), 3000, since);
    await sleep(300);
    expect(await readFile(configPath(s.store), 'utf8')).toBe(good);
    expect(await readFile(configPath(s.b), 'utf8')).toBe(good);

    // broken YAML too
    await writeFile(configPath(s.a), 'port: [8317\n');
    await A.waitForLog((l) => /config\/config\.yaml/.test(l.raw) && /YAML/.test(l.raw), 3000, since);
    await sleep(200);
    expect(await readFile(configPath(s.store), 'utf8')).toBe(good);
    expect(await readFile(configPath(s.b), 'utf8')).toBe(good);

    // a good edit goes through again
    const better = good.replace('8317', '8318');
    await writeFile(configPath(s.a), better);
    await waitFor('edited config on B', async () => (await readFile(configPath(s.b), 'utf8').catch(() => '')) === better, 3000, 5);
  });

  itL(g, 'no echo: once settled, neither daemon rewrites the store or the other mirror for 3 s', async () => {
    // settle: both mirrors equal to the store
    await waitFor(
      'mirrors and store to agree',
      async () => {
        const [st, a, b] = await Promise.all([snapshot(join(s.store, 'auths')), snapshot(join(s.a, 'auths')), snapshot(join(s.b, 'auths'))]);
        return st.size > 0 && [...st.keys()].every((k) => a.has(k) && b.has(k)) && a.size === st.size && b.size === st.size;
      },
      5000,
    );
    await sleep(300);
    const before = await Promise.all([snapshot(s.store), snapshot(s.a), snapshot(s.b)]);
    const since = Date.now();
    await sleep(3000);
    const after = await Promise.all([snapshot(s.store), snapshot(s.a), snapshot(s.b)]);
    const names = ['store', 'mirror A', 'mirror B'];
    for (let i = 0; i < 3; i++) {
      expect([...after[i]!.keys()].sort(), `${names[i]} file list`).toEqual([...before[i]!.keys()].sort());
      for (const [k, v] of before[i]!) {
        expect(after[i]!.get(k), `${names[i]}/${k} (mtime, inode)`).toEqual(v);
      }
    }
    const activity = (d: Daemon) => d.messages(since).filter((m) => /^(push|pull|delete) /.test(m));
    expect(activity(A), 'A pushed/pulled during the quiet period').toEqual([]);
    expect(activity(B), 'B pushed/pulled during the quiet period').toEqual([]);
  });

  itL(g, 'a credential rewritten twice within 30 ms on A ends up, in its last version, on B', async () => {
    // A proxy refreshing a token twice in quick succession (or writing the file, then its metadata).
    // The first refresh token is already spent: B must not be left holding it.
    const id = 'twice.json';
    const v0 = { type: 'claude', refresh_token: 'rt-twice-0', n: 0 };
    await writeAuth(s.a, id, v0);
    await waitJson(authPath(s.b, id), v0);
    await sleep(200);
    const stale: number[] = [];
    for (let i = 1; i <= 5; i++) {
      const first = { type: 'claude', refresh_token: `rt-twice-${i}a`, n: i, step: 'a' };
      const second = { type: 'claude', refresh_token: `rt-twice-${i}b`, n: i, step: 'b' };
      await atomicWriteAuth(s.a, id, first);
      await sleep(30);
      await atomicWriteAuth(s.a, id, second);
      await waitJson(authPath(s.store, id), second, 2000);
      try {
        await waitJson(authPath(s.b, id), second, 1000);
      } catch {
        stale.push(i);
        // let the round settle before the next one (B only catches up on the periodic reconcile)
        await writeAuth(s.a, id, { type: 'claude', refresh_token: `rt-twice-${i}c`, n: i, step: 'c' });
        await waitJson(authPath(s.b, id), { type: 'claude', refresh_token: `rt-twice-${i}c`, n: i, step: 'c' }, 2000);
      }
      await sleep(200);
    }
    expect(stale, 'rounds where B kept the first (spent) version although the store had the second').toEqual([]);
  });

  itL(g, 'an item rewritten twice within 50 ms in the store (another writer) reaches both mirrors in its last version', async () => {
    const id = 'store-twice.json';
    const v0 = { type: 'claude', refresh_token: 'rt-st-0' };
    await atomicWriteAuth(s.store, id, v0);
    await waitJson(authPath(s.a, id), v0);
    await waitJson(authPath(s.b, id), v0);
    await sleep(200);
    const stale: string[] = [];
    for (const [i, gap] of [30, 35, 40, 45, 35].entries()) {
      const second = { type: 'claude', refresh_token: `rt-st-${i}b`, gap };
      await atomicWriteAuth(s.store, id, { type: 'claude', refresh_token: `rt-st-${i}a`, gap });
      await sleep(gap);
      await atomicWriteAuth(s.store, id, second);
      let roundStale = false;
      for (const [name, m] of [['A', s.a], ['B', s.b]] as const) {
        try {
          await waitJson(authPath(m, id), second, 1000);
        } catch {
          roundStale = true;
          stale.push(`round ${i} (gap ${gap} ms): ${name}`);
        }
      }
      if (roundStale) {
        // settle before the next round (otherwise only the periodic reconcile would fix it)
        const c = { type: 'claude', refresh_token: `rt-st-${i}c` };
        await atomicWriteAuth(s.store, id, c);
        await waitJson(authPath(s.a, id), c, 2000);
        await waitJson(authPath(s.b, id), c, 2000);
      }
      await sleep(150);
    }
    expect(stale, 'mirrors left with the first version while the store holds the second').toEqual([]);
  });

  itL(g, 'simultaneous edits of one credential on A and B converge on the most recently refreshed copy; the other is kept', async () => {
    const id = 'race.json';
    const v1 = { type: 'claude', refresh_token: 'rt-race-v1', last_refresh: '2025-01-01T00:00:00Z' };
    await writeAuth(s.a, id, v1);
    await waitJson(authPath(s.b, id), v1);
    await sleep(150);
    const older = { type: 'claude', refresh_token: 'rt-race-from-A', last_refresh: '2025-06-01T00:00:00Z' };
    const newer = { type: 'claude', refresh_token: 'rt-race-from-B', last_refresh: '2025-06-01T00:00:05Z' };
    await Promise.all([writeAuth(s.a, id, older), writeAuth(s.b, id, newer)]);
    await waitJson(authPath(s.store, id), newer, 5000);
    await waitJson(authPath(s.a, id), newer, 5000);
    await waitJson(authPath(s.b, id), newer, 5000);
    // A's refreshed copy lost: it must survive somewhere outside auths/ (never silently overwritten)
    const kept = await waitFor(
      'the losing copy under .credsync/conflicts on A or B',
      async () => {
        for (const m of [s.a, s.b]) {
          const dir = join(m, '.credsync', 'conflicts');
          for (const f of await readdir(dir).catch(() => [] as string[])) {
            if ((await readFile(join(dir, f), 'utf8')).includes('rt-race-from-A')) return join(dir, f);
          }
        }
        return null;
      },
      3000,
    );
    expect(kept).toMatch(/race\.json/);
  });

  itL(g, 'a touch (mtime change, same content) is not pushed', async () => {
    const id = 'edit-1.json';
    const before = await stat(authPath(s.store, id));
    const since = Date.now();
    const now = new Date();
    await utimes(authPath(s.a, id), now, now);
    await sleep(400);
    const after = await stat(authPath(s.store, id));
    expect({ mtimeMs: after.mtimeMs, ino: after.ino }).toEqual({ mtimeMs: before.mtimeMs, ino: before.ino });
    expect(A.messages(since).filter((m) => m.startsWith('push '))).toEqual([]);
  });

  itL(g, 'after all of the above, no token value appears anywhere in either daemon’s stderr', async () => {
    const tokens = [SECRET, 'rt-edited-on-B', 'rt-marker', 'rt-trunc-fixed', 'rt-race-from-A', 'rt-race-from-B', 'rt-twice-1b', 'rt-st-0', 'nested-token'];
    expect(A.lines.length + B.lines.length).toBeGreaterThan(10);
    for (const d of [A, B]) {
      expect(tokens.filter((t) => d.stderr.includes(t)), `${d.name} stderr`).toEqual([]);
    }
  });
});

// ------------------------------------------------------------------ mass delete guard

describe('emptying a running mirror', () => {
  const g = processGroup('all');
  let s: Awaited<ReturnType<typeof layout>>;
  let A: Daemon;
  let B: Daemon;
  const ids = ['c1.json', 'c2.json', 'c3.json', 'c4.json', 'c5.json', 'team/c6.json'];
  const cred = (id: string) => ({ type: 'claude', id, refresh_token: `rt-${id}` });

  beforeAll(async () => {
    s = await layout('empty');
    [A, B] = await Promise.all([g.start({ env: envFor(s, s.a), name: 'A' }), g.start({ env: envFor(s, s.b), name: 'B' })]);
    for (const id of ids) await writeAuth(s.a, id, cred(id));
    for (const id of ids) await waitJson(authPath(s.b, id), cred(id));
    for (const id of ids) await waitJson(authPath(s.store, id), cred(id));
    await sleep(200);
  });

  afterAll(async () => {
    await g.killAll();
    await s?.remove();
  });

  itL(g, 'rm of every file in auths/ does not empty the store, B keeps its files, and the daemon says why', async () => {
    const since = Date.now();
    // like `rm auths/* auths/team/*`: every file, in one quick burst
    await Promise.all(ids.map((id) => unlink(authPath(s.a, id))));
    const why = await A.waitForLog((l) => (l.json?.level ?? 0) >= 40 && /not deleting|refused|max-delete/.test(l.json?.msg ?? ''), 3000, since);
    expect(why.json?.msg).toMatch(/empty|max-delete/);
    await sleep(1000);
    for (const id of ids) {
      expect(await readJson(authPath(s.store, id)), `store ${id}`).toEqual(cred(id));
      expect(await readJson(authPath(s.b, id)), `B ${id}`).toEqual(cred(id));
    }
    expect(A.messages(since).filter((m) => /removed from store/.test(m)), 'store deletions').toEqual([]);
  });

  itL(g, 'removing the whole auths/ directory does not empty the store either', async () => {
    // A restored its files after the previous test (the guard pulls them back)
    for (const id of ids) await waitJson(authPath(s.a, id), cred(id));
    await sleep(200);
    const since = Date.now();
    await rm(join(s.a, 'auths'), { recursive: true, force: true });
    await A.waitForLog((l) => (l.json?.level ?? 0) >= 40 && /not deleting|refused|max-delete/.test(l.json?.msg ?? ''), 3000, since).catch(() => null);
    await sleep(1000);
    for (const id of ids) {
      expect(await readJson(authPath(s.store, id)), `store ${id}`).toEqual(cred(id));
      expect(await readJson(authPath(s.b, id)), `B ${id}`).toEqual(cred(id));
    }
    expect(A.messages(since).filter((m) => /removed from store/.test(m)), 'store deletions').toEqual([]);
  });
});

// ------------------------------------------------------------------ shutdown

describe('SIGTERM', () => {
  const g = processGroup('each');
  let s: Awaited<ReturnType<typeof layout>>;

  beforeAll(async () => {
    s = await layout('term');
  });
  afterAll(async () => {
    await g.killAll();
    await s?.remove();
  });

  itL(g, 'run exits 0 within 12 s and a change written just before the signal reaches the store', async () => {
    const A = await g.start({ env: envFor(s, s.a), name: 'A' });
    await writeAuth(s.a, 'seed-1.json', { type: 'claude', refresh_token: 'rt-seed' });
    await waitJson(authPath(s.store, 'seed-1.json'), { type: 'claude', refresh_token: 'rt-seed' });

    const last = { type: 'claude', refresh_token: 'rt-written-just-before-sigterm', at: Date.now() };
    await writeAuth(s.a, 'last-second.json', last);
    const r = await A.stop('SIGTERM', 15_000);
    expect(r.signal, A.stderr).toBeNull();
    expect(r.code, A.stderr).toBe(0);
    expect(r.elapsedMs).toBeLessThan(12_000);
    expect(await readJson(authPath(s.store, 'last-second.json'))).toEqual(last);
    expect(A.messages().some((m) => /SIGTERM/.test(m))).toBe(true);
  });

  itL(g, 'a second signal during a stuck flush exits at once', async () => {
    const A = await g.start({ env: envFor(s, s.a, { CREDSYNC_SHUTDOWN_TIMEOUT: '30s' }), name: 'A' });
    // hold the directory store's lock (fresh mtime, so it is never taken over as stale)
    const lock = join(s.store, '.credsync-lock');
    await mkdir(lock);
    const keepFresh = setInterval(() => void utimes(lock, new Date(), new Date()).catch(() => {}), 500);
    try {
      await writeAuth(s.a, 'stuck.json', { type: 'claude', refresh_token: 'rt-stuck' });
      await sleep(10);
      A.child.kill('SIGTERM');
      await A.waitForLog(/SIGTERM received/, 3000);
      await sleep(300);
      expect(A.running, 'still flushing against the held lock').toBe(true);
      const r = await A.stop('SIGTERM', 3000);
      expect(r.elapsedMs).toBeLessThan(2000);
      expect(r.code).not.toBe(0);
    } finally {
      clearInterval(keepFresh);
      await rm(lock, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------ readiness and metrics

describe('/readyz and /metrics', () => {
  const g = processGroup('each');
  let s: Awaited<ReturnType<typeof layout>>;

  beforeAll(async () => {
    s = await layout('ready');
  });
  afterAll(async () => {
    await g.killAll();
    await s?.remove();
  });

  itL(g, '/readyz is 503 while the store cannot be initialised and 200 once the first reconcile is done', async () => {
    // the store path lies under a regular file: init fails (ENOTDIR) until the file is removed
    const blocker = join(s.root, 'blocker');
    await writeFile(blocker, 'not a directory');
    const storeUrl = pathToFileURL(join(blocker, 'store')).href;
    const d = await g.start({ env: { ...envFor(s, join(s.root, 'ready-mirror')), CREDSYNC_STORE: storeUrl }, waitReady: false, name: 'unready' });
    await waitFor('/healthz', async () => (await d.get('/healthz')).status === 200, 5000);
    const seen: number[] = [];
    for (let i = 0; i < 10; i++) {
      seen.push((await d.get('/readyz')).status);
      await sleep(100);
    }
    expect(new Set(seen)).toEqual(new Set([503]));
    expect(JSON.parse((await d.get('/readyz')).body)).toMatchObject({ ready: false });
    const m = (await d.get('/metrics')).body;
    expect(/^credsync_store_up 0$/m.test(m), 'credsync_store_up 0').toBe(true);
    await d.waitForLog(/unreachable|ENOTDIR/, 3000);

    // the store becomes available: readiness follows after the (backed-off) retry
    await rm(blocker);
    await d.ready(15_000);
    expect((await d.get('/readyz')).status).toBe(200);
    expect(/^credsync_store_up 1$/m.test((await d.get('/metrics')).body), 'credsync_store_up 1').toBe(true);
  });

  itL(g, '/readyz goes from 503 (or straight) to 200 right after spawn; /metrics exposes the credsync_ series', async () => {
    const mirror = join(s.root, 'metrics-mirror');
    const d = await g.start({ env: envFor(s, mirror), waitReady: false, name: 'metrics' });
    const statuses: number[] = [];
    await waitFor(
      'readyz 200',
      async () => {
        const st = await d.get('/readyz').then(
          (r) => r.status,
          () => 0,
        );
        if (st) statuses.push(st);
        return st === 200;
      },
      10_000,
      2,
    );
    // never 200-then-503, never anything but 503/200
    expect(statuses.every((x) => x === 503 || x === 200)).toBe(true);
    expect(statuses.indexOf(200)).toBe(statuses.length - 1);

    // the first file also creates auths/ (a full reconcile); the second one is a watched change,
    // which is what the propagation histogram measures
    await writeAuth(mirror, 'metrics.json', { type: 'claude', refresh_token: 'rt-metrics-secret' });
    await waitJson(authPath(s.store, 'metrics.json'), { type: 'claude', refresh_token: 'rt-metrics-secret' });
    await sleep(100);
    await writeAuth(mirror, 'metrics-2.json', { type: 'claude', refresh_token: 'rt-metrics-secret-2' });
    await waitJson(authPath(s.store, 'metrics-2.json'), { type: 'claude', refresh_token: 'rt-metrics-secret-2' });
    await writeAuth(mirror, 'metrics-bad.json', '[1,2]');
    await d.waitForLog(/metrics-bad\.json/, 3000);
    await sleep(100);
    const body = (await d.get('/metrics')).body;
    for (const name of [
      'credsync_pushes_total',
      'credsync_pulls_total',
      'credsync_conflicts_total',
      'credsync_rejected_files',
      'credsync_pending_pushes',
      'credsync_store_up',
      'credsync_last_sync_timestamp_seconds',
      'credsync_propagation_latency_seconds',
    ]) {
      expect(new RegExp(`^# TYPE ${name} `, 'm').test(body), `/metrics has ${name}`).toBe(true);
    }
    const series = (re: RegExp): string => body.split('\n').filter((l) => re.test(l)).join('\n');
    expect(series(/^credsync_pushes_total/)).toMatch(/^credsync_pushes_total\{kind="auth"\} [1-9]/m);
    expect(series(/^credsync_rejected_files/)).toMatch(/^credsync_rejected_files [1-9]/m);
    expect(series(/^credsync_store_up/)).toMatch(/^credsync_store_up 1$/m);
    expect(series(/^credsync_pending/)).toMatch(/^credsync_pending_pushes 0$/m);
    expect(series(/^credsync_propagation/)).toMatch(/^credsync_propagation_latency_seconds_count\{direction="push"\} [1-9]/m);
    const last = Number(/^credsync_last_sync_timestamp_seconds (\S+)$/m.exec(body)?.[1]);
    expect(Math.abs(last - Date.now() / 1000)).toBeLessThan(60);
    // no key names or token contents in metrics
    expect(body.includes('metrics.json'), 'a key name in /metrics').toBe(false);
    expect(body.includes('rt-metrics-secret'), 'token content in /metrics').toBe(false);
  });
});

// ------------------------------------------------------------------ restart

describe('restart after a crash', () => {
  const g = processGroup('all');
  let s: Awaited<ReturnType<typeof layout>>;

  beforeAll(async () => {
    s = await layout('restart');
  });
  afterAll(async () => {
    await g.killAll();
    await s?.remove();
  });

  itL(g, 'changes made while B was down (SIGKILL) are pulled on restart, and B’s offline edit is pushed', async () => {
    const A = await g.start({ env: envFor(s, s.a), name: 'A' });
    let B = await g.start({ env: envFor(s, s.b), name: 'B' });
    const ids = ['r1.json', 'r2.json', 'r3.json', 'r4.json'];
    for (const id of ids) await writeAuth(s.a, id, { id, v: 1, refresh_token: `rt-${id}` });
    for (const id of ids) await waitJson(authPath(s.b, id), { id, v: 1, refresh_token: `rt-${id}` });
    await sleep(200);

    const k = await B.kill();
    expect(k.signal).toBe('SIGKILL');

    // while B is down: A edits r1, adds r5, deletes r4; B's proxy refreshes r2 locally
    const r1v2 = { id: 'r1.json', v: 2, refresh_token: 'rt-r1-v2' };
    const r5 = { id: 'r5.json', v: 1, refresh_token: 'rt-r5' };
    await writeAuth(s.a, 'r1.json', r1v2);
    await writeAuth(s.a, 'r5.json', r5);
    await unlink(authPath(s.a, 'r4.json'));
    await waitJson(authPath(s.store, 'r1.json'), r1v2);
    await waitJson(authPath(s.store, 'r5.json'), r5);
    await waitGone(authPath(s.store, 'r4.json'));
    const r2b = { id: 'r2.json', v: 2, refresh_token: 'rt-r2-refreshed-on-B-offline' };
    await writeAuth(s.b, 'r2.json', r2b);

    B = await g.start({ env: envFor(s, s.b), name: 'B (restarted)' });
    // ready means the initial reconcile is done: everything should already be in place
    expect(await readJson(authPath(s.b, 'r1.json'))).toEqual(r1v2);
    expect(await readJson(authPath(s.b, 'r5.json'))).toEqual(r5);
    expect(await exists(authPath(s.b, 'r4.json'))).toBe(false);
    expect(await readJson(authPath(s.store, 'r2.json'))).toEqual(r2b);
    await waitJson(authPath(s.a, 'r2.json'), r2b);
    expect(await readJson(authPath(s.b, 'r3.json'))).toEqual({ id: 'r3.json', v: 1, refresh_token: 'rt-r3.json' });
    expect(B.messages().filter((m) => /conflict/.test(m))).toEqual([]);
    void A;
  });
});
