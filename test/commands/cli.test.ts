/**
 * The operator commands through the built CLI (dist/cli.js; `npx tsc -p tsconfig.build.json` first):
 * exit codes, --json on stdout only, --help with an example and the exit codes, archives piped
 * through stdout/stdin, no stack trace for a user error.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { spawn } from 'node:child_process';
import { gunzipSync, gzipSync } from 'node:zlib';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, assertBuilt, cleanEnv, processGroup, NEUTRAL_CWD } from '../support/daemon.js';
import { STORE_KINDS, listing, sampleItems, seed, snapshot, type StoreFixture } from './fixtures.js';
import { fixtureScope } from './fixtures.js';
import { tempDir } from '../support/tmp.js';

const procs = processGroup('each');
const { fresh, work } = fixtureScope('credsync-cli-ops-');
// S3 store URLs carry no keys: the CLI reads them from OBJECTSTORE_*, as an operator's shell would hold them.
const s3Keys = (): Record<string, string | undefined> => ({ OBJECTSTORE_ACCESS_KEY: process.env.OBJECTSTORE_ACCESS_KEY, OBJECTSTORE_SECRET_KEY: process.env.OBJECTSTORE_SECRET_KEY });
const cli = (args: string[]) => procs.cli(args, { cwd: NEUTRAL_CWD, timeoutMs: 60_000, env: s3Keys() });

describe('operator commands: help and usage', () => {
  it.each(['migrate', 'backup', 'restore', 'prune', 'doctor'])('%s --help shows an example and the exit codes', async (cmd) => {
    const r = await cli([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Example:');
    expect(r.stdout).toContain(`credsync ${cmd}`);
    expect(r.stdout).toMatch(/Exit codes:[\s\S]*3 {2}verification failure[\s\S]*4 {2}refused by a guard/);
  });

  it('usage errors exit 2 without a stack trace', async () => {
    for (const args of [['migrate'], ['prune'], ['migrate', '--from', 'ftp://x', '--to', 'file:///tmp/x'], ['restore']]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
  });
});

for (const kind of STORE_KINDS) {
  describe(`operator commands through the CLI on ${kind.name}`, () => {
    it('migrate --dry-run --json writes nothing; migrate --json then verifies every item', async (ctx) => {
      const why = kind.skip();
      if (why) ctx.skip(why);
      const src = await fresh(STORE_KINDS[0]!);
      const dst = await fresh(kind);
      await seed(src, sampleItems(20));
      const before = await listing(dst);
      const dry = await cli(['migrate', '--from', src, '--to', dst, '--dry-run', '--json']);
      expect(dry.code).toBe(0);
      const plan = JSON.parse(dry.stdout) as { dryRun: boolean; counts: { created: number } };
      expect(plan).toMatchObject({ dryRun: true, counts: { created: 21 } });
      expect(await listing(dst)).toEqual(before);
      const real = await cli(['migrate', '--from', src, '--to', dst, '--json']);
      expect(real.code).toBe(0);
      expect(JSON.parse(real.stdout)).toMatchObject({ command: 'migrate', exitCode: 0, counts: { created: 21, verified: 21, mismatched: 0 } });
      expect(await snapshot(dst)).toEqual(await snapshot(src));
      // The delete guard: mirroring an empty source onto it is refused with exit 4.
      const empty = await fresh(STORE_KINDS[0]!);
      const refused = await cli(['migrate', '--from', empty, '--to', dst, '--mode', 'mirror', '--json']);
      expect(refused.code).toBe(4);
      expect(refused.stderr).toMatch(/exceeds --max-delete/);
      expect(await snapshot(dst)).toEqual(await snapshot(src));
    });

    it('backup --out - piped into restore --in - reproduces every item; a flipped byte exits 3 and writes nothing', async (ctx) => {
      const why = kind.skip();
      if (why) ctx.skip(why);
      assertBuilt();
      const src = await fresh(STORE_KINDS[0]!);
      const dst = await fresh(kind);
      await seed(src, sampleItems(15));
      const dir = await work();
      const archive = join(dir, 'b.tar.gz');
      // A pipe through the shell: backup's stdout is restore's stdin.
      const pipe = spawn('bash', ['-c', `set -o pipefail; "${process.execPath}" "${CLI}" backup --from "$SRC" --out - | tee "$ARCHIVE" | "${process.execPath}" "${CLI}" restore --in - --to "$DST" --json`], {
        cwd: NEUTRAL_CWD,
        env: { ...cleanEnv(s3Keys()), SRC: src, DST: dst, ARCHIVE: archive },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      procs.children.add(pipe);
      let out = '';
      let err = '';
      pipe.stdout.on('data', (c: Buffer) => (out += c.toString()));
      pipe.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const code = await new Promise<number | null>((resolve) => pipe.on('exit', (c) => resolve(c)));
      expect(code, err).toBe(0);
      expect(JSON.parse(out)).toMatchObject({ command: 'restore', verified: true, counts: { created: 16, verified: 16 } });
      expect(await snapshot(dst)).toEqual(await snapshot(src));

      const other = await fresh(kind);
      const tar = gunzipSync(await readFile(archive));
      const at = tar.indexOf('refresh_token');
      tar[at + 20] ^= 0x01;
      const bad = join(dir, 'bad.tar.gz');
      await writeFile(bad, gzipSync(tar));
      const r = await cli(['restore', '--in', bad, '--to', other, '--json']);
      expect(r.code).toBe(3);
      expect(JSON.parse(r.stdout)).toMatchObject({ verified: false, problems: [expect.stringMatching(/SHA-256 differs/)] });
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(await listing(other)).toEqual([]);
    });

    it('prune and doctor print one JSON object', async (ctx) => {
      const why = kind.skip();
      if (why) ctx.skip(why);
      const url = await fresh(kind);
      await seed(url, { 'auths/dead.json': '{"expired":"2001-01-01T00:00:00Z"}', 'auths/ok.json': '{"refresh_token":"r","expired":"2001-01-01T00:00:00Z"}' });
      const p = await cli(['prune', '--expired', '--store', url, '--json']);
      expect(p.code).toBe(0);
      expect(JSON.parse(p.stdout)).toMatchObject({ dryRun: true, items: { candidates: [{ key: 'auths/dead.json' }] } });
      const d = await cli(['doctor', '--store', url, '--local-dir', join(await work(), 'mirror'), '--json']);
      expect(d.code, d.stdout).toBe(0);
      expect(JSON.parse(d.stdout)).toMatchObject({ command: 'doctor', counts: { fail: 0 } });
    });
  });
}
