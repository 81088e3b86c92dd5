/**
 * Git store propagation: a credential rewritten in daemon A's mirror (the proxy's atomic rename) →
 * the new content in daemon B's mirror, both daemons on one remote served over smart HTTP with a token.
 * Samples are spaced by a random pause of up to one poll interval, so they land anywhere in B's poll
 * cycle (on average half an interval of waiting is the design's cost, not an accident of timing).
 *
 * Floor, same server, same run: raw `git` doing the least the job needs — commit the file in one clone
 * and `git push`, then `git fetch` in another clone and read the file (no polling).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from './lib/cleanup.js';
import { canonical, credId, fileText, makeCred, refreshed, type Cred } from './lib/creds.js';
import { countJson, FileWaiter, proxyWrite } from './lib/fsx.js';
import { Daemon, sleep, waitFor } from './lib/daemon.js';
import { authedGit, commitCount, gitEnv, newBareRepo, obtainGitHttp, type GitHttpServer } from './lib/git.js';
import type { Bench, BenchContext, BenchOutcome, Figure } from './lib/report.js';
import { roundSummary, summarize, type Summary } from './lib/stats.js';

const KEYS = 5;
const TIMEOUT_MS = 20_000;

interface ScenarioResult {
  readonly pollMs: number;
  readonly latencyMs: Summary;
  readonly commitsPerUpdate: number;
  readonly exitCodes: Array<number | null>;
}

async function scenario(ctx: BenchContext, server: GitHttpServer, pollMs: number, updates: number): Promise<ScenarioResult> {
  const repo = await newBareRepo(server.root, `bench-prop-${pollMs}`);
  const dirA = await tempDir('gitprop-a');
  const dirB = await tempDir('gitprop-b');
  ctx.log(`  poll ${pollMs} ms: starting daemons A and B`);
  const [a, b] = await Promise.all([Daemon.start('A', gitEnv(server, repo.name, dirA.path, pollMs)), Daemon.start('B', gitEnv(server, repo.name, dirB.path, pollMs))]);
  const authsA = join(dirA.path, 'auths');
  const authsB = join(dirB.path, 'auths');
  await mkdir(authsA, { recursive: true });
  let creds: Cred[] = Array.from({ length: KEYS }, (_, i) => makeCred(i));
  for (let i = 0; i < KEYS; i++) await proxyWrite(join(authsA, credId(i)), fileText(creds[i]!));
  await waitFor('B has the seed credentials', async () => (await countJson(authsB)) === KEYS, 30_000, 50);
  await Promise.all([a.quiet(500), b.quiet(500)]);
  const waiter = new FileWaiter(authsB);
  const samples: number[] = [];
  const before = await commitCount(repo.path);
  try {
    for (let n = 0; n < updates; n++) {
      const i = n % KEYS;
      creds = creds.map((c, k) => (k === i ? refreshed(c, n) : c));
      const want = canonical(creds[i]!);
      const path = join(authsB, credId(i));
      const t0 = performance.now();
      const arrived = waiter.waitForContent(path, want, TIMEOUT_MS);
      await proxyWrite(join(authsA, credId(i)), fileText(creds[i]!));
      samples.push((await arrived) - t0);
      await sleep(100 + Math.random() * pollMs);
    }
  } finally {
    waiter.close();
  }
  await Promise.all([a.quiet(pollMs * 2), b.quiet(pollMs * 2)]);
  const commits = (await commitCount(repo.path)) - before;
  const exitCodes = (await Promise.all([a.stop(), b.stop()])).map((e) => e.code);
  return { pollMs, latencyMs: summarize(samples), commitsPerUpdate: commits / updates, exitCodes };
}

/** Raw git: commit + push in clone X, fetch in clone Y and read the file. */
async function rawFloor(server: GitHttpServer, samples: number): Promise<{ total: Summary; push: Summary; fetch: Summary }> {
  const repo = await newBareRepo(server.root, 'bench-prop-floor');
  const dir = await tempDir('gitprop-floor');
  const g = authedGit(server);
  const url = `${server.base}/${repo.name}.git`;
  const x = join(dir.path, 'x');
  const y = join(dir.path, 'y');
  await g(['clone', '-q', url, x], dir.path);
  await mkdir(join(x, 'auths'), { recursive: true });
  const cred = makeCred(0);
  await writeFile(join(x, 'auths', credId(0)), fileText(cred));
  await g(['add', '-A'], x);
  await g(['commit', '-q', '-m', 'seed'], x);
  await g(['push', '-q', 'origin', 'HEAD:refs/heads/main'], x);
  await g(['clone', '-q', url, y], dir.path);
  const total: number[] = [];
  const push: number[] = [];
  const fetch: number[] = [];
  for (let n = 0; n < samples; n++) {
    const text = fileText(refreshed(cred, n));
    const t0 = performance.now();
    await writeFile(join(x, 'auths', credId(0)), text);
    await g(['commit', '-q', '-a', '-m', `update ${n}`], x);
    await g(['push', '-q', 'origin', 'HEAD:refs/heads/main'], x);
    const t1 = performance.now();
    await g(['fetch', '-q', 'origin'], y);
    const got = await g(['show', `origin/main:auths/${credId(0)}`], y);
    const t2 = performance.now();
    if (got !== text) throw new Error('floor: fetched content differs');
    total.push(t2 - t0);
    push.push(t1 - t0);
    fetch.push(t2 - t1);
  }
  await dir.remove();
  return { total: summarize(total), push: summarize(push), fetch: summarize(fetch) };
}

export const gitPropagationBench: Bench = {
  name: 'git-propagation',
  title: 'Git store: credential rewritten on A → new content on B (smart HTTP + token), vs raw git push + fetch',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const server = await obtainGitHttp();
    ctx.log(`  git smart-HTTP server at ${server.base}`);
    const fast = await scenario(ctx, server, 500, ctx.quick ? 8 : 40);
    const dflt = await scenario(ctx, server, 2000, ctx.quick ? 4 : 15);
    ctx.log('  floor: raw git push + fetch');
    const floor = await rawFloor(server, ctx.quick ? 8 : 40);
    const fig = (label: string, value: number, floorValue: number): Figure => ({ label, unit: 'ms', value, floor: floorValue, floorName: 'push+fetch' });
    const figures: Figure[] = [
      fig('p50, poll 500 ms', fast.latencyMs.p50, floor.total.p50),
      fig('p95, poll 500 ms', fast.latencyMs.p95, floor.total.p95),
      fig('p50, poll 2 s (default)', dflt.latencyMs.p50, floor.total.p50),
      fig('p95, poll 2 s (default)', dflt.latencyMs.p95, floor.total.p95),
      { label: 'commits per update', unit: '', value: fast.commitsPerUpdate, floor: 1, floorName: 'one commit' },
    ];
    return {
      figures,
      floors: {
        'push+fetch': 'raw git over the same smart-HTTP server: write, commit and push in one clone, then fetch and read in another (no polling)',
        'one commit': 'an update is one commit',
      },
      details: {
        poll500: { ...fast, latencyMs: roundSummary(fast.latencyMs) },
        poll2000: { ...dflt, latencyMs: roundSummary(dflt.latencyMs) },
        floor: { total: roundSummary(floor.total), push: roundSummary(floor.push), fetch: roundSummary(floor.fetch) },
        expectedPollWaitMs: { poll500: 250, poll2000: 1000 },
      },
      notes: [
        'B learns of a change at its next poll (one `git ls-remote`): on average half a poll interval after A pushed, at most a whole one. Floor + half the interval is the design\'s expected latency.',
        `floor + half the interval: ${Math.round(floor.total.p50 + 250)} ms (poll 500 ms), ${Math.round(floor.total.p50 + 1000)} ms (poll 2 s)`,
      ],
    };
  },
};
