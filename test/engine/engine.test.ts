import { describe, it, expect, afterEach } from 'vitest';
import { readdir, rename, stat, symlink, writeFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { makeEngine, auth, type Harness } from './harness.js';
import { createDirStore } from '../../src/stores/dir.js';
import { Mirror } from '../../src/mirror/mirror.js';
import { StoreError } from '../../src/core/errors.js';
import type { Change, Store } from '../../src/core/store.js';
import { waitFor, sleep } from '../support/wait.js';

const harnesses: Harness[] = [];
async function h(opts: Parameters<typeof makeEngine>[0] = {}): Promise<Harness> {
  const x = await makeEngine(opts);
  harnesses.push(x);
  return x;
}
afterEach(async () => {
  const all = harnesses.splice(0);
  // Stop every engine before removing any directory: harnesses may share temp directories.
  for (const x of all) await x.engine.stop(2000).catch(() => {});
  for (const x of all.reverse()) await x.cleanup();
});

const A = 'auths/claude-a@x.com.json';
const B = 'auths/team/codex-b@x.com.json';
const C = 'auths/c.json';

describe('engine: every row of the three-way table', () => {
  it('pulls new store items into an empty mirror, nested ids included, files 0600 and dirs 0700', async () => {
    const x = await h();
    await x.remote.put(A, auth({ type: 'claude', refresh_token: 'r1' }));
    await x.remote.put(B, auth({ type: 'codex' }));
    await x.remote.put('config/config.yaml', 'port: 8317\r\n');
    const r = await x.engine.reconcile();
    expect(r.pulled.sort()).toEqual([A, B, 'config/config.yaml'].sort());
    expect(JSON.parse((await x.local.get(A))!)).toEqual({ type: 'claude', refresh_token: 'r1' });
    expect((await x.local.stat(B)).mode & 0o777).toBe(0o600);
    expect((await stat(join(x.mirrorPath, 'auths/team'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(x.mirrorPath, 'auths'))).mode & 0o777).toBe(0o700);
  });

  it('pushes new local items', async () => {
    const x = await h();
    await x.local.put(A, auth({ a: 1 }));
    const r = await x.engine.reconcile();
    expect(r.pushed).toEqual([A]);
    expect(JSON.parse((await x.remote.get(A))!)).toEqual({ a: 1 });
  });

  it('leaves items in sync untouched (no rewrite on either side)', async () => {
    const x = await h();
    await x.local.put(A, '{"b":2,"a":1}');
    await x.remote.put(A, '{ "a": 1, "b": 2 }'); // same JSON, other key order and whitespace
    const before = (await x.local.stat(A)).mtimeMs;
    const r = await x.engine.reconcile();
    expect(r.pulled).toEqual([]);
    expect(r.pushed).toEqual([]);
    expect(r.conflicts).toEqual([]);
    expect((await x.local.stat(A)).mtimeMs).toBe(before);
    expect(await x.remote.get(A)).toBe('{ "a": 1, "b": 2 }');
  });

  it('propagates a local deletion of a synced item to the store', async () => {
    const x = await h();
    for (const k of [A, B, C]) await x.local.put(k, auth({ k }));
    await x.engine.reconcile();
    await x.local.rm(C);
    const r = await x.engine.reconcile();
    expect(r.deletedStore).toEqual([C]);
    expect(await x.remote.get(C)).toBeNull();
    expect(await x.remote.get(A)).not.toBeNull();
  });

  it('propagates a store deletion of a synced item to the mirror', async () => {
    const x = await h();
    for (const k of [A, B, C]) await x.remote.put(k, auth({ k }));
    await x.engine.reconcile();
    await x.remote.rm(C);
    const r = await x.engine.reconcile();
    expect(r.deletedLocal).toEqual([C]);
    expect(await x.local.get(C)).toBeNull();
  });

  it('pulls a store change and pushes a local change', async () => {
    const x = await h();
    await x.local.put(A, auth({ v: 1 }));
    await x.local.put(B, auth({ v: 1 }));
    await x.engine.reconcile();
    await x.remote.put(A, auth({ v: 2 }));
    await x.local.put(B, auth({ v: 3 }));
    const r = await x.engine.reconcile();
    expect(r.pulled).toEqual([A]);
    expect(r.pushed).toEqual([B]);
    expect(JSON.parse((await x.local.get(A))!)).toEqual({ v: 2 });
    expect(JSON.parse((await x.remote.get(B))!)).toEqual({ v: 3 });
  });

  it('lets an edit beat a delete on either side', async () => {
    const x = await h();
    for (const k of [A, B, C]) await x.local.put(k, auth({ v: 1, k }));
    await x.engine.reconcile();
    await x.local.rm(A);
    await x.remote.put(A, auth({ v: 2 })); // store edited, local deleted → pull
    await x.remote.rm(B);
    await x.local.put(B, auth({ v: 2 })); // local edited, store deleted → push
    const r = await x.engine.reconcile();
    expect(r.pulled).toEqual([A]);
    expect(r.pushed).toEqual([B]);
    expect(JSON.parse((await x.local.get(A))!)).toEqual({ v: 2 });
    expect(JSON.parse((await x.remote.get(B))!)).toEqual({ v: 2 });
  });

  it('forgets a key deleted on both sides', async () => {
    const x = await h();
    for (const k of [A, B, C]) await x.local.put(k, auth({ k }));
    await x.engine.reconcile();
    await x.local.rm(C);
    await x.remote.rm(C);
    await x.engine.reconcile();
    expect(x.engine.state.base(C)).toBeUndefined();
  });
});

describe('engine: conflicts', () => {
  it('newest: the more recently refreshed credential wins and the loser is kept outside auths/', async () => {
    const x = await h();
    await x.local.put(A, auth({ v: 0, last_refresh: '2026-01-01T00:00:00Z' }));
    await x.engine.reconcile();
    await x.local.put(A, auth({ v: 'local', last_refresh: '2026-03-01T00:00:00Z' }));
    await x.remote.put(A, auth({ v: 'store', last_refresh: '2026-02-01T00:00:00Z' }));
    const r = await x.engine.reconcile();
    expect(r.conflicts).toHaveLength(1);
    expect(r.conflicts[0]!.winner).toBe('local');
    expect(JSON.parse((await x.remote.get(A))!).v).toBe('local');
    const kept = await readdir(join(x.mirrorPath, '.credsync/conflicts'));
    expect(kept).toHaveLength(1);
    expect(kept[0]).toContain('.store.');
    expect(x.lines.some((l) => l.level === 40 && l.msg.includes(A) && l.msg.includes('conflict'))).toBe(true);
  });

  it('newest: falls back to the expiry field, then to the store', async () => {
    const x = await h();
    await x.local.put(A, auth({ v: 0 }));
    await x.local.put(B, auth({ v: 0 }));
    await x.engine.reconcile();
    await x.local.put(A, auth({ v: 'local', expired: '2026-01-01T00:00:00Z' }));
    await x.remote.put(A, auth({ v: 'store', expired: '2026-06-01T00:00:00Z' }));
    await x.local.put(B, auth({ v: 'local' }));
    await x.remote.put(B, auth({ v: 'store' }));
    const r = await x.engine.reconcile();
    expect(r.conflicts.map((c) => [c.key, c.winner]).sort()).toEqual([
      [A, 'store'],
      [B, 'store'],
    ]);
    expect(JSON.parse((await x.local.get(A))!).v).toBe('store');
    expect(JSON.parse((await x.local.get(B))!).v).toBe('store');
  });

  it('the config conflict goes to the store; policy local overrides', async () => {
    const x = await h({ conflictPolicy: 'local' });
    await x.local.put('config/config.yaml', 'port: 1\n');
    await x.engine.reconcile();
    await x.local.put('config/config.yaml', 'port: 2\n');
    await x.remote.put('config/config.yaml', 'port: 3\n');
    const r = await x.engine.reconcile();
    expect(r.conflicts[0]!.winner).toBe('local');
    expect(await x.remote.get('config/config.yaml')).toBe('port: 2\n');

    const y = await h({ conflictPolicy: 'newest' });
    await y.local.put('config/config.yaml', 'port: 1\n');
    await y.engine.reconcile();
    await y.local.put('config/config.yaml', 'port: 2\n');
    await y.remote.put('config/config.yaml', 'port: 3\n');
    await y.engine.reconcile();
    expect(await y.local.get('config/config.yaml')).toBe('port: 3\n');
  });

  it('no lost update: two instances editing one credential converge on one winner, loser kept', async () => {
    const one = await h();
    const two = await h({ storePath: one.storePath });
    await one.local.put(A, auth({ v: 0, last_refresh: '2026-01-01T00:00:00Z' }));
    await one.engine.reconcile();
    await two.engine.reconcile();
    await one.local.put(A, auth({ v: 'one', last_refresh: '2026-01-02T00:00:00Z' }));
    await two.local.put(A, auth({ v: 'two', last_refresh: '2026-01-03T00:00:00Z' }));
    await one.engine.reconcile(); // wins the race to the store
    const r = await two.engine.reconcile(); // CAS on its base fails → conflict → newer wins
    expect(r.conflicts[0]!.winner).toBe('local');
    await one.engine.reconcile();
    expect(JSON.parse((await one.local.get(A))!).v).toBe('two');
    expect(JSON.parse((await two.local.get(A))!).v).toBe('two');
    expect(JSON.parse((await one.remote.get(A))!).v).toBe('two');
    const kept = await readdir(join(two.mirrorPath, '.credsync/conflicts'));
    expect(kept).toHaveLength(1);
  });

  it('a CAS failure between planning and writing is re-read, not overwritten', async () => {
    const x = await h();
    await x.local.put(A, auth({ v: 0 }));
    await x.engine.reconcile();
    // A second writer changes the store right after this instance listed it.
    const real = x.store;
    const racer = createDirStore({ path: x.storePath });
    const origList = real.list.bind(real);
    let once = true;
    real.list = async () => {
      const l = await origList();
      if (once) {
        once = false;
        await racer.put(A, Buffer.from(auth({ v: 'racer', last_refresh: '2030-01-01T00:00:00Z' })));
      }
      return l;
    };
    await x.local.put(A, auth({ v: 'mine', last_refresh: '2020-01-01T00:00:00Z' }));
    const r = await x.engine.reconcile();
    expect(JSON.parse((await x.remote.get(A))!).v).toBe('racer');
    expect(JSON.parse((await x.local.get(A))!).v).toBe('racer');
    expect(r.conflicts).toHaveLength(1);
    expect(r.conflicts[0]!.winner).toBe('store');
  });
});

describe('engine: bad input never propagates', () => {
  it('does not push a local file that is not a JSON object; the store keeps the last good version', async () => {
    const x = await h();
    await x.local.put(A, auth({ good: true }));
    await x.engine.reconcile();
    await x.local.put(A, '{"good": tr'); // truncated
    await x.local.put(B, '[1,2,3]');
    const r = await x.engine.reconcile();
    expect(r.pushed).toEqual([]);
    expect(JSON.parse((await x.remote.get(A))!)).toEqual({ good: true });
    expect(await x.remote.get(B)).toBeNull();
    const reasons = Object.fromEntries(r.rejected.map((j) => [j.key, j.reason]));
    expect(reasons[A]).toMatch(/not valid JSON/);
    expect(reasons[B]).toBe('not a JSON object (found an array)');
    expect(x.lines.some((l) => l.level === 40 && l.key === B && l.msg.includes(B))).toBe(true);
    const s = await x.engine.status();
    expect(s.items.find((i) => i.key === B)).toMatchObject({ state: 'rejected', source: 'local' });
    expect(s.counts.rejected).toBe(2);
  });

  it('does not push a config.yaml that is not a YAML mapping', async () => {
    const x = await h();
    await x.local.put('config/config.yaml', 'port: 8317\n');
    await x.engine.reconcile();
    await x.local.put('config/config.yaml', '- just\n- a list\n');
    const r = await x.engine.reconcile();
    expect(r.rejected.map((j) => j.reason)).toEqual(['not a YAML mapping']);
    expect(await x.remote.get('config/config.yaml')).toBe('port: 8317\n');
  });

  it('does not write a bad store item locally', async () => {
    const x = await h();
    await x.local.put(A, auth({ good: true }));
    await x.engine.reconcile();
    await x.remote.put(A, 'null');
    await x.remote.put(B, '{oops');
    const r = await x.engine.reconcile();
    expect(r.pulled).toEqual([]);
    expect(JSON.parse((await x.local.get(A))!)).toEqual({ good: true });
    expect(await x.local.get(B)).toBeNull();
    expect(r.rejected.filter((j) => j.source === 'store').map((j) => j.key).sort()).toEqual([A, B].sort());
  });

  it('skips and reports store ids that are not valid keys, never writing them', async () => {
    const x = await h();
    const inner = x.store;
    const wrapped: Store = { ...inner, list: async () => ({ ...(await inner.list()), skipped: [{ id: '../../etc/evil.json', reason: 'has a ".." segment' }] }) };
    const y = await h({ store: wrapped, mirrorPath: join(x.tmp.path, 'm2') });
    const r = await y.engine.reconcile();
    expect(r.rejected).toEqual([{ key: '../../etc/evil.json', source: 'store', reason: 'has a ".." segment' }]);
    expect(await readdir(x.tmp.path)).not.toContain('etc');
  });

  it('does not follow a symlink out of the mirror', async () => {
    const x = await h();
    const outside = join(x.tmp.path, 'outside.json');
    await writeFile(outside, auth({ secret: 'elsewhere' }));
    await mkdir(join(x.mirrorPath, 'auths'), { recursive: true });
    await symlink(outside, join(x.mirrorPath, 'auths/link.json'));
    const r = await x.engine.reconcile();
    expect(r.pushed).toEqual([]);
    expect(await x.remote.get('auths/link.json')).toBeNull();
    expect(r.rejected).toContainEqual({ key: 'auths/link.json', source: 'local', reason: 'symlink pointing outside the mirror' });
  });
});

describe('engine: deletion is intentional', () => {
  it('a fresh, empty mirror only pulls', async () => {
    const x = await h();
    for (const k of [A, B, C]) await x.remote.put(k, auth({ k }));
    const r = await x.engine.reconcile();
    expect(r.deletedStore).toEqual([]);
    expect(r.pulled.sort()).toEqual([A, B, C].sort());
  });

  it('an emptied auths/ is never propagated: the store keeps everything and the mirror is restored', async () => {
    const x = await h();
    for (const k of [A, B, C]) await x.local.put(k, auth({ k }));
    await x.engine.reconcile();
    await rm(join(x.mirrorPath, 'auths'), { recursive: true, force: true });
    const r = await x.engine.reconcile();
    expect(r.deletedStore).toEqual([]);
    for (const k of [A, B, C]) expect(await x.remote.get(k)).not.toBeNull();
    for (const k of [A, B, C]) expect(await x.local.get(k)).not.toBeNull();
    expect(x.lines.some((l) => l.level === 50 && /empty or missing/.test(l.msg))).toBe(true);
  });

  it('refuses a reconcile deleting more than --max-delete of the store and says why', async () => {
    const x = await h({ maxDelete: { percent: 50 } });
    const keys = ['auths/1.json', 'auths/2.json', 'auths/3.json', 'auths/4.json', 'auths/5.json'];
    for (const k of keys) await x.local.put(k, auth({ k }));
    await x.engine.reconcile();
    for (const k of keys.slice(0, 3)) await x.local.rm(k);
    const r = await x.engine.reconcile();
    expect(r.deletedStore).toEqual([]);
    expect(r.held.map((x2) => x2.reason).join()).toMatch(/exceeds --max-delete 50%/);
    for (const k of keys) expect(await x.remote.get(k)).not.toBeNull();
  });

  it('judges a vanished mirror whose deletions arrive in several batches as one burst', async () => {
    const x = await h();
    for (const k of [A, B, C]) await x.local.put(k, auth({ k }));
    await x.engine.reconcile();
    await rename(join(x.mirrorPath, 'auths'), join(x.tmp.path, 'gone'));
    const first = await x.engine.reconcile(); // refused: auths/ is missing; files restored
    expect(first.deletedStore).toEqual([]);
    // The rest of the same burst shows up after the restore (e.g. a nested directory's events).
    await x.local.rm(B);
    const second = await x.engine.reconcile();
    expect(second.deletedStore).toEqual([]);
    expect(second.held.map((h2) => h2.key)).toEqual([B]);
    for (const k of [A, B, C]) expect(await x.remote.get(k)).not.toBeNull();
  });

  it('an absolute --max-delete count allows an intentional bulk delete', async () => {
    const x = await h({ maxDelete: { count: 10 } });
    const keys = ['auths/1.json', 'auths/2.json', 'auths/3.json', 'auths/4.json'];
    for (const k of keys) await x.local.put(k, auth({ k }));
    await x.engine.reconcile();
    for (const k of keys.slice(0, 3)) await x.local.rm(k);
    const r = await x.engine.reconcile();
    expect(r.deletedStore.sort()).toEqual(keys.slice(0, 3));
  });

  it('a wiped store does not wipe the mirror', async () => {
    const x = await h();
    for (const k of [A, B, C]) await x.local.put(k, auth({ k }));
    await x.engine.reconcile();
    await rm(join(x.storePath, 'auths'), { recursive: true });
    const r = await x.engine.reconcile();
    expect(r.deletedLocal).toEqual([]);
    for (const k of [A, B, C]) expect(await x.local.get(k)).not.toBeNull();
  });

  it('the config is never deleted from the store because the local copy vanished', async () => {
    const x = await h();
    await x.local.put('config/config.yaml', 'port: 1\n');
    for (const k of [A, B]) await x.local.put(k, auth({ k }));
    await x.engine.reconcile();
    await x.local.rm('config/config.yaml');
    await x.engine.reconcile();
    expect(await x.remote.get('config/config.yaml')).toBe('port: 1\n');
    expect(await x.local.get('config/config.yaml')).toBe('port: 1\n');
  });

  it('a state file from another store is discarded, so it cannot cause deletions', async () => {
    const x = await h();
    for (const k of [A, B, C]) await x.local.put(k, auth({ k }));
    await x.engine.reconcile();
    // Same mirror, pointed at a different (empty) store.
    const y = await h({ mirrorPath: x.mirrorPath, storePath: join(x.tmp.path, 'other-store') });
    const r = await y.engine.reconcile();
    expect(r.deletedLocal).toEqual([]);
    expect(r.pushed.sort()).toEqual([A, B, C].sort());
    expect(y.lines.some((l) => /another store/.test(l.msg))).toBe(true);
  });
});

describe('engine: directions for one-shot commands', () => {
  it('pull never writes to the store; push never writes to the mirror', async () => {
    const x = await h();
    await x.local.put(A, auth({ a: 1 }));
    await x.remote.put(B, auth({ b: 1 }));
    const p = await x.engine.reconcile('pull');
    expect(p.pulled).toEqual([B]);
    expect(await x.remote.get(A)).toBeNull();
    expect(p.held.map((h2) => h2.key)).toEqual([A]);
    await x.remote.put(C, auth({ c: 1 }));
    const q = await x.engine.reconcile('push');
    expect(q.pushed).toEqual([A]);
    expect(await x.local.get(C)).toBeNull();
  });
});

/** A real directory store that can be switched off, as an unreachable database would be. */
function flaky(inner: Store): Store & { down: boolean } {
  const s = {
    down: false,
    name: inner.name,
    id: inner.id,
  } as Store & { down: boolean };
  const guard =
    <A extends unknown[], R>(op: string, fn: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      if (s.down) throw new StoreError('dir', op, undefined, 'connection refused');
      return fn(...a);
    };
  s.init = guard('init', () => inner.init());
  s.list = guard('list', () => inner.list());
  s.get = guard('get', (k) => inner.get(k));
  s.put = guard('put', (k, d, o) => inner.put(k, d, o));
  s.delete = guard('delete', (k, o) => inner.delete(k, o));
  s.watch = (cb, o) => inner.watch!(cb, o);
  s.close = () => inner.close();
  return s;
}

describe('engine: outages lose nothing', () => {
  it('queues local changes while the store is down and pushes them, conditionally, when it returns — also after a restart', async () => {
    const t = await h();
    const store = flaky(createDirStore({ path: t.storePath }));
    const x = await h({ store, storePath: t.storePath, mirrorPath: join(t.tmp.path, 'm') });
    await x.local.put(A, auth({ v: 1 }));
    await x.engine.reconcile();
    store.down = true;
    await x.local.put(A, auth({ v: 2 }));
    await expect(x.engine.reconcile()).rejects.toBeInstanceOf(StoreError);
    expect(JSON.parse((await x.local.get(A))!)).toEqual({ v: 2 }); // mirror kept as is
    // credsync restarts while the store is still down, then the store comes back.
    await x.engine.stop(100);
    const y = await h({ store, storePath: t.storePath, mirrorPath: x.mirrorPath });
    store.down = false;
    const r = await y.engine.reconcile();
    expect(r.pushed).toEqual([A]);
    expect(JSON.parse((await t.remote.get(A))!)).toEqual({ v: 2 });
  });

  it('the daemon retries with backoff, reports the store down, and catches up', async () => {
    const t = await h();
    const store = flaky(createDirStore({ path: t.storePath, debounceMs: 10 }));
    const x = await h({ store, storePath: t.storePath, mirrorPath: join(t.tmp.path, 'm'), backoffInitialMs: 50, backoffMaxMs: 100 });
    await x.engine.start();
    await waitFor('ready', () => x.engine.ready);
    store.down = true;
    await x.local.put(A, auth({ during: 'outage' }));
    await waitFor('store marked down', () => !x.engine.storeUp);
    expect(x.engine.ready).toBe(false);
    // A pass that failed while the file was still being written in place saw it incomplete (not yet a
    // change); the retry queues it.
    await waitFor('the change queued', () => x.engine.state.pendingKeys().includes(A));
    store.down = false;
    await waitFor('pushed after recovery', async () => (await t.remote.get(A)) !== null, 5000);
    await waitFor('ready again', () => x.engine.ready);
    // The file is visible in the store a moment before the write returns and the queue entry is cleared.
    await waitFor('pending queue drained', () => x.engine.state.pendingKeys().length === 0);
  });
});

describe('engine: remembered file signatures', () => {
  it('a restarted engine does not read files unchanged since their last sync; a file changed meanwhile is read and pushed', async () => {
    const one = await h();
    await one.local.put(A, auth({ v: 1 }));
    await one.local.put(B, auth({ v: 1 }));
    await one.engine.reconcile();
    expect(one.engine.state.base(A)?.sig).toMatch(/^\d+:\d+:\d+:\d+$/);
    await one.engine.close();
    await one.local.put(B, auth({ v: 2 }));
    const two = await h({ storePath: one.storePath, mirrorPath: one.mirrorPath });
    const reads: string[] = [];
    const mirror = (two.engine as unknown as { o: { mirror: Mirror } }).o.mirror;
    const readScanned = mirror.tree.readScanned.bind(mirror.tree);
    mirror.tree.readScanned = async (f) => {
      reads.push(f.key);
      return readScanned(f);
    };
    const r = await two.engine.reconcile();
    expect(reads).toEqual([B]);
    expect(r.pushed).toEqual([B]);
    expect(await two.remote.get(B)).toBe(auth({ v: 2 }));
  });
});

describe('engine: the daemon loop', () => {
  it('a local edit is pushed on the version last synced without reading the store, and our own notification (even one arriving before the write answers) causes no read', async () => {
    const t = await h();
    const real = createDirStore({ path: t.storePath, debounceMs: 10 });
    const reads: string[] = [];
    let notify: ((c: Change) => void) | null = null;
    const store: Store = {
      ...real,
      capabilities: real.capabilities,
      init: (o) => real.init(o),
      list: () => real.list(),
      delete: (k, o) => real.delete(k, o),
      close: () => real.close(),
      get: async (k) => {
        reads.push(k);
        return real.get(k);
      },
      getMany: async (ks) => {
        reads.push(...ks);
        return real.getMany ? real.getMany(ks) : Promise.all(ks.map((k) => real.get(k))).then((xs) => xs.filter((x) => x !== null));
      },
      // The notification of our own write reaches us before the write's answer (PostgreSQL's NOTIFY can).
      put: async (k, data, o) => {
        const e = await real.put(k, data, o);
        notify?.({ op: 'put', key: k, version: e.version });
        await new Promise((r) => setTimeout(r, 20));
        return e;
      },
      // Notifications carry the version, as PostgreSQL's do (the directory store's own watcher has none).
      watch: async (onChange) => {
        notify = onChange;
        return async () => {};
      },
    };
    const x = await h({ store, storePath: t.storePath, mirrorPath: join(t.tmp.path, 'm') });
    await x.local.put(A, auth({ v: 1 }));
    await x.engine.start();
    await waitFor('ready', () => x.engine.ready);
    await waitFor('first push', async () => (await t.remote.get(A)) !== null);
    await sleep(300);
    reads.length = 0;
    for (let i = 2; i <= 4; i++) {
      await x.local.put(A, auth({ v: i }));
      await waitFor(`edit ${i} stored`, async () => (await t.remote.get(A)) === auth({ v: i }));
      await sleep(150);
    }
    expect(reads, 'store reads for three local edits').toEqual([]);
    // A store that moved meanwhile refuses the push on the old version: re-read, and the newer side wins.
    await createDirStore({ path: t.storePath }).put(A, Buffer.from(auth({ v: 5, last_refresh: '2099-01-01T00:00:00Z' })));
    await x.local.put(A, auth({ v: 6, last_refresh: '2020-01-01T00:00:00Z' }));
    await waitFor('the store copy (newer) is on the mirror', async () => (await x.local.get(A))?.includes('"v": 5') === true, 5000);
    expect(reads).toContain(A);
  });

  it('propagates both ways while running, without echo', async () => {
    const x = await h();
    await x.engine.start();
    await waitFor('ready', () => x.engine.ready);
    await x.local.put(A, auth({ from: 'local' }));
    await waitFor('pushed', () => x.lines.some((l) => l.msg === `push ${A}: stored`));
    const other = createDirStore({ path: x.storePath });
    await other.put(B, Buffer.from(auth({ from: 'store' })));
    await waitFor('pulled', () => x.lines.some((l) => l.msg === `pull ${B}: written to mirror`));
    const mA = (await x.local.stat(A)).mtimeMs;
    const mB = (await x.local.stat(B)).mtimeMs;
    const sA = (await stat(join(x.storePath, A))).mtimeMs;
    const lines = x.lines.length;
    await sleep(600);
    expect((await x.local.stat(A)).mtimeMs).toBe(mA);
    expect((await x.local.stat(B)).mtimeMs).toBe(mB);
    expect((await stat(join(x.storePath, A))).mtimeMs).toBe(sA);
    expect(x.lines.slice(lines).filter((l) => /^(push|pull) /.test(l.msg))).toEqual([]);
  });

  it('keeps watching after auths/ is removed and recreated (no wait for the periodic rescan)', async () => {
    const x = await h({ reconcileIntervalMs: 600_000 });
    for (const k of [A, B, C]) await x.remote.put(k, auth({ k }));
    await x.engine.start();
    await waitFor('ready', () => x.engine.ready);
    // Vanish in one step: a recursive rm would race with the daemon restoring the files.
    await rename(join(x.mirrorPath, 'auths'), join(x.tmp.path, 'auths.gone'));
    await waitFor('restored', async () => (await x.local.get(A)) !== null && (await x.local.get(C)) !== null);
    await x.local.put('auths/new.json', auth({ fresh: true }));
    await waitFor('new file pushed', async () => (await x.remote.get('auths/new.json')) !== null, 3000);
    for (const k of [A, B, C]) expect(await x.remote.get(k)).not.toBeNull();
  });

  it('notices files in an auths/ directory created after start', async () => {
    const x = await h({ reconcileIntervalMs: 600_000 });
    await rm(join(x.mirrorPath, 'auths'), { recursive: true, force: true });
    await x.engine.start();
    await waitFor('ready', () => x.engine.ready);
    await x.local.put('auths/team/late.json', auth({ late: true }));
    await waitFor('pushed', async () => (await x.remote.get('auths/team/late.json')) !== null, 3000);
  });

  it('stop() flushes a change made just before it', async () => {
    const x = await h({ debounceMs: 200 });
    await x.engine.start();
    await waitFor('ready', () => x.engine.ready);
    await x.local.put(A, auth({ last: 'second' }));
    const ok = await x.engine.stop(5000);
    expect(ok).toBe(true);
    expect(JSON.parse((await x.remote.get(A))!)).toEqual({ last: 'second' });
  });

  it('never logs token contents', async () => {
    const x = await h();
    await x.remote.put(A, auth({ refresh_token: 'rt-SUPERSECRET', access_token: 'at-SUPERSECRET' }));
    await x.local.put(B, '{"refresh_token": "rt-SUPERSECRET"'); // invalid: rejected and logged
    await x.engine.reconcile();
    await x.engine.status();
    expect(JSON.stringify(x.lines)).not.toContain('SUPERSECRET');
  });
});

describe('engine: seeding the config', () => {
  it('seeds the config from the example when neither side has one, and never over an existing one', async () => {
    const t = await h();
    const seed = join(t.tmp.path, 'config.example.yaml');
    await writeFile(seed, 'port: 8317\n# example\n');
    const x = await h({ seedConfigPath: seed, storePath: t.storePath, mirrorPath: join(t.tmp.path, 'm1') });
    await x.engine.reconcile();
    expect(await t.remote.get('config/config.yaml')).toBe('port: 8317\n# example\n');
    await t.remote.put('config/config.yaml', 'port: 9999\n');
    const y = await h({ seedConfigPath: seed, storePath: t.storePath, mirrorPath: join(t.tmp.path, 'm2') });
    await y.engine.reconcile();
    expect(await y.local.get('config/config.yaml')).toBe('port: 9999\n');
  });
});
