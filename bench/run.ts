/**
 * credsync benchmarks. `npm run bench` builds, then runs every benchmark in sequence; pass names to run
 * some (`npm run bench -- idle burst`), `--quick` for fewer samples, `--list` to list them.
 * Prints tables to stdout and writes bench/results/latest.json (and a timestamped copy).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { backupBench } from './backup.js';
import { burstBench } from './burst.js';
import { coldStartBench } from './coldstart.js';
import { cpuBench } from './cpu.js';
import { encryptionBench } from './encryption.js';
import { fleetBench } from './fleet.js';
import { gitBatchBench } from './git-batch.js';
import { gitPropagationBench } from './git-propagation.js';
import { idleBench } from './idle.js';
import { migrateBench } from './migrate.js';
import { propagationBench } from './propagation.js';
import { runCleanups } from './lib/cleanup.js';
import { assertBuilt, REPO_ROOT } from './lib/daemon.js';
import { client, obtainPg, serverInfo } from './lib/pg.js';
import { jsonFigure, renderResult, type Bench, type BenchResult } from './lib/report.js';

const BENCHES: readonly Bench[] = [propagationBench, burstBench, coldStartBench, idleBench, cpuBench, fleetBench, migrateBench, backupBench, encryptionBench, gitPropagationBench, gitBatchBench];

function usage(): string {
  return `usage: tsx bench/run.ts [--quick] [--list] [${BENCHES.map((b) => b.name).join('|')} ...]`;
}

function gitDescribe(): { commit: string | null; dirty: boolean | null } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim() !== '';
    return { commit, dirty };
  } catch {
    return { commit: null, dirty: null };
  }
}

async function main(argv: string[]): Promise<number> {
  const quick = argv.includes('--quick');
  if (argv.includes('--list')) {
    for (const b of BENCHES) console.log(`${b.name.padEnd(12)} ${b.title}`);
    return 0;
  }
  const names = argv.filter((a) => !a.startsWith('--'));
  const unknown = names.filter((n) => !BENCHES.some((b) => b.name === n));
  if (unknown.length) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}\n${usage()}`);
    return 2;
  }
  const selected = names.length ? BENCHES.filter((b) => names.includes(b.name)) : BENCHES;
  assertBuilt();

  const started = Date.now();
  const log = (msg: string): void => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}`);
  log('PostgreSQL: starting or connecting');
  const pg = await obtainPg();
  const admin = client(pg.url, 'credsync-bench-admin');
  const info = await serverInfo(admin);
  log(`PostgreSQL ${info.version} from ${pg.source} (fsync=${info.fsync}, synchronous_commit=${info.synchronousCommit})`);

  const results: BenchResult[] = [];
  for (const b of selected) {
    log(`${b.name}: ${b.title}`);
    const t0 = performance.now();
    const loadBefore = loadavg()[0]!;
    try {
      const outcome = await b.run({ pg, admin, quick, log });
      results.push({ name: b.name, title: b.title, durationMs: performance.now() - t0, loadAvg1m: { before: loadBefore, after: loadavg()[0]! }, ...outcome });
    } catch (err) {
      const e = err as Error;
      console.error(e.stack ?? e.message);
      results.push({ name: b.name, title: b.title, durationMs: performance.now() - t0, loadAvg1m: { before: loadBefore, after: loadavg()[0]! }, figures: [], floors: {}, details: {}, notes: [], error: e.message });
    }
    console.log(`\n${renderResult(results[results.length - 1]!)}\n`);
  }

  const cpu = cpus();
  const out = {
    generatedAt: new Date().toISOString(),
    command: `tsx bench/run.ts ${argv.join(' ')}`.trim(),
    quick,
    totalDurationS: Number(((Date.now() - started) / 1000).toFixed(1)),
    environment: {
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? null,
      memoryMiB: Math.round(totalmem() / 2 ** 20),
      postgres: { version: info.version, source: pg.source, fsync: info.fsync, synchronousCommit: info.synchronousCommit },
      git: gitDescribe(),
    },
    results: results.map((r) => ({ ...r, durationMs: Math.round(r.durationMs), figures: r.figures.map(jsonFigure) })),
  };
  const dir = join(REPO_ROOT, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const text = `${JSON.stringify(out, null, 2)}\n`;
  await writeFile(join(dir, 'latest.json'), text);
  await writeFile(join(dir, `${out.generatedAt.replace(/[:.]/g, '-')}.json`), text);
  log(`results written to bench/results/latest.json`);
  return results.some((r) => r.error) ? 1 : 0;
}

let cleaning: Promise<void> | null = null;
const cleanup = (): Promise<void> => (cleaning ??= runCleanups());

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n[bench] ${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

let code = 1;
try {
  code = await main(process.argv.slice(2));
} catch (err) {
  console.error((err as Error).stack ?? String(err));
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
