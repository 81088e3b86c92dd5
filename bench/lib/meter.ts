/**
 * Per-daemon resource meters for the per-change benchmarks (cpu, fleet): CPU time from /proc, and the
 * bytes the daemon writes to its own state (`<mirror>/.credsync/`: state snapshot, journal, intents).
 *
 * State bytes come from the daemon's counter `credsync_state_written_bytes_total` when its /metrics
 * has it. Otherwise (a daemon built before the counter) they are observed from outside: a
 * `StateWriteWatcher` on `.credsync/` adds a file's whole size when it is replaced (atomic rename) and
 * its growth when it is appended to. That is a lower bound: an append undone by a truncate before the
 * watcher could stat the file is not seen.
 */
import { readdirSync, statSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cpuMs, sleep, type Daemon } from './daemon.js';

/** The daemon's counter of bytes written to the state (snapshot + journal + intents file). */
export const STATE_BYTES_METRIC = 'credsync_state_written_bytes_total';

/** Sum of every sample of a Prometheus counter or gauge (all label sets), or null when the series is absent. */
export function metricSum(metricsText: string, name: string): number | null {
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+|NaN)$`, 'gm');
  let sum: number | null = null;
  for (const m of metricsText.matchAll(re)) sum = (sum ?? 0) + Number(m[1]);
  return sum;
}

/** `wchar` of /proc/<pid>/io: bytes passed to write-family syscalls (files, pipes, sockets alike), or null. */
export async function wcharBytes(pid: number): Promise<number | null> {
  try {
    const m = /^wchar:\s+(\d+)$/m.exec(await readFile(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Temp names of credsync's atomic writes (`.credsync-<hex>.tmp`): their bytes count when the rename lands. */
const isTemp = (name: string): boolean => name.startsWith('.credsync-') && name.endsWith('.tmp');

/**
 * Observes writes to the files directly in a daemon's `.credsync/` directory through inotify (fs.watch),
 * stat-ing a file synchronously on each event naming it: a new inode (created, or replaced by a rename)
 * counts its whole size, a grown file its growth, a truncate nothing. `conflicts/` is not looked into.
 */
export class StateWriteWatcher {
  private readonly known = new Map<string, { ino: number; size: number }>();
  private readonly watcher: FSWatcher;
  /** Bytes seen written since construction. */
  bytes = 0;
  /** Files replaced or created (whole-file writes), and appends seen. */
  replacements = 0;
  appends = 0;

  constructor(readonly dir: string) {
    for (const name of readdirSync(dir)) this.look(name, false);
    this.watcher = watch(dir, (_ev, name) => {
      if (name) this.look(name.toString(), true);
    });
  }

  private look(name: string, count: boolean): void {
    if (isTemp(name)) return;
    let st: { ino: number; size: number; file: boolean };
    try {
      const s = statSync(join(this.dir, name));
      st = { ino: s.ino, size: s.size, file: s.isFile() };
    } catch {
      this.known.delete(name);
      return;
    }
    if (!st.file) return;
    const prev = this.known.get(name);
    this.known.set(name, { ino: st.ino, size: st.size });
    if (!count) return;
    if (!prev || prev.ino !== st.ino) {
      this.bytes += st.size;
      this.replacements++;
    } else if (st.size > prev.size) {
      this.bytes += st.size - prev.size;
      this.appends++;
    }
  }

  close(): void {
    this.watcher.close();
  }
}

/** One reading of a daemon's meters. */
export interface Reading {
  readonly at: number;
  readonly cpuMs: number | null;
  /** `credsync_state_written_bytes_total`, or null when the daemon does not export it. */
  readonly stateBytesCounter: number | null;
  /** The watcher's count (always available). */
  readonly stateBytesObserved: number;
  readonly stateReplacements: number;
  readonly stateAppends: number;
  readonly wchar: number | null;
}

/** A daemon with its state watcher. */
export class DaemonMeter {
  readonly watcher: StateWriteWatcher;

  constructor(
    readonly daemon: Daemon,
    mirrorDir: string,
  ) {
    this.watcher = new StateWriteWatcher(join(mirrorDir, '.credsync'));
  }

  async read(): Promise<Reading> {
    const metrics = await this.daemon.metrics().catch(() => '');
    return {
      at: performance.now(),
      cpuMs: await cpuMs(this.daemon.pid),
      stateBytesCounter: metricSum(metrics, STATE_BYTES_METRIC),
      stateBytesObserved: this.watcher.bytes,
      stateReplacements: this.watcher.replacements,
      stateAppends: this.watcher.appends,
      wchar: await wcharBytes(this.daemon.pid),
    };
  }

  close(): void {
    this.watcher.close();
  }
}

/** Differences between two readings (null where either side is null). */
export interface Delta {
  readonly ms: number;
  readonly cpuMs: number | null;
  readonly stateBytesCounter: number | null;
  readonly stateBytesObserved: number;
  readonly stateReplacements: number;
  readonly stateAppends: number;
  readonly wchar: number | null;
}

const sub = (b: number | null, a: number | null): number | null => (a === null || b === null ? null : b - a);

export function delta(a: Reading, b: Reading): Delta {
  return {
    ms: b.at - a.at,
    cpuMs: sub(b.cpuMs, a.cpuMs),
    stateBytesCounter: sub(b.stateBytesCounter, a.stateBytesCounter),
    stateBytesObserved: b.stateBytesObserved - a.stateBytesObserved,
    stateReplacements: b.stateReplacements - a.stateReplacements,
    stateAppends: b.stateAppends - a.stateAppends,
    wchar: sub(b.wchar, a.wchar),
  };
}

/**
 * Waits until the processes' summed CPU time grows by at most `maxMs` over a `windowMs` window (start-up
 * work, state saves and GC done), bounded by `timeoutMs`. Returns false on timeout (the caller notes it).
 */
export async function cpuQuiet(pids: readonly number[], windowMs = 1000, maxMs = 30, timeoutMs = 60_000): Promise<boolean> {
  const total = async (): Promise<number> => (await Promise.all(pids.map(cpuMs))).reduce<number>((s, v) => s + (v ?? 0), 0);
  const deadline = performance.now() + timeoutMs;
  let before = await total();
  while (performance.now() < deadline) {
    await sleep(windowMs);
    const now = await total();
    if (now - before <= maxMs) return true;
    before = now;
  }
  return false;
}
