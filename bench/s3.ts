/**
 * S3 benchmarks. `npm run bench:s3` builds, then runs every S3 benchmark against s3rver (started here);
 * `--server swift` / `--server rgw` (repeatable) run them against servers named by
 * CREDSYNC_TEST_S3_SWIFT_URL / CREDSYNC_TEST_S3_RGW_URL (`endpoint|access|secret`). Pass benchmark
 * names to run some, `--quick` for fewer samples, `--list` to list them.
 * Prints tables to stdout and writes bench/results/s3-latest.json (and a timestamped copy).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { runCleanups } from './lib/cleanup.js';
import { assertBuilt, REPO_ROOT } from './lib/daemon.js';
import { jsonFigure, renderResult, type BenchOutcome, type BenchResult } from './lib/report.js';
import { obtainS3Server, type S3TestServer } from './lib/s3.js';
import { s3ColdPullBench } from './s3-coldpull.js';
import { s3IdleBench } from './s3-idle.js';
import { s3PropagationBench } from './s3-propagation.js';

export interface S3BenchContext {
  readonly server: S3TestServer;
  readonly quick: boolean;
  readonly log: (msg: string) => void;
}

export interface S3Bench {
  readonly name: string;
  readonly title: string;
  run(ctx: S3BenchContext): Promise<BenchOutcome>;
}

const BENCHES: readonly S3Bench[] = [s3PropagationBench, s3ColdPullBench, s3IdleBench];
const KINDS = ['s3rver', 'swift', 'rgw'] as const;

async function main(argv: string[]): Promise<number> {
  const quick = argv.includes('--quick');
  if (argv.includes('--list')) {
    for (const b of BENCHES) console.log(`${b.name.padEnd(16)} ${b.title}`);
    return 0;
  }
  const kinds: Array<(typeof KINDS)[number]> = [];
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--server') {
      const k = argv[++i] as (typeof KINDS)[number];
      if (!KINDS.includes(k)) {
        console.error(`--server: one of ${KINDS.join(', ')}`);
        return 2;
      }
      kinds.push(k);
    } else if (!a.startsWith('--')) names.push(a);
  }
  const unknown = names.filter((n) => !BENCHES.some((b) => b.name === n));
  if (unknown.length) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${BENCHES.map((b) => b.name).join(', ')}`);
    return 2;
  }
  const selected = names.length ? BENCHES.filter((b) => names.includes(b.name)) : BENCHES;
  assertBuilt();
  const started = Date.now();
  const log = (msg: string): void => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}`);
  const results: Array<BenchResult & { server: string }> = [];
  for (const kind of kinds.length ? kinds : (['s3rver'] as const)) {
    for (const b of selected) {
      // A fresh s3rver per benchmark (0.3 s): its cleanup goes with the benchmark's buckets and daemons.
      const server = await obtainS3Server(kind);
      log(`${b.name} on ${server.name} (${server.endpoint}): ${b.title}`);
      const t0 = performance.now();
      const loadBefore = loadavg()[0]!;
      try {
        const outcome = await b.run({ server, quick, log });
        results.push({ server: server.name, name: b.name, title: `${b.title} (${server.name})`, durationMs: performance.now() - t0, loadAvg1m: { before: loadBefore, after: loadavg()[0]! }, ...outcome });
      } catch (err) {
        const e = err as Error;
        console.error(e.stack ?? e.message);
        results.push({ server: server.name, name: b.name, title: `${b.title} (${server.name})`, durationMs: performance.now() - t0, loadAvg1m: { before: loadBefore, after: loadavg()[0]! }, figures: [], floors: {}, details: {}, notes: [], error: e.message });
      }
      console.log(`\n${renderResult(results[results.length - 1]!)}\n`);
      await runCleanups(); // daemons, buckets and (s3rver) the server of this benchmark
    }
  }
  return finish(results, argv, started);
}

async function finish(results: Array<BenchResult & { server: string }>, argv: string[], started: number): Promise<number> {
  const cpu = cpus();
  const out = {
    generatedAt: new Date().toISOString(),
    command: `tsx bench/s3.ts ${argv.join(' ')}`.trim(),
    totalDurationS: Number(((Date.now() - started) / 1000).toFixed(1)),
    environment: { node: process.version, platform: `${process.platform}-${process.arch}`, cpus: cpu.length, cpuModel: cpu[0]?.model ?? null, memoryMiB: Math.round(totalmem() / 2 ** 20) },
    results: results.map((r) => ({ ...r, durationMs: Math.round(r.durationMs), figures: r.figures.map(jsonFigure) })),
  };
  const dir = join(REPO_ROOT, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const text = `${JSON.stringify(out, null, 2)}\n`;
  await writeFile(join(dir, 's3-latest.json'), text);
  await writeFile(join(dir, `s3-${out.generatedAt.replace(/[:.]/g, '-')}.json`), text);
  console.log('results written to bench/results/s3-latest.json');
  return results.some((r) => r.error) ? 1 : 0;
}

let code = 1;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n[bench] ${sig}: cleaning up`);
    void runCleanups().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}
try {
  code = await main(process.argv.slice(2));
} catch (err) {
  console.error((err as Error).stack ?? String(err));
} finally {
  await runCleanups();
}
process.exit(code);
