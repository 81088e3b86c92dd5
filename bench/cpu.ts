/**
 * CPU and state bytes per change: a store of 1,000 and of 10,000 credentials, two daemons A and B; K
 * sequential rewrites of a few credentials on A (the proxy's temp + rename), each awaited on B. Per
 * change: A's and B's CPU time (utime + stime from /proc) and the bytes each wrote to its state
 * (`credsync_state_written_bytes_total`, else observed on `.credsync/` by inotify: see lib/meter.ts).
 *
 * Neither figure should depend on the store's size. There is no natural floor, so the figure at 1,000
 * is the "floor" of the figure at 10,000: the ratio is the growth (1.0 = independent of the store).
 *
 * Periodic reconciles are pushed out of the window (CREDSYNC_RECONCILE_INTERVAL=1h): a full reconcile
 * costs in proportion to the store by design, and it is not per-change work. Logs at the default level
 * (info): the per-item debug lines would be CPU a production daemon does not spend.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './lib/cleanup.js';
import { canonical, credId, fileText, refreshed } from './lib/creds.js';
import { countJson, FileWaiter, proxyWrite } from './lib/fsx.js';
import { Daemon, pgEnv, sleep, waitFor } from './lib/daemon.js';
import { cpuQuiet, DaemonMeter, delta, STATE_BYTES_METRIC, type Delta } from './lib/meter.js';
import type { Bench, BenchContext, BenchOutcome, Figure } from './lib/report.js';
import { seedStore } from './lib/seed.js';
import { round, roundSummary, summarize, type Summary } from './lib/stats.js';

/** Credentials rotated (spread over the population), as the propagation bench's `five-keys-1000`. */
const KEYS = 5;
const WARMUP = 5;
/** Pause between changes (plus 0–20 ms jitter), as in the propagation bench. */
const GAP_MS = 40;
const TIMEOUT_MS = 15_000;

interface Side {
  /** Per change, over the measured window. */
  readonly cpuMs: number | null;
  /** Per change, minus the CPU the same daemon used idle over as long a time. */
  readonly cpuMsNetOfIdle: number | null;
  readonly idleCpuMsPerS: number | null;
  /** Per change: the daemon's counter when present, else the watcher's observation. */
  readonly stateBytes: number;
  readonly stateBytesSource: 'counter' | 'inotify';
  readonly stateBytesObserved: number;
  readonly stateReplacements: number;
  readonly stateAppends: number;
  readonly wchar: number | null;
  readonly stateJsonBytes: number | null;
}

interface PopulationResult {
  readonly population: number;
  readonly changes: number;
  readonly latencyMs: Summary;
  readonly windowMs: number;
  readonly idleMs: number;
  readonly quietReached: boolean;
  readonly a: Side;
  readonly b: Side;
  readonly exitCodes: Array<number | null>;
}

function fileSize(path: string): number | null {
  try {
    return statSync(path).size;
  } catch {
    return null;
  }
}

function side(d: Delta, idle: Delta, changes: number, stateJson: string): Side {
  const idleRate = idle.cpuMs === null || idle.ms <= 0 ? null : idle.cpuMs / idle.ms;
  const counter = d.stateBytesCounter;
  return {
    cpuMs: d.cpuMs === null ? null : d.cpuMs / changes,
    cpuMsNetOfIdle: d.cpuMs === null || idleRate === null ? null : (d.cpuMs - idleRate * d.ms) / changes,
    idleCpuMsPerS: idleRate === null ? null : idleRate * 1000,
    stateBytes: (counter ?? d.stateBytesObserved) / changes,
    stateBytesSource: counter === null ? 'inotify' : 'counter',
    stateBytesObserved: d.stateBytesObserved / changes,
    stateReplacements: d.stateReplacements / changes,
    stateAppends: d.stateAppends / changes,
    wchar: d.wchar === null ? null : d.wchar / changes,
    stateJsonBytes: fileSize(stateJson),
  };
}

async function measure(ctx: BenchContext, population: number, changes: number, idleMs: number): Promise<PopulationResult> {
  ctx.log(`  store of ${population}: seeding`);
  const { schema, creds } = await seedStore(ctx, 'bench_cpu', population);
  const dirA = await tempDir('cpu-a');
  const dirB = await tempDir('cpu-b');
  const env = (dir: string): Record<string, string> => ({ ...pgEnv(ctx.pg.url, schema, dir), CREDSYNC_LOG_LEVEL: 'info', CREDSYNC_RECONCILE_INTERVAL: '1h' });
  ctx.log(`  store of ${population}: starting daemons A and B`);
  const [a, b] = await Promise.all([Daemon.start('A', env(dirA.path), 180_000), Daemon.start('B', env(dirB.path), 180_000)]);
  const authsA = join(dirA.path, 'auths');
  const authsB = join(dirB.path, 'auths');
  await waitFor('both mirrors complete', async () => (await countJson(authsA)) === population && (await countJson(authsB)) === population, 60_000 + population * 20, 100);
  // Start-up work done (initial reconcile, state save, GC) before anything is read.
  const quietReached = await cpuQuiet([a.pid, b.pid], 1000, 30, 60_000);
  const ma = new DaemonMeter(a, dirA.path);
  const mb = new DaemonMeter(b, dirB.path);
  const waiter = new FileWaiter(authsB);
  const idx = Array.from({ length: KEYS }, (_, k) => Math.floor((k * population) / KEYS));
  const latencies: number[] = [];
  let idle: [Delta, Delta];
  let window: [Delta, Delta];
  try {
    ctx.log(`  store of ${population}: idle baseline (${idleMs / 1000} s)`);
    const [ia, ib] = await Promise.all([ma.read(), mb.read()]);
    await sleep(idleMs);
    const [ia2, ib2] = await Promise.all([ma.read(), mb.read()]);
    idle = [delta(ia, ia2), delta(ib, ib2)];

    ctx.log(`  store of ${population}: ${WARMUP} + ${changes} changes on A`);
    let wa = ia2;
    let wb = ib2;
    for (let j = 0; j < WARMUP + changes; j++) {
      // The window opens after the warm-up (first-use compilation is not per-change work).
      if (j === WARMUP) [wa, wb] = await Promise.all([ma.read(), mb.read()]);
      const i = idx[j % idx.length]!;
      creds[i] = refreshed(creds[i]!, j);
      const id = credId(i);
      const t0 = performance.now();
      await proxyWrite(join(authsA, id), fileText(creds[i]!));
      const t1 = await waiter.waitForContent(join(authsB, id), canonical(creds[i]), TIMEOUT_MS).catch((err: Error) => {
        throw new Error(`${err.message}\n--- A ---\n${a.stderrTail}\n--- B ---\n${b.stderrTail}`);
      });
      if (j >= WARMUP) latencies.push(t1 - t0);
      await sleep(GAP_MS + Math.random() * 20);
    }
    // The last change's follow-up work (echo check, state save) belongs to the window.
    await cpuQuiet([a.pid, b.pid], 500, 10, 10_000);
    const [wa2, wb2] = await Promise.all([ma.read(), mb.read()]);
    window = [delta(wa, wa2), delta(wb, wb2)];
  } finally {
    waiter.close();
    ma.close();
    mb.close();
  }
  const result: PopulationResult = {
    population,
    changes,
    latencyMs: summarize(latencies),
    windowMs: window[0].ms,
    idleMs: idle[0].ms,
    quietReached,
    a: side(window[0], idle[0], changes, join(dirA.path, '.credsync', 'state.json')),
    b: side(window[1], idle[1], changes, join(dirB.path, '.credsync', 'state.json')),
    exitCodes: (await Promise.all([a.stop(), b.stop()])).map((e) => e.code),
  };
  await Promise.all([dirA.remove(), dirB.remove()]);
  return result;
}

const thousands = (n: number): string => n.toLocaleString('en-US');

function describeSide(s: Side): Record<string, unknown> {
  return {
    cpuMsPerChange: s.cpuMs === null ? null : round(s.cpuMs),
    cpuMsPerChangeNetOfIdle: s.cpuMsNetOfIdle === null ? null : round(s.cpuMsNetOfIdle),
    idleCpuMsPerS: s.idleCpuMsPerS === null ? null : round(s.idleCpuMsPerS),
    stateBytesPerChange: round(s.stateBytes, 1),
    stateBytesSource: s.stateBytesSource,
    stateBytesObservedPerChange: round(s.stateBytesObserved, 1),
    stateFilesReplacedPerChange: round(s.stateReplacements, 2),
    stateAppendsPerChange: round(s.stateAppends, 2),
    wcharPerChange: s.wchar === null ? null : Math.round(s.wchar),
    stateJsonBytesAtEnd: s.stateJsonBytes,
  };
}

export const cpuBench: Bench = {
  name: 'cpu',
  title: 'CPU and state bytes per change: store of 1,000 vs 10,000',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const populations = ctx.quick ? [200, 2000] : [1000, 10_000];
    const changes = ctx.quick ? 40 : Number(process.env.BENCH_CPU_CHANGES ?? 200);
    const idleMs = ctx.quick ? 3000 : 10_000;
    const results: PopulationResult[] = [];
    for (const p of populations) results.push(await measure(ctx, p, changes, idleMs));

    const base = results[0]!;
    const floorName = `store-${thousands(base.population)}`;
    const figures: Figure[] = [];
    const row = (label: string, unit: string, pick: (r: PopulationResult) => number | null): void => {
      for (const r of results) {
        const v = pick(r);
        const f = pick(base);
        figures.push({
          label: `${label}, store of ${thousands(r.population)}`,
          unit,
          value: v ?? NaN,
          ...(r === base || f === null ? {} : { floor: f, floorName }),
        });
      }
    };
    row('A: CPU per change', 'ms', (r) => r.a.cpuMs);
    row('B: CPU per change', 'ms', (r) => r.b.cpuMs);
    row('A: state bytes per change', 'bytes', (r) => r.a.stateBytes);
    row('B: state bytes per change', 'bytes', (r) => r.b.stateBytes);

    const sources = new Set(results.flatMap((r) => [r.a.stateBytesSource, r.b.stateBytesSource]));
    const notes: string[] = [
      sources.has('inotify')
        ? `state bytes: the daemons do not export ${STATE_BYTES_METRIC}; observed from outside on .credsync/ by inotify (whole size of a replaced file, growth of an appended one: a lower bound)`
        : `state bytes from the daemons' ${STATE_BYTES_METRIC} (the inotify observation is in the details as a cross-check)`,
      ...results.map(
        (r) =>
          `store of ${thousands(r.population)}: latency p50 ${r.latencyMs.p50.toFixed(1)} ms; CPU per change net of idle A ${r.a.cpuMsNetOfIdle?.toFixed(2) ?? '–'} ms, B ${r.b.cpuMsNetOfIdle?.toFixed(2) ?? '–'} ms (idle A ${r.a.idleCpuMsPerS?.toFixed(2) ?? '–'}, B ${r.b.idleCpuMsPerS?.toFixed(2) ?? '–'} ms/s); state.json ${r.a.stateJsonBytes ?? '–'} bytes; state files replaced per change A ${r.a.stateReplacements.toFixed(2)}, B ${r.b.stateReplacements.toFixed(2)}`,
      ),
      'CPU from /proc/<pid>/stat (10 ms ticks, summed over the window, so per-change figures are finer than a tick)',
    ];
    if (results.some((r) => !r.quietReached)) notes.push('a store did not reach CPU quiet (≤ 30 ms per s) within 60 s of its start-up; its idle baseline may include start-up work');
    return {
      figures,
      floors: {
        [floorName]: `the same figure with a store of ${thousands(base.population)} in the same run: the ratio is the growth with the store (1.0 = independent of its size)`,
      },
      details: {
        populations,
        changes,
        warmupChanges: WARMUP,
        keysRotated: KEYS,
        gapBetweenChangesMs: `${GAP_MS}–${GAP_MS + 20}`,
        daemonEnv: { CREDSYNC_LOG_LEVEL: 'info', CREDSYNC_RECONCILE_INTERVAL: '1h' },
        stores: results.map((r) => ({
          population: r.population,
          latencyMs: roundSummary(r.latencyMs),
          windowMs: round(r.windowMs),
          idleWindowMs: round(r.idleMs),
          quietBeforeIdle: r.quietReached,
          a: describeSide(r.a),
          b: describeSide(r.b),
          daemonExitCodes: r.exitCodes,
        })),
      },
      notes,
    };
  },
};
