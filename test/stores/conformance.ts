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
  /** How long a change may take to reach a second client's watcher (default: from the capabilities). */
  watchTimeoutMs?: number;
}

/** Concurrent writers in the compare-and-swap race tests. */
const RACERS = 6;

const enc = (s: string): Uint8Array => Buffer.from(s, 'utf8');
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

/**
 * The shared suite, organised by capability: every store runs the contract tests; the race test for
 * enforced compare-and-swap runs only on stores that claim it (and under real concurrency, from
 * separate clients); a store that only checks documents its race instead; the watch tests run for
 * push and poll stores with a deadline that follows from the capability.
 */
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

    it('declares its capabilities', () => {
      expect(['enforced', 'checked']).toContain(fx.store.capabilities.cas);
      expect(['push', 'poll', 'none']).toContain(fx.store.capabilities.watch);
      expect(Boolean(fx.store.watch)).toBe(fx.store.capabilities.watch !== 'none');
      if (fx.store.capabilities.watch === 'poll') expect(fx.store.capabilities.pollIntervalMs).toBeGreaterThan(0);
    });

    const race = async (key: string): Promise<{ winners: number[]; final: number; conflicts: number }> => {
      const v1 = await fx.store.put(key, enc('{"n":0}'));
      const clients = [fx.store, ...(await Promise.all(Array.from({ length: RACERS - 1 }, () => second())))];
      const results = await Promise.allSettled(clients.map((c, i) => c.put(key, enc(`{"n":${i + 1}}`), { ifVersion: v1.version })));
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i + 1] : []));
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
      const final = (JSON.parse(text((await fx.store.get(key))!.data)) as { n: number }).n;
      return { winners, final, conflicts: results.length - winners.length };
    };

    it('cas enforced: exactly one of several concurrent conditional writers wins', async (ctx) => {
      if (fx.store.capabilities.cas !== 'enforced') ctx.skip();
      const { winners, final } = await race('auths/race.json');
      expect(winners).toHaveLength(1);
      expect(final).toBe(winners[0]);
    });

    it('cas checked: concurrent writers leave one whole winner; the race is documented, not hidden', async (ctx) => {
      if (fx.store.capabilities.cas !== 'checked') ctx.skip();
      const { winners, final } = await race('auths/race.json');
      // Check-then-write cannot stop writers that all read before any wrote: several may "win",
      // but the object is always one writer's whole content, and a stale write after the fact fails.
      expect(winners.length).toBeGreaterThanOrEqual(1);
      expect(winners).toContain(final);
      const stale = await fx.store.put('auths/race.json', enc('{"n":99}'), { ifVersion: (await fx.store.put('auths/race.json', enc('{"n":100}'))).version + 'x' }).catch((e: unknown) => e);
      expect(stale).toBeInstanceOf(ConflictError);
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

    const watchTimeout = (): number =>
      opts.watchTimeoutMs ?? (fx.store.capabilities.watch === 'poll' ? 3 * (fx.store.capabilities.pollIntervalMs ?? 1000) + 3000 : 5000);

    it('announces changes made by a second client to a watcher', async (ctx) => {
      if (!fx.store.watch) ctx.skip();
      const seen: Change[] = [];
      let ready = 0;
      const stop = await fx.store.watch!((c) => seen.push(c), { onReady: () => ready++ });
      try {
        await waitFor('watch ready', () => ready > 0, watchTimeout());
        const other = await second();
        await other.put('auths/w.json', enc('{"w":1}'));
        await waitFor('put event', () => seen.some((c) => c.key === 'auths/w.json' && c.op === 'put'), watchTimeout());
        await other.delete('auths/w.json');
        await waitFor('delete event', () => seen.some((c) => c.key === 'auths/w.json' && c.op === 'delete'), watchTimeout());
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
        await waitFor('first ready', () => ready >= 1, watchTimeout());
        await fx.killWatchConnection!();
        await waitFor('ready after reconnect', () => ready >= 2, 15000);
        const other = await second();
        await other.put('auths/after.json', enc('{"x":1}'));
        await waitFor('event after reconnect', () => seen.some((c) => c.key === 'auths/after.json'), watchTimeout());
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
