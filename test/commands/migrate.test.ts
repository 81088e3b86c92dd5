import { describe, it, expect, afterEach } from 'vitest';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runMigrate } from '../../src/commands/migrate.js';
import { GuardError, ConfigError } from '../../src/core/errors.js';
import { parseDeleteLimit } from '../../src/engine/guard.js';
import { STORE_KINDS, captureIo, deps, listing, readItem, sampleItems, seed, snapshot, type StoreFixture } from './fixtures.js';
import { fixtureScope } from './fixtures.js';
import { tempDir } from '../support/tmp.js';

const { fresh, work } = fixtureScope('credsync-migrate-');

interface MigrateJson {
  exitCode: number;
  counts: Record<string, number>;
  items: { created: string[]; updated: string[]; deleted: string[]; kept: Array<{ key: string }>; invalid: Array<{ key: string; reason: string }>; conflicts: unknown[] };
}

const migrate = async (o: Partial<Parameters<typeof runMigrate>[0]> & { from?: string; to?: string }): Promise<{ code: number; json: MigrateJson }> => {
  const io = captureIo();
  const code = await runMigrate({ mode: 'fill-missing', dryRun: false, json: true, ...o }, deps(io));
  return { code, json: io.json<MigrateJson>() };
};

for (const a of STORE_KINDS) {
  for (const b of STORE_KINDS) {
    describe(`migrate ${a.name} → ${b.name} → ${a.name}`, () => {
      it('ends identical by canonical hash, each step verified', async (ctx) => {
        const why = a.skip() ?? b.skip();
        if (why) ctx.skip(why);
        const start = await fresh(a);
        const mid = await fresh(b);
        const end = await fresh(a);
        const items = sampleItems(60);
        await seed(start, items);
        const one = await migrate({ from: start, to: mid });
        expect(one.code).toBe(0);
        expect(one.json.counts).toMatchObject({ created: 61, verified: 61, mismatched: 0, failed: 0 });
        const two = await migrate({ from: mid, to: end });
        expect(two.code).toBe(0);
        expect(two.json.counts).toMatchObject({ created: 61, verified: 61 });
        const before = await snapshot(start);
        expect(Object.keys(before)).toHaveLength(61);
        expect(Object.values(before).every((h) => typeof h === 'string')).toBe(true);
        expect(await snapshot(end)).toEqual(before);
        // Running it again changes nothing.
        const again = await migrate({ from: mid, to: end });
        expect(again.json.counts).toMatchObject({ created: 0, updated: 0, unchanged: 61, verified: 61 });
      });
    });
  }
}

describe(`migrate through every store kind (${[...STORE_KINDS.map((k) => k.name), STORE_KINDS[0]!.name].join(' → ')})`, () => {
  it('1,000 credentials end identical by canonical hash, each step verified', async (ctx) => {
    const kinds = STORE_KINDS.filter((k) => !k.skip());
    if (kinds.length < 2) ctx.skip('fewer than two store kinds available');
    const start = await fresh(kinds[0]!);
    await seed(start, sampleItems(1000));
    const want = await snapshot(start);
    let from = start;
    for (const kind of [...kinds.slice(1), kinds[0]!]) {
      const to = await fresh(kind);
      const r = await migrate({ from, to });
      expect(r.code, `${from} → ${to}`).toBe(0);
      expect(r.json.counts).toMatchObject({ created: 1001, verified: 1001, mismatched: 0 });
      from = to;
    }
    expect(await snapshot(from)).toEqual(want);
  }, 120_000);
});

for (const kind of STORE_KINDS) {
  describe(`migrate modes onto ${kind.name}`, () => {
    const setup = async (ctx: { skip(why: string): void }): Promise<{ src: string; dst: string }> => {
      const why = kind.skip();
      if (why) ctx.skip(why);
      const src = await fresh(STORE_KINDS[0]!);
      const dst = await fresh(kind);
      await seed(src, { 'auths/a.json': '{"v":"src-a"}', 'auths/b.json': '{"v":"src-b"}', 'config/config.yaml': 'port: 1\n' });
      await seed(dst, { 'auths/a.json': '{"v":"dst-a"}', 'auths/extra.json': '{"v":"extra"}', 'auths/extra2.json': '{"v":"extra2"}' });
      return { src, dst };
    };

    it('fill-missing never overwrites', async (ctx) => {
      const { src, dst } = await setup(ctx);
      const r = await migrate({ from: src, to: dst });
      expect(r.code).toBe(0);
      expect(r.json.items.created.sort()).toEqual(['auths/b.json', 'config/config.yaml']);
      expect(r.json.items.kept.map((k) => k.key)).toEqual(['auths/a.json']);
      expect(JSON.parse((await readItem(dst, 'auths/a.json'))!)).toEqual({ v: 'dst-a' });
      expect(await readItem(dst, 'auths/extra.json')).not.toBeNull();
    });

    it('overwrite replaces differing items and deletes nothing', async (ctx) => {
      const { src, dst } = await setup(ctx);
      const r = await migrate({ from: src, to: dst, mode: 'overwrite' });
      expect(r.code).toBe(0);
      expect(r.json.items.updated).toEqual(['auths/a.json']);
      expect(JSON.parse((await readItem(dst, 'auths/a.json'))!)).toEqual({ v: 'src-a' });
      expect(await readItem(dst, 'auths/extra.json')).not.toBeNull();
    });

    it('mirror deletes extra items within the delete guard, and refuses beyond it with nothing written', async (ctx) => {
      const { src, dst } = await setup(ctx);
      const before = await listing(dst);
      // 2 of 3 target items would go: over 50%.
      await expect(migrate({ from: src, to: dst, mode: 'mirror' })).rejects.toBeInstanceOf(GuardError);
      expect(await listing(dst)).toEqual(before);
      const r = await migrate({ from: src, to: dst, mode: 'mirror', maxDelete: parseDeleteLimit('2') });
      expect(r.code).toBe(0);
      expect(r.json.items.deleted).toEqual(['auths/extra.json', 'auths/extra2.json']);
      expect(Object.keys(await snapshot(dst))).toEqual(['auths/a.json', 'auths/b.json', 'config/config.yaml']);
      expect(await snapshot(dst)).toEqual(await snapshot(src));
    });

    it('--dry-run prints the plan per key and writes nothing', async (ctx) => {
      const { src, dst } = await setup(ctx);
      const before = await listing(dst);
      const srcBefore = await listing(src);
      const io = captureIo();
      const code = await runMigrate({ from: src, to: dst, mode: 'mirror', maxDelete: parseDeleteLimit('100%'), dryRun: true, json: false }, deps(io));
      expect(code).toBe(0);
      const text = io.stdout.join('\n');
      expect(text).toContain('would create auths/b.json');
      expect(text).toContain('would update auths/a.json');
      expect(text).toContain('would delete auths/extra.json');
      expect(await listing(dst)).toEqual(before);
      expect(await listing(src)).toEqual(srcBefore);
    });
  });
}

describe('migrate sources', () => {
  it('reports invalid source items and does not copy them', async () => {
    const src = await fresh(STORE_KINDS[0]!);
    const dst = await fresh(STORE_KINDS[0]!);
    await seed(src, { 'auths/good.json': '{"ok":true}' });
    const root = fileURLToPath(src);
    await writeFile(join(root, 'auths', 'broken.json'), '{"half": ');
    const r = await migrate({ from: src, to: dst });
    expect(r.code).toBe(0);
    expect(r.json.items.invalid).toEqual([{ key: 'auths/broken.json', reason: expect.stringMatching(/not valid JSON/) }]);
    expect(Object.keys(await snapshot(dst))).toEqual(['auths/good.json']);
  });

  it('imports a plain CLIProxyAPI file deployment (flat auth dir + config.yaml)', async () => {
    const d = { path: await work() };
    const auth = join(d.path, 'auths');
    await mkdir(auth);
    await writeFile(join(auth, 'claude-a@b.com.json'), '{"type":"claude","email":"a@b.com"}');
    await writeFile(join(auth, 'gemini-x.json'), '{"type":"gemini"}');
    await writeFile(join(auth, 'notes.txt'), 'ignored');
    await writeFile(join(d.path, 'outside.json'), '{"secret":1}');
    await symlink(join(d.path, 'outside.json'), join(auth, 'link.json'));
    await writeFile(join(d.path, 'config.yaml'), 'port: 8317\n');
    for (const kind of STORE_KINDS) {
      if (kind.skip()) continue;
      const dst = await fresh(kind);
      const r = await migrate({ fromCliproxyDir: auth, fromCliproxyConfig: join(d.path, 'config.yaml'), to: dst });
      expect(r.code).toBe(0);
      expect(r.json.counts).toMatchObject({ created: 3, skipped: 1, verified: 3 });
      expect(Object.keys(await snapshot(dst))).toEqual(['auths/claude-a@b.com.json', 'auths/gemini-x.json', 'config/config.yaml']);
    }
  });

  it('refuses the same store on both sides and a missing cliproxy dir (usage errors)', async () => {
    const src = await fresh(STORE_KINDS[0]!);
    await expect(migrate({ from: src, to: src })).rejects.toBeInstanceOf(ConfigError);
    await expect(migrate({ fromCliproxyDir: '/nonexistent/credsync-test', to: src })).rejects.toBeInstanceOf(ConfigError);
  });
});
