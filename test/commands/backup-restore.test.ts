import { describe, it, expect, afterEach } from 'vitest';
import { createWriteStream } from 'node:fs';
import { readFile, stat, writeFile, readdir } from 'node:fs/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { Header } from 'tar';
import { runBackup } from '../../src/commands/backup.js';
import { runRestore } from '../../src/commands/restore.js';
import { archiveMembers, TarWriter, type Manifest } from '../../src/commands/archive.js';
import { GuardError, VerificationError } from '../../src/core/errors.js';
import { sha256 } from '../../src/core/canonical.js';
import { STORE_KINDS, captureIo, deps, listing, sampleItems, seed, snapshot, type StoreFixture } from './fixtures.js';
import { fixtureScope } from './fixtures.js';
import { tempDir } from '../support/tmp.js';

const { fresh, work: workDir } = fixtureScope('credsync-archive-');

async function backup(from: string, out: string): Promise<Record<string, unknown>> {
  const io = captureIo();
  expect(await runBackup({ from, out, json: true }, deps(io))).toBe(0);
  return io.json();
}

type RestoreOpts = Partial<Parameters<typeof runRestore>[0]>;
async function restore(inPath: string, to: string, o: RestoreOpts = {}): Promise<{ code: number; json: Record<string, unknown> & { counts: Record<string, number> } }> {
  const io = captureIo();
  const code = await runRestore({ in: inPath, to, mode: 'fill-missing', dryRun: false, force: false, json: true, ...o }, deps(io));
  return { code, json: io.json() };
}

for (const a of STORE_KINDS) {
  for (const b of STORE_KINDS) {
    it(`backup of ${a.name} restores into an empty ${b.name} store, identical by canonical hash`, async (ctx) => {
      const why = a.skip() ?? b.skip();
      if (why) ctx.skip(why);
      const src = await fresh(a);
      const dst = await fresh(b);
      await seed(src, sampleItems(40));
      const dir = await workDir();
      const out = join(dir, 'backup.tar.gz');
      const res = await backup(src, out);
      expect(res).toMatchObject({ command: 'backup', counts: { archived: 41, invalid: 0 } });
      expect((await stat(out)).mode & 0o777).toBe(0o600);
      expect((await readdir(dir)).sort()).toEqual(['backup.tar.gz']); // no temp file left behind
      // The manifest is the first member and describes every item.
      let first: Manifest | undefined;
      let n = 0;
      for await (const m of archiveMembers(out)) {
        if (n++ === 0) first = JSON.parse(m.data!.toString('utf8')) as Manifest;
      }
      expect(n).toBe(42);
      expect(first).toMatchObject({ format: 1, store: { kind: a.name } });
      expect(first!.items).toHaveLength(41);
      expect(first!.items[0]).toEqual({ key: expect.any(String), size: expect.any(Number), sha256: expect.stringMatching(/^[0-9a-f]{64}$/), version: expect.any(String) });
      const r = await restore(out, dst);
      expect(r.code).toBe(0);
      expect(r.json.counts).toMatchObject({ created: 41, verified: 41, mismatched: 0 });
      expect(await snapshot(dst)).toEqual(await snapshot(src));
    });
  }
}

/** Rewrites the archive's uncompressed tar with `edit` and gzips it again. */
async function editTar(path: string, out: string, edit: (tar: Buffer) => Buffer): Promise<void> {
  await writeFile(out, gzipSync(edit(gunzipSync(await readFile(path)))));
}

/** Writes an archive from raw members (manifest first), for hostile-archive tests. */
async function craft(out: string, members: Array<{ name: string; data?: string; type?: string; linkpath?: string }>, manifestItems: Array<{ key: string; data: string }>): Promise<void> {
  const sink = createWriteStream(out);
  const w = new TarWriter(sink);
  const manifest = { format: 1, credsyncVersion: 'test', store: { kind: 'dir', id: 'x' }, createdAt: new Date().toISOString(), items: manifestItems.map((i) => ({ key: i.key, size: Buffer.byteLength(i.data), sha256: sha256(Buffer.from(i.data)) })) };
  await w.member('manifest.json', Buffer.from(JSON.stringify(manifest)));
  for (const m of members) {
    if (m.type) {
      const h = new Header({ path: m.name, mode: 0o777, size: 0, mtime: new Date(0), type: m.type as 'SymbolicLink', linkpath: m.linkpath ?? '/etc/passwd', uid: 0, gid: 0 });
      const block = Buffer.alloc(512);
      h.encode(block, 0);
      await (w as unknown as { write(b: Buffer): Promise<void> })['write'](block);
      continue;
    }
    await w.member(m.name, Buffer.from(m.data ?? ''));
  }
  const done = new Promise<void>((resolve) => sink.on('finish', () => resolve()));
  await w.end();
  await done;
}

describe.each(STORE_KINDS.map((k) => [k.name, k] as const))('restore refuses a tampered archive and writes nothing (%s)', (_name, kind) => {
  const prepare = async (ctx: { skip(why: string): void }): Promise<{ dir: string; good: string; dst: string }> => {
    const why = kind.skip();
    if (why) ctx.skip(why);
    const src = await fresh(STORE_KINDS[0]!);
    await seed(src, { 'auths/a.json': '{"refresh_token":"rt-aaaaaaaa"}', 'auths/b.json': '{"x":2}', 'config/config.yaml': 'port: 1\n' });
    const dir = await workDir();
    const good = join(dir, 'good.tar.gz');
    await backup(src, good);
    const dst = await fresh(kind);
    await seed(dst, { 'auths/existing.json': '{"keep":true}' });
    return { dir, good, dst };
  };
  const refused = async (path: string, dst: string, pattern: RegExp): Promise<void> => {
    const before = await listing(dst);
    const io = captureIo();
    const err = await runRestore({ in: path, to: dst, mode: 'overwrite', dryRun: false, force: true, json: true }, deps(io)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VerificationError);
    const json = io.json<{ verified: boolean; problems: string[] }>();
    expect(json.verified).toBe(false);
    expect(json.problems.join('\n')).toMatch(pattern);
    expect(await listing(dst)).toEqual(before);
  };

  it('one byte flipped in an item', async (ctx) => {
    const { dir, good, dst } = await prepare(ctx);
    const bad = join(dir, 'flip.tar.gz');
    await editTar(good, bad, (tar) => {
      const at = tar.indexOf('rt-aaaaaaaa');
      expect(at).toBeGreaterThan(0);
      tar[at + 3] = 'b'.charCodeAt(0);
      return tar;
    });
    await refused(bad, dst, /SHA-256 differs/);
  });

  it('one byte flipped in the compressed file', async (ctx) => {
    const { dir, good, dst } = await prepare(ctx);
    const bytes = await readFile(good);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    const bad = join(dir, 'gz.tar.gz');
    await writeFile(bad, bytes);
    await refused(bad, dst, /unreadable|SHA-256|not in the manifest|bytes/);
  });

  it('a member renamed to ../x', async (ctx) => {
    const { dir, dst } = await prepare(ctx);
    const bad = join(dir, 'dotdot.tar.gz');
    await craft(bad, [{ name: '../x', data: '{"a":1}' }], [{ key: 'auths/a.json', data: '{"a":1}' }]);
    await refused(bad, dst, /"\.\.\/x" has a "\.\." segment/);
  });

  it('an absolute member name', async (ctx) => {
    const { dir, dst } = await prepare(ctx);
    const bad = join(dir, 'abs.tar.gz');
    await craft(bad, [{ name: '/etc/x.json', data: '{"a":1}' }], []);
    await refused(bad, dst, /absolute/);
  });

  it('a symlink member', async (ctx) => {
    const { dir, dst } = await prepare(ctx);
    const bad = join(dir, 'link.tar.gz');
    await craft(bad, [{ name: 'auths/l.json', type: 'SymbolicLink' }], []);
    await refused(bad, dst, /SymbolicLink member/);
  });

  it('a truncated file', async (ctx) => {
    const { dir, good, dst } = await prepare(ctx);
    const bytes = await readFile(good);
    const bad = join(dir, 'cut.tar.gz');
    await writeFile(bad, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await refused(bad, dst, /unreadable|truncated|not in the archive/);
  });

  it('a truncated tar inside an intact gzip (a member missing)', async (ctx) => {
    const { dir, good, dst } = await prepare(ctx);
    const bad = join(dir, 'short.tar.gz');
    await editTar(good, bad, (tar) => tar.subarray(0, 512 * 4)); // manifest + first item only
    await refused(bad, dst, /not in the archive|unreadable/);
  });

  it('invalid content whose hash matches the manifest', async (ctx) => {
    const { dir, dst } = await prepare(ctx);
    const bad = join(dir, 'invalid.tar.gz');
    await craft(bad, [{ name: 'auths/a.json', data: '[1,2]' }], [{ key: 'auths/a.json', data: '[1,2]' }]);
    await refused(bad, dst, /not a JSON object/);
  });

  it('an unknown format version', async (ctx) => {
    const { dir, good, dst } = await prepare(ctx);
    const bad = join(dir, 'format.tar.gz');
    await editTar(good, bad, (tar) => {
      const at = tar.indexOf('"format": 1');
      expect(at).toBeGreaterThan(0);
      tar.write('"format": 9', at);
      return tar;
    });
    await refused(bad, dst, /unknown format 9/);
  });
});

for (const kind of STORE_KINDS) {
  describe(`restore modes onto ${kind.name}`, () => {
    it('--dry-run verifies and writes nothing; --mode mirror needs --force on a non-empty target', async (ctx) => {
      const why = kind.skip();
      if (why) ctx.skip(why);
      const src = await fresh(STORE_KINDS[0]!);
      await seed(src, { 'auths/a.json': '{"v":1}', 'auths/b.json': '{"v":2}' });
      const out = join(await workDir(), 'b.tar.gz');
      await backup(src, out);
      const dst = await fresh(kind);
      await seed(dst, { 'auths/a.json': '{"v":"old"}', 'auths/c.json': '{"v":3}' });
      const before = await listing(dst);
      const dry = await restore(out, dst, { mode: 'overwrite', dryRun: true });
      expect(dry.code).toBe(0);
      expect(dry.json.counts).toMatchObject({ created: 1, updated: 1 });
      expect(await listing(dst)).toEqual(before);
      await expect(restore(out, dst, { mode: 'mirror' })).rejects.toBeInstanceOf(GuardError);
      expect(await listing(dst)).toEqual(before);
      const r = await restore(out, dst, { mode: 'mirror', force: true, maxDelete: { percent: 100 } });
      expect(r.code).toBe(0);
      expect(r.json.counts).toMatchObject({ created: 1, updated: 1, deleted: 1, mismatched: 0 });
      expect(await snapshot(dst)).toEqual(await snapshot(src));
    });
  });
}
