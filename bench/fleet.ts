/**
 * Fleet: N = 2, 5, 10 daemons on one store of 1,000 credentials (each its own mirror). Sequential
 * rewrites of a few credentials in daemon 0's mirror (the proxy's temp + rename), each awaited until the
 * new content is on every other daemon. Per change, the latency to each other daemon is recorded.
 *
 * Figures per N: the slowest daemon's p99 (each daemon's p99 over its samples, the largest of them),
 * the median of the per-change maximum (the change is everywhere), and the whole fleet's CPU per change
 * (every daemon's CPU delta over the window, summed, ÷ changes), and the writer's and the mean receiver's
 * CPU per change against the same figure at N = 2 (one daemon's work should not grow with the fleet).
 *
 * Floor `pipeline`: propagation's raw UPDATE → NOTIFY → SELECT → durable write, in one process, on
 * this bench's N = 2 schema after its daemons stopped. One listener stands for every daemon: on a
 * server with spare cores NOTIFY fans out in parallel, so the floor does not grow with N. On 2 cores
 * N daemons share the CPU, and the bench says so instead of hiding it.
 */
import { join } from 'node:path';
import { pipelineFloor } from './propagation.js';
import { tempDir } from './lib/cleanup.js';
import { canonical, credId, fileText, refreshed } from './lib/creds.js';
import { countJson, FileWaiter, proxyWrite } from './lib/fsx.js';
import { Daemon, pgEnv, sleep, waitFor } from './lib/daemon.js';
import { cpuQuiet, DaemonMeter, delta } from './lib/meter.js';
import type { Bench, BenchContext, BenchOutcome, Figure } from './lib/report.js';
import { seedStore } from './lib/seed.js';
import { median, round, roundSummary, summarize, type Summary } from './lib/stats.js';

const KEYS = 5;
const WARMUP = 5;
const GAP_MS = 40;
const TIMEOUT_MS = 30_000;
/**
 * Safety-net poll of each waiter (inotify catches the daemon's rename at once): 9 waiters polling every
 * millisecond would take CPU from the daemons on 2 cores.
 */
const POLL_MS = 5;

interface FleetResult {
  readonly n: number;
  readonly changes: number;
  /** Per other daemon (1..n-1), its latencies. */
  readonly perDaemon: Summary[];
  /** Per change, the latency to the last daemon reached. */
  readonly perChangeMax: Summary;
  readonly slowestP99Ms: number;
  readonly medianOfMaxMs: number;
  readonly fleetCpuMsPerChange: number | null;
  readonly cpuMsPerChangeByDaemon: Array<number | null>;
  readonly fleetStateBytesPerChange: number;
  readonly quietReached: boolean;
  readonly startMs: number;
  readonly schema: string;
  readonly floorKey: { id: string; cred: Record<string, unknown> };
  readonly exitCodes: Array<number | null>;
}

async function fleet(ctx: BenchContext, n: number, population: number, changes: number): Promise<FleetResult> {
  ctx.log(`  N=${n}: seeding a store of ${population}, starting ${n} daemons`);
  const { schema, creds } = await seedStore(ctx, 'bench_fleet', population);
  const dirs = await Promise.all(Array.from({ length: n }, (_, i) => tempDir(`fleet-${i}`)));
  const env = (dir: string): Record<string, string> => ({ ...pgEnv(ctx.pg.url, schema, dir), CREDSYNC_LOG_LEVEL: 'info' });
  const s0 = performance.now();
  const daemons = await Promise.all(dirs.map((d, i) => Daemon.start(`D${i}`, env(d.path), 180_000)));
  const auths = dirs.map((d) => join(d.path, 'auths'));
  await waitFor(`all ${n} mirrors complete`, async () => (await Promise.all(auths.map(countJson))).every((c) => c === population), 240_000, 200);
  const startMs = performance.now() - s0;
  const pids = daemons.map((d) => d.pid);
  const quietReached = await cpuQuiet(pids, 1000, 30, 60_000);

  const meters = daemons.map((d, i) => new DaemonMeter(d, dirs[i]!.path));
  const waiters = auths.map((dir) => new FileWaiter(dir, POLL_MS));
  const idx = Array.from({ length: KEYS }, (_, k) => Math.floor((k * population) / KEYS));
  const samples: number[][] = Array.from({ length: n }, () => []);
  const maxima: number[] = [];
  let before = await Promise.all(meters.map((m) => m.read()));
  try {
    ctx.log(`  N=${n}: ${WARMUP} + ${changes} changes on D0, each awaited on the ${n - 1} others`);
    for (let j = 0; j < WARMUP + changes; j++) {
      if (j === WARMUP) before = await Promise.all(meters.map((m) => m.read()));
      const i = idx[j % idx.length]!;
      creds[i] = refreshed(creds[i]!, j);
      const id = credId(i);
      const expected = canonical(creds[i]);
      const t0 = performance.now();
      await proxyWrite(join(auths[0]!, id), fileText(creds[i]!));
      const arrived = await Promise.all(
        waiters.slice(1).map((w, k) =>
          w.waitForContent(join(w.dir, id), expected, TIMEOUT_MS).catch((err: Error) => {
            throw new Error(`${err.message}\n--- D0 ---\n${daemons[0]!.stderrTail}\n--- D${k + 1} ---\n${daemons[k + 1]!.stderrTail}`);
          }),
        ),
      );
      if (j >= WARMUP) {
        arrived.forEach((t, k) => samples[k + 1]!.push(t - t0));
        maxima.push(Math.max(...arrived) - t0);
      }
      await sleep(GAP_MS + Math.random() * 20);
    }
    await cpuQuiet(pids, 500, 10, 10_000);
  } finally {
    for (const w of waiters) w.close();
  }
  const after = await Promise.all(meters.map((m) => m.read()));
  for (const m of meters) m.close();
  const deltas = before.map((b, i) => delta(b, after[i]!));
  const cpu = deltas.map((d) => (d.cpuMs === null ? null : d.cpuMs / changes));
  const perDaemon = samples.slice(1).map((s) => summarize(s));
  const exitCodes = (await Promise.all(daemons.map((d) => d.stop()))).map((e) => e.code);
  await Promise.all(dirs.map((d) => d.remove()));
  return {
    n,
    changes,
    perDaemon,
    perChangeMax: summarize(maxima),
    slowestP99Ms: Math.max(...perDaemon.map((s) => s.p99)),
    medianOfMaxMs: median(maxima),
    fleetCpuMsPerChange: cpu.some((c) => c === null) ? null : cpu.reduce<number>((s, c) => s + c!, 0),
    cpuMsPerChangeByDaemon: cpu,
    fleetStateBytesPerChange: deltas.reduce((s, d) => s + (d.stateBytesCounter ?? d.stateBytesObserved), 0) / changes,
    quietReached,
    startMs,
    schema,
    floorKey: { id: credId(idx[0]!), cred: creds[idx[0]!]! },
    exitCodes,
  };
}

export const fleetBench: Bench = {
  name: 'fleet',
  title: 'Fleet: N = 2, 5, 10 daemons on one store of 1,000, a change on one → on all',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const sizes = (process.env.BENCH_FLEET_SIZES ?? '2,5,10').split(',').map(Number);
    const population = ctx.quick ? 200 : 1000;
    const changes = ctx.quick ? 20 : Number(process.env.BENCH_FLEET_CHANGES ?? 100);
    const results: FleetResult[] = [];
    let pipeline: Summary | null = null;
    for (const n of sizes) {
      const r = await fleet(ctx, n, population, changes);
      results.push(r);
      if (!pipeline) {
        // On the first fleet's schema: credsync's trigger is installed, its daemons have stopped.
        ctx.log('  floor: raw pipeline (UPDATE → NOTIFY → SELECT → durable write)');
        pipeline = await pipelineFloor(ctx, r.schema, r.floorKey.id, r.floorKey.cred, ctx.quick ? 30 : 100);
      }
    }
    const floor = pipeline!;
    const first = results[0]!;
    // The writer (D0) does more per change than a receiver: compare like with like across N.
    const writerCpu = (r: FleetResult): number => r.cpuMsPerChangeByDaemon[0] ?? NaN;
    const receiverCpu = (r: FleetResult): number => {
      const rest = r.cpuMsPerChangeByDaemon.slice(1);
      return rest.some((c) => c === null) ? NaN : rest.reduce<number>((s, c) => s + c!, 0) / rest.length;
    };
    const againstFirst = (r: FleetResult, pick: (r: FleetResult) => number): Partial<Figure> => (r === first ? {} : { floor: pick(first), floorName: `N=${first.n}` });
    const figures: Figure[] = [];
    for (const r of results) {
      figures.push(
        { label: `N=${r.n}: slowest daemon's p99`, unit: 'ms', value: r.slowestP99Ms, floor: floor.p99, floorName: 'pipeline p99' },
        { label: `N=${r.n}: median of per-change max`, unit: 'ms', value: r.medianOfMaxMs, floor: floor.p50, floorName: 'pipeline p50' },
        { label: `N=${r.n}: fleet CPU per change`, unit: 'ms', value: r.fleetCpuMsPerChange ?? NaN },
        { label: `N=${r.n}: writer (D0) CPU per change`, unit: 'ms', value: writerCpu(r), ...againstFirst(r, writerCpu) },
        { label: `N=${r.n}: receiver CPU per change (mean)`, unit: 'ms', value: receiverCpu(r), ...againstFirst(r, receiverCpu) },
      );
    }
    const notes = results.map(
      (r) =>
        `N=${r.n}: all mirrors complete ${(r.startMs / 1000).toFixed(1)} s after spawn; per-change max p50 / p99 ${r.perChangeMax.p50.toFixed(1)} / ${r.perChangeMax.p99.toFixed(1)} ms; per-daemon p50 ${Math.min(...r.perDaemon.map((s) => s.p50)).toFixed(1)}–${Math.max(...r.perDaemon.map((s) => s.p50)).toFixed(1)} ms; CPU per change by daemon (D0 writes) ${r.cpuMsPerChangeByDaemon.map((c) => (c === null ? '–' : c.toFixed(1))).join(' / ')} ms; fleet state bytes per change ${Math.round(r.fleetStateBytesPerChange)}`,
    );
    notes.push(`the bench's waiters see each file by inotify and poll every ${POLL_MS} ms as a safety net; on 2 cores N daemons share the CPU, so latency grows with N here by CPU contention as much as by design`);
    if (results.some((r) => !r.quietReached)) notes.push('a fleet did not reach CPU quiet (≤ 30 ms per s) within 60 s after its start-up');
    return {
      figures,
      floors: {
        'pipeline p50': 'raw UPDATE of the row (trigger NOTIFYs) → LISTEN callback → SELECT content → temp+fsync+rename+dir fsync, one process, p50 (the propagation bench\'s pipeline floor)',
        'pipeline p99': 'the same, p99',
        [`N=${first.n}`]: `the same figure with N = ${first.n} in the same run: the ratio is the growth of one daemon's work with the fleet (1.0 = none)`,
      },
      details: {
        sizes,
        population,
        changes,
        warmupChanges: WARMUP,
        keysRotated: KEYS,
        gapBetweenChangesMs: `${GAP_MS}–${GAP_MS + 20}`,
        waiterPollMs: POLL_MS,
        floorPipelineMs: roundSummary(floor),
        fleets: results.map((r) => ({
          n: r.n,
          mirrorsCompleteMs: round(r.startMs),
          quietBeforeWindow: r.quietReached,
          slowestP99Ms: round(r.slowestP99Ms),
          medianOfPerChangeMaxMs: round(r.medianOfMaxMs),
          perChangeMaxMs: roundSummary(r.perChangeMax),
          perDaemonMs: r.perDaemon.map((s, k) => ({ daemon: `D${k + 1}`, ...roundSummary(s) })),
          fleetCpuMsPerChange: r.fleetCpuMsPerChange === null ? null : round(r.fleetCpuMsPerChange),
          cpuMsPerChangeByDaemon: r.cpuMsPerChangeByDaemon.map((c) => (c === null ? null : round(c))),
          fleetStateBytesPerChange: Math.round(r.fleetStateBytesPerChange),
          daemonExitCodes: r.exitCodes,
        })),
      },
      notes,
    };
  },
};
