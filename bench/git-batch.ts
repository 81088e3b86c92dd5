/**
 * Git store under a burst: 1,000 credentials rewritten at once in daemon A's mirror. What it adds to
 * the remote (commits, bytes as received and after `git gc`) and how long until every new content is
 * in daemon B's mirror. The remote starts as a CLIProxyAPI-style repository: one commit holding the
 * 1,000 credentials and the config.
 *
 * Floor, same server, same run: the least a Git history can record — the same 1,000 rewrites as ONE
 * commit pushed with raw `git` to an identical remote (bytes as received and after `git gc`).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from './lib/cleanup.js';
import { canonical, canonicalOfText, credId, fileText, makeCred, refreshed, SAMPLE_CONFIG, type Cred } from './lib/creds.js';
import { BurstTracker, countJson, proxyWrite } from './lib/fsx.js';
import { Daemon, waitFor } from './lib/daemon.js';
import { authedGit, commitCount, gitEnv, newBareRepo, objectBytes, obtainGitHttp, packedBytes, type GitHttpServer } from './lib/git.js';
import type { Bench, BenchContext, BenchOutcome } from './lib/report.js';
import { round } from './lib/stats.js';

const POLL_MS = 500;
const TIMEOUT_MS = 300_000;

/** A remote holding `creds` and the config in one commit (as CLIProxyAPI leaves it), made with raw git. */
async function seededRemote(server: GitHttpServer, prefix: string, ids: string[], creds: Cred[]): Promise<{ name: string; path: string; clone: string }> {
  const repo = await newBareRepo(server.root, prefix);
  const dir = await tempDir(`${prefix}-seed`);
  const g = authedGit(server);
  const clone = join(dir.path, 'w');
  await g(['clone', '-q', `${server.base}/${repo.name}.git`, clone], dir.path);
  await mkdir(join(clone, 'auths'), { recursive: true });
  await mkdir(join(clone, 'config'), { recursive: true });
  await writeFile(join(clone, 'auths', '.gitkeep'), '');
  await writeFile(join(clone, 'config', '.gitkeep'), '');
  await writeFile(join(clone, 'config', 'config.yaml'), SAMPLE_CONFIG);
  for (let i = 0; i < ids.length; i++) await writeFile(join(clone, 'auths', ids[i]!), fileText(creds[i]!));
  await g(['add', '-A'], clone);
  await g(['commit', '-q', '-m', 'Initialize git token store'], clone);
  await g(['push', '-q', 'origin', 'HEAD:refs/heads/main'], clone);
  return { ...repo, clone };
}

export const gitBatchBench: Bench = {
  name: 'git-batch',
  title: 'Git store: 1,000 credentials rewritten at once on A → commits and bytes added to the remote, time until all on B',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const n = ctx.quick ? 200 : Number(process.env.BENCH_GIT_BATCH_ITEMS ?? 1000);
    const server = await obtainGitHttp();
    const ids = Array.from({ length: n }, (_, i) => credId(i));
    const creds: Cred[] = Array.from({ length: n }, (_, i) => makeCred(i));
    const next = creds.map((c, i) => refreshed(c, i));
    const texts = next.map(fileText);

    // ---- credsync
    const repo = await seededRemote(server, 'bench-batch', ids, creds);
    const dirA = await tempDir('gitbatch-a');
    const dirB = await tempDir('gitbatch-b');
    ctx.log(`  starting daemons A and B (remote of ${n}, poll ${POLL_MS} ms)`);
    const [a, b] = await Promise.all([Daemon.start('A', { ...gitEnv(server, repo.name, dirA.path, POLL_MS), CREDSYNC_LOG_LEVEL: 'debug' }), Daemon.start('B', gitEnv(server, repo.name, dirB.path, POLL_MS))]);
    const authsA = join(dirA.path, 'auths');
    const authsB = join(dirB.path, 'auths');
    await waitFor('both mirrors complete', async () => (await countJson(authsA)) === n && (await countJson(authsB)) === n, 120_000, 100);
    await Promise.all([a.quiet(1000, 60_000), b.quiet(1000, 60_000)]);
    const commits0 = await commitCount(repo.path);
    const bytes0 = await objectBytes(repo.path);

    let pushes = 0;
    let lastPushAt = 0;
    const unsubscribe = a.onLine((l) => {
      if (l.msg && /^push auths\/.+: stored$/.test(l.msg)) {
        pushes++;
        lastPushAt = l.at;
      }
    });
    const expected = new Map(next.map((c, i) => [ids[i]!, canonical(c)]));
    const tracker = new BurstTracker(authsB, expected);
    ctx.log(`  rewriting ${n} files on A`);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await proxyWrite(join(authsA, ids[i]!), texts[i]!);
    const tAll = await tracker.finish(TIMEOUT_MS, () => `on B, of ${n}\n--- A ---\n${a.stderrTail}\n--- B ---\n${b.stderrTail}`);
    await Promise.all([a.quiet(POLL_MS * 3, 60_000), b.quiet(POLL_MS * 3, 60_000)]);
    unsubscribe();
    const commits = (await commitCount(repo.path)) - commits0;
    const bytes = (await objectBytes(repo.path)) - bytes0;
    let bad = 0;
    for (const id of ids) if (canonicalOfText(await readFile(join(authsB, id), 'utf8')) !== expected.get(id)) bad++;
    const exits = await Promise.all([a.stop(), b.stop()]);

    // ---- floor: the same rewrites as one commit, raw git, identical remote
    ctx.log('  floor: the same rewrites as one raw git commit');
    const floorRepo = await seededRemote(server, 'bench-batch-floor', ids, creds);
    const g = authedGit(server);
    const fCommits0 = await commitCount(floorRepo.path);
    const fBytes0 = await objectBytes(floorRepo.path);
    const f0 = performance.now();
    for (let i = 0; i < n; i++) await writeFile(join(floorRepo.clone, 'auths', ids[i]!), texts[i]!);
    await g(['commit', '-q', '-a', '-m', `update ${n} credentials`], floorRepo.clone);
    await g(['push', '-q', 'origin', 'HEAD:refs/heads/main'], floorRepo.clone);
    const floorMs = performance.now() - f0;
    const floorCommits = (await commitCount(floorRepo.path)) - fCommits0;
    const floorBytes = (await objectBytes(floorRepo.path)) - fBytes0;

    // After the server packs both (what the history costs for good).
    const seedPacked = await packedBytes((await seededRemote(server, 'bench-batch-seed', ids, creds)).path);
    const packed = (await packedBytes(repo.path)) - seedPacked;
    const floorPacked = (await packedBytes(floorRepo.path)) - seedPacked;

    return {
      figures: [
        { label: `commits for ${n} updates`, unit: '', value: commits, floor: floorCommits, floorName: 'one-commit' },
        { label: 'bytes added, as received', unit: 'KiB', value: bytes / 1024, floor: floorBytes / 1024, floorName: 'one-commit' },
        { label: 'bytes added, after git gc', unit: 'KiB', value: packed / 1024, floor: floorPacked / 1024, floorName: 'one-commit' },
        // A's per-item `push … stored` lines are at debug level (A runs at debug for them).
        { label: 'all stored by A (last push)', unit: 'ms', value: pushes ? lastPushAt - t0 : NaN, floor: floorMs, floorName: 'one-commit' },
        { label: 'all on B', unit: 'ms', value: tAll - t0 },
      ],
      floors: { 'one-commit': `the same ${n} rewrites committed once with raw git and pushed to an identical remote on the same server` },
      details: {
        items: n,
        pollMs: POLL_MS,
        pushLinesOnA: pushes,
        updatesPerCommit: round(n / Math.max(1, commits), 1),
        bytes: { asReceived: bytes, floorAsReceived: floorBytes, afterGc: packed, floorAfterGc: floorPacked },
        badFilesOnB: bad,
        exitCodes: exits.map((e) => e.code),
      },
      notes: [
        'Each commit holds the writes that reached the store together: the engine pushes up to 16 keys at a time, and writes arriving while a commit is being pushed share the next one.',
        'Small pushes are stored as loose objects by the server (receive.unpackLimit); "after git gc" is what the history costs once packed.',
        ...(bad ? [`${bad} files on B did not hold the new content`] : []),
      ],
    };
  },
};
