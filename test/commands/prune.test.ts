import { describe, it, expect, afterEach } from 'vitest';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runPrune, type PruneOptions } from '../../src/commands/prune.js';
import { GuardError } from '../../src/core/errors.js';
import { STORE_KINDS, captureIo, deps, listing, seed, snapshot, type StoreFixture } from './fixtures.js';
import { tempDir } from '../support/tmp.js';

const fixtures: StoreFixture[] = [];
afterEach(async () => {
  for (const f of fixtures.splice(0)) await f.cleanup();
});

const DAY = 86_400_000;
const iso = (ms: number): string => new Date(ms).toISOString();
const now = Date.now();

/** Candidates are `dead-*` (expired long ago, no refresh token) and, with --disabled, `off.json`. */
const ITEMS = {
  'config/config.yaml': 'port: 1\n',
  'auths/dead-1.json': JSON.stringify({ type: 'claude', expired: iso(now - 10 * DAY) }),
  'auths/dead-2.json': JSON.stringify({ type: 'codex', expires_at: Math.floor((now - 9 * DAY) / 1000) }),
  'auths/recent.json': JSON.stringify({ type: 'claude', expired: iso(now - 1 * DAY) }),
  'auths/refreshable.json': JSON.stringify({ type: 'claude', expired: iso(now - 30 * DAY), refresh_token: 'rt' }),
  'auths/alive.json': JSON.stringify({ type: 'claude', expired: iso(now + 5 * DAY) }),
  'auths/off.json': JSON.stringify({ type: 'gemini', disabled: true }),
  'auths/no-expiry.json': JSON.stringify({ type: 'gemini' }),
};

interface PruneJson {
  dryRun: boolean;
  counts: Record<string, number>;
  items: { candidates: Array<{ key: string }>; deleted: string[]; kept: Array<{ key: string; reason: string }>; conflictCopies: string[]; conflictsRemoved: string[] };
}

for (const kind of STORE_KINDS) {
  describe(`prune on ${kind.name}`, () => {
    const setup = async (ctx: { skip(why: string): void }): Promise<string> => {
      const why = kind.skip();
      if (why) ctx.skip(why);
      const f = await kind.make();
      fixtures.push(f);
      await seed(f.url, ITEMS);
      return f.url;
    };
    const prune = async (url: string, o: Partial<PruneOptions>): Promise<{ code: number; json: PruneJson }> => {
      const io = captureIo();
      const code = await runPrune({ store: url, expired: false, disabled: false, conflicts: false, olderThanMs: 7 * DAY, yes: false, json: true, maxDelete: { percent: 100 }, ...o }, deps(io));
      return { code, json: io.json<PruneJson>() };
    };

    it('without --yes lists the candidates and deletes nothing; with --yes deletes exactly those', async (ctx) => {
      const url = await setup(ctx);
      const before = await listing(url);
      const dry = await prune(url, { expired: true });
      expect(dry.code).toBe(0);
      expect(dry.json.dryRun).toBe(true);
      expect(dry.json.items.candidates.map((c) => c.key)).toEqual(['auths/dead-1.json', 'auths/dead-2.json']);
      expect(await listing(url)).toEqual(before);
      const real = await prune(url, { expired: true, disabled: true, yes: true });
      expect(real.code).toBe(0);
      expect(real.json.items.deleted).toEqual(['auths/dead-1.json', 'auths/dead-2.json', 'auths/off.json']);
      expect(Object.keys(await snapshot(url))).toEqual(['auths/alive.json', 'auths/no-expiry.json', 'auths/recent.json', 'auths/refreshable.json', 'config/config.yaml']);
    });

    it('keeps a credential refreshed between its listing and its deletion', async (ctx) => {
      const url = await setup(ctx);
      const r = await prune(url, {
        expired: true,
        yes: true,
        afterPlan: async () => {
          // The proxy refreshes dead-1 after prune judged it.
          await seed(url, { 'auths/dead-1.json': JSON.stringify({ type: 'claude', expired: iso(now + DAY), refresh_token: 'new' }) });
        },
      });
      expect(r.code).toBe(0);
      expect(r.json.items.deleted).toEqual(['auths/dead-2.json']);
      expect(r.json.items.kept).toEqual([{ key: 'auths/dead-1.json', reason: expect.stringMatching(/changed since it was listed/) }]);
      const left = await snapshot(url);
      expect(Object.keys(left)).toContain('auths/dead-1.json');
      expect(Object.keys(left)).not.toContain('auths/dead-2.json');
    });

    it('the delete guard refuses more than --max-delete, dry run or not, and deletes nothing', async (ctx) => {
      const url = await setup(ctx);
      const before = await listing(url);
      await expect(prune(url, { expired: true, disabled: true, yes: true, maxDelete: { count: 2 } })).rejects.toBeInstanceOf(GuardError);
      await expect(prune(url, { expired: true, olderThanMs: 0, maxDelete: { count: 1 } })).rejects.toBeInstanceOf(GuardError);
      expect(await listing(url)).toEqual(before);
    });
  });
}

describe('prune --conflicts', () => {
  it('removes conflict copies older than --older-than from the mirror, only with --yes', async () => {
    const d = await tempDir('credsync-prune-');
    fixtures.push({ url: '', cleanup: () => d.remove() });
    const dir = join(d.path, '.credsync', 'conflicts');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'old.local.auths__a.json'), '{}');
    await writeFile(join(dir, 'new.store.auths__b.json'), '{}');
    const old = new Date(now - 10 * DAY);
    await utimes(join(dir, 'old.local.auths__a.json'), old, old);
    const io = captureIo();
    const run = (yes: boolean): Promise<number> =>
      runPrune({ localDir: d.path, expired: false, disabled: false, conflicts: true, olderThanMs: 7 * DAY, yes, json: true }, deps(io));
    expect(await run(false)).toBe(0);
    expect(io.json<PruneJson>().items.conflictCopies).toEqual(['old.local.auths__a.json']);
    expect((await readdir(dir)).sort()).toEqual(['new.store.auths__b.json', 'old.local.auths__a.json']);
    io.stdout.length = 0;
    expect(await run(true)).toBe(0);
    expect(io.json<PruneJson>().items.conflictsRemoved).toEqual(['old.local.auths__a.json']);
    expect(await readdir(dir)).toEqual(['new.store.auths__b.json']);
  });
});
