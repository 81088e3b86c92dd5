import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import type { Change, Store } from '../../src/core/store.js';
import { ConflictError, InvalidKeyError } from '../../src/core/errors.js';
import { contentHash } from '../../src/core/canonical.js';
import { waitFor } from '../support/wait.js';

/** One fresh namespace (schema, prefix, repository, directory) per test. */
export interface StoreFixture {
  store: Store;
  /** A second, independent client on the same namespace (another process's view). */
  second(): Promise<Store>;
  /** Kills the watch subscription's underlying connection, if the store has one. */
  killWatchConnection?(): Promise<void>;
  /** Writes an item behind the store's back with a bad id, if the store can hold one. */
  plantBadId?(id: string): Promise<void>;
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  /** The store returns auth bytes exactly as written (false for PostgreSQL JSONB: hashes still equal). */
  exactAuthBytes: boolean;
  /** How long a change may take to reach a second client's watcher. */
  watchTimeoutMs?: number;
}

const enc = (s: string): Uint8Array => Buffer.from(s, 'utf8');
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

export function storeConformance(name: string, open: () => Promise<StoreFixture>, opts: ConformanceOptions): void {
  describe(`${name} store conformance`, () => {
    let fx: StoreFixture;
    let extra: Store[] = [];
    beforeEach(async () => {
      fx = await open();
      extra = [];
    });
    afterEach(async () => {
      for (const s of extra) await s.close().catch(() => {});
      await fx.cleanup();
    });
    const second = async (): Promise<Store> => {
      const s = await fx.second();
      extra.push(s);
      return s;
    };

    it('round-trips config bytes exactly and auth content by canonical hash', async () => {
      const cfg = 'port: 8317\nhost: ""\napi-keys:\n  - k1\n';
      const auth = '{\n  "type": "claude",\n  "email": "a@b.com",\n  "refresh_token": "rt-1",\n  "n": 1.5\n}';
      const e1 = await fx.store.put('config/config.yaml', enc(cfg));
      const e2 = await fx.store.put('auths/claude-a@b.com.json', enc(auth));
      expect(e1.version).toBeTruthy();
      expect(e2.version).toBeTruthy();
      const got1 = await fx.store.get('config/config.yaml');
      const got2 = await fx.store.get('auths/claude-a@b.com.json');
      expect(text(got1!.data)).toBe(cfg);
      expect(got1!.version).toBe(e1.version);
      if (opts.exactAuthBytes) expect(text(got2!.data)).toBe(auth);
      expect(contentHash('auths/x.json', got2!.data)).toBe(contentHash('auths/x.json', enc(auth)));
      expect(got2!.version).toBe(e2.version);
    });

    it('lists every item with its version, including nested auth ids', async () => {
      const a = await fx.store.put('auths/a.json', enc('{"a":1}'));
      const b = await fx.store.put('auths/team/b.json', enc('{"b":2}'));
      const c = await fx.store.put('config/config.yaml', enc('x: 1\n'));
      const { entries } = await fx.store.list();
      const byKey = new Map(entries.map((e) => [e.key, e.version]));
      expect([...byKey.keys()].sort()).toEqual(['auths/a.json', 'auths/team/b.json', 'config/config.yaml']);
      expect(byKey.get('auths/a.json')).toBe(a.version);
      expect(byKey.get('auths/team/b.json')).toBe(b.version);
      expect(byKey.get('config/config.yaml')).toBe(c.version);
      for (const e of entries) if (e.hash) expect(e.hash).toBe(contentHash(e.key, (await fx.store.get(e.key))!.data));
    });

    it('returns null for a missing key and an empty listing for a fresh namespace', async () => {
      expect(await fx.store.get('auths/missing.json')).toBeNull();
      expect((await fx.store.list()).entries).toEqual([]);
    });

    it('changes the version when the content changes', async () => {
      const v1 = await fx.store.put('auths/a.json', enc('{"a":1}'));
      const v2 = await fx.store.put('auths/a.json', enc('{"a":2}'));
      expect(v2.version).not.toBe(v1.version);
    });

    it('enforces compare-and-swap on put', async () => {
      const v1 = await fx.store.put('auths/a.json', enc('{"a":1}'), { ifVersion: null });
      await expect(fx.store.put('auths/a.json', enc('{"a":9}'), { ifVersion: null })).rejects.toBeInstanceOf(ConflictError);
      const v2 = await fx.store.put('auths/a.json', enc('{"a":2}'), { ifVersion: v1.version });
      await expect(fx.store.put('auths/a.json', enc('{"a":3}'), { ifVersion: v1.version })).rejects.toBeInstanceOf(ConflictError);
      await expect(fx.store.put('auths/new.json', enc('{"a":3}'), { ifVersion: v1.version })).rejects.toBeInstanceOf(ConflictError);
      const got = await fx.store.get('auths/a.json');
      expect(JSON.parse(text(got!.data))).toEqual({ a: 2 });
      expect(got!.version).toBe(v2.version);
    });

    it('lets exactly one of two concurrent conditional writers win', async () => {
      const v1 = await fx.store.put('auths/race.json', enc('{"n":0}'));
      const other = await second();
      const results = await Promise.allSettled([
        fx.store.put('auths/race.json', enc('{"n":1}'), { ifVersion: v1.version }),
        other.put('auths/race.json', enc('{"n":2}'), { ifVersion: v1.version }),
      ]);
      const ok = results.filter((r) => r.status === 'fulfilled');
      const failed = results.filter((r) => r.status === 'rejected');
      expect(ok).toHaveLength(1);
      expect((failed[0] as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
      const got = JSON.parse(text((await fx.store.get('auths/race.json'))!.data));
      expect([1, 2]).toContain(got.n);
    });

    it('deletes idempotently and conditionally', async () => {
      const v1 = await fx.store.put('auths/a.json', enc('{"a":1}'));
      await fx.store.put('auths/a.json', enc('{"a":2}'));
      await expect(fx.store.delete('auths/a.json', { ifVersion: v1.version })).rejects.toBeInstanceOf(ConflictError);
      expect(await fx.store.get('auths/a.json')).not.toBeNull();
      await fx.store.delete('auths/a.json');
      expect(await fx.store.get('auths/a.json')).toBeNull();
      await fx.store.delete('auths/a.json');
      await fx.store.delete('auths/never.json', { ifVersion: 'whatever' });
    });

    it('rejects invalid keys before touching anything', async () => {
      for (const bad of ['../x.json', 'auths/../../etc/passwd.json', '/abs.json', 'auths/a\\b.json', 'auths/x.txt', 'auths/a\u0000.json', 'auths//x.json', 'other/x.json']) {
        await expect(fx.store.put(bad, enc('{}'))).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(fx.store.get(bad)).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(fx.store.delete(bad)).rejects.toBeInstanceOf(InvalidKeyError);
      }
      expect((await fx.store.list()).entries).toEqual([]);
    });

    it('skips and reports an item whose id is not a valid key', async (ctx) => {
      if (!fx.plantBadId) ctx.skip();
      await fx.store.put('auths/good.json', enc('{"ok":true}'));
      await fx.plantBadId!('../escape.json');
      const listing = await fx.store.list();
      expect(listing.entries.map((e) => e.key)).toEqual(['auths/good.json']);
      expect(listing.skipped.map((s) => s.id).join(' ')).toContain('escape.json');
    });

    it('announces changes made by a second client to a watcher', async (ctx) => {
      if (!fx.store.watch) ctx.skip();
      const seen: Change[] = [];
      let ready = 0;
      const stop = await fx.store.watch!((c) => seen.push(c), { onReady: () => ready++ });
      try {
        await waitFor('watch ready', () => ready > 0, opts.watchTimeoutMs ?? 5000);
        const other = await second();
        await other.put('auths/w.json', enc('{"w":1}'));
        await waitFor('put event', () => seen.some((c) => c.key === 'auths/w.json' && c.op === 'put'), opts.watchTimeoutMs ?? 5000);
        await other.delete('auths/w.json');
        await waitFor('delete event', () => seen.some((c) => c.key === 'auths/w.json' && c.op === 'delete'), opts.watchTimeoutMs ?? 5000);
        expect(JSON.stringify(seen)).not.toContain('"w":1');
      } finally {
        await stop();
      }
    });

    it('re-subscribes after its connection is killed and calls onReady again', async (ctx) => {
      if (!fx.store.watch || !fx.killWatchConnection) ctx.skip();
      const seen: Change[] = [];
      let ready = 0;
      const stop = await fx.store.watch!((c) => seen.push(c), { onReady: () => ready++ });
      try {
        await waitFor('first ready', () => ready >= 1, opts.watchTimeoutMs ?? 5000);
        await fx.killWatchConnection!();
        await waitFor('ready after reconnect', () => ready >= 2, 15000);
        const other = await second();
        await other.put('auths/after.json', enc('{"x":1}'));
        await waitFor('event after reconnect', () => seen.some((c) => c.key === 'auths/after.json'), opts.watchTimeoutMs ?? 5000);
      } finally {
        await stop();
      }
    });

    it('getMany returns what get returns, leaving out missing keys', async (ctx) => {
      if (!fx.store.getMany) ctx.skip();
      await fx.store.put('auths/a.json', enc('{"a":1}'));
      await fx.store.put('auths/t/b.json', enc('{"b":2}'));
      await fx.store.put('config/config.yaml', enc('p: 1\n'));
      const many = await fx.store.getMany!(['auths/a.json', 'auths/t/b.json', 'config/config.yaml', 'auths/missing.json']);
      const byKey = new Map(many.map((i) => [i.key, i]));
      expect([...byKey.keys()].sort()).toEqual(['auths/a.json', 'auths/t/b.json', 'config/config.yaml']);
      for (const k of byKey.keys()) {
        const one = await fx.store.get(k);
        expect(byKey.get(k)!.version).toBe(one!.version);
        expect(text(byKey.get(k)!.data)).toBe(text(one!.data));
      }
      await expect(fx.store.getMany!(['../x.json'])).rejects.toBeInstanceOf(InvalidKeyError);
    });

    it('init is idempotent and keeps existing items', async () => {
      await fx.store.put('auths/keep.json', enc('{"k":1}'));
      await fx.store.init();
      await fx.store.init();
      expect(await fx.store.get('auths/keep.json')).not.toBeNull();
    });
  });
}
