/**
 * credsync processes for the benchmarks, spawned from the built CLI (dist/cli.js): `credsync run`
 * daemons (tracked, stopped at cleanup) and one-shot commands (wall time and peak RSS).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killChild, onCleanup, trackChild } from './cleanup.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import { cleanEnv, freePort } from '../../test/support/proc.js';

export { sleep, waitFor } from '../../test/support/wait.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
/** Neutral working directory: no `.env` or `config.example.yaml` of the repository leaks in. */
export const NEUTRAL_CWD = tmpdir();
const TIME_BIN = '/usr/bin/time';

export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm run bench does)`);
}

/** Environment selecting a PostgreSQL store the way CLIProxyAPI deployments do. */
/**
 * A daemon's environment. `debug` level: the per-item lines (`push … stored`, `pull … written to
 * mirror`) the benchmarks split their samples with are at debug since the default level logs one line
 * per batch.
 */
export function pgEnv(url: string, schema: string, localDir: string): Record<string, string> {
  return { PGSTORE_DSN: url, PGSTORE_SCHEMA: schema, CREDSYNC_LOCAL_DIR: localDir, CREDSYNC_LOG_LEVEL: 'debug' };
}

export interface LogLine {
  readonly raw: string;
  readonly msg?: string;
  /** performance.now() when the bench received the line. */
  readonly at: number;
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** A running `credsync run`. */
export class Daemon {
  readonly lines: LogLine[] = [];
  private partial = '';
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly listeners = new Set<(l: LogLine) => void>();

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    readonly name: string,
  ) {
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop()!;
      const at = performance.now();
      for (const raw of parts) this.add(raw, at);
    });
    child.stdout!.resume();
    this.exit = exited(child);
  }

  /** Starts `credsync run` with a clean environment plus `env`, and waits for /readyz 200. */
  static async start(name: string, env: Record<string, string>, readyTimeoutMs = 60_000): Promise<Daemon> {
    assertBuilt();
    const port = await freePort();
    // BENCH_DAEMON_NODE_ARGS: extra node flags for the daemons (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them).
    const nodeArgs = (process.env.BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const child = spawn(process.execPath, [...nodeArgs, CLI, 'run'], {
      env: cleanEnv({ ...env, NODE_OPTIONS: undefined, CREDSYNC_HTTP_ADDR: `127.0.0.1:${port}` }),
      cwd: NEUTRAL_CWD,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    trackChild(child);
    const d = new Daemon(child, port, name);
    onCleanup(`stop ${name}`, () => d.stop().then(() => undefined));
    await d.ready(readyTimeoutMs);
    return d;
  }

  private add(raw: string, at: number): void {
    if (!raw) return;
    let msg: string | undefined;
    if (raw.startsWith('{')) {
      try {
        msg = (JSON.parse(raw) as { msg?: string }).msg;
      } catch {
        msg = undefined;
      }
    }
    const line: LogLine = { raw, msg, at };
    this.lines.push(line);
    for (const l of this.listeners) l(line);
  }

  /** Called for every later log line; returns an unsubscribe function. */
  onLine(fn: (l: LogLine) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get stderrTail(): string {
    return this.lines
      .slice(-30)
      .map((l) => l.raw)
      .join('\n');
  }

  async get(path: string): Promise<{ status: number; body: string }> {
    const res = await fetch(`http://127.0.0.1:${this.port}${path}`, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  }

  async ready(timeoutMs: number): Promise<void> {
    await waitFor(
      `${this.name} /readyz`,
      async () => {
        if (!this.running) throw new Error(`${this.name} exited before it was ready:\n${this.stderrTail}`);
        return (await this.get('/readyz')).status === 200;
      },
      timeoutMs,
      25,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- ${this.name} stderr (tail) ---\n${this.stderrTail}`);
    });
  }

  /** Prometheus text of /metrics. */
  async metrics(): Promise<string> {
    return (await this.get('/metrics')).body;
  }

  /** Waits until no log line arrived for `quietMs` (bounded by `timeoutMs`). */
  async quiet(quietMs: number, timeoutMs = 30_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const last = this.lines.length ? this.lines[this.lines.length - 1]!.at : 0;
      const idle = performance.now() - last;
      if (idle >= quietMs) return;
      if (performance.now() > deadline) return;
      await sleep(Math.max(5, quietMs - idle));
    }
  }

  /** SIGTERM, then SIGKILL after `timeoutMs`; always awaits the exit. */
  async stop(timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.running) return this.exit;
    this.child.kill('SIGTERM');
    const winner = await Promise.race([this.exit, sleep(timeoutMs).then(() => null)]);
    if (winner) return winner;
    this.child.kill('SIGKILL');
    return this.exit;
  }
}

/** Sum of a Prometheus histogram's `_sum` and `_count` for one label set, e.g. `direction="pull"`. */
export function histogram(metricsText: string, name: string, label: string): { sum: number; count: number } {
  const pick = (suffix: string): number => {
    const re = new RegExp(`^${name}${suffix}\\{[^}]*${label.replace(/"/g, '\\"')}[^}]*\\} ([0-9.eE+-]+)$`, 'm');
    const m = re.exec(metricsText);
    return m ? Number(m[1]) : 0;
  };
  return { sum: pick('_sum'), count: pick('_count') };
}

export interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Spawn to exit, measured by the bench (ms). */
  readonly wallMs: number;
  /** Peak resident set size (KiB): /usr/bin/time -v, else the last VmHWM seen in /proc. */
  readonly maxRssKb: number | null;
  readonly rssSource: 'time -v' | '/proc VmHWM' | 'none';
  readonly stdout: string;
  readonly stderrLines: number;
  readonly stderrTail: string;
}

let timeBinUsable: boolean | undefined;
async function hasTimeBin(): Promise<boolean> {
  if (timeBinUsable !== undefined) return timeBinUsable;
  timeBinUsable = existsSync(TIME_BIN);
  return timeBinUsable;
}

/**
 * Runs `node dist/cli.js ...args` (or another `script`) (clean environment plus `env`) to completion,
 * measuring wall time and peak RSS of the node process. stderr is counted, its tail kept.
 */
export async function runCli(args: string[], env: Record<string, string>, timeoutMs = 240_000, script = CLI): Promise<CliRun> {
  assertBuilt();
  const useTime = await hasTimeBin();
  const timeOut = join(tmpdir(), `credsync-bench-time-${process.pid}-${Date.now()}.txt`);
  const cmd = useTime ? TIME_BIN : process.execPath;
  const argv = useTime ? ['-v', '-o', timeOut, process.execPath, script, ...args] : [script, ...args];
  const t0 = performance.now();
  // Own process group, so a timeout (or the bench's exit) kills node under /usr/bin/time as well.
  const child = spawn(cmd, argv, { env: cleanEnv({ ...env, NODE_OPTIONS: undefined }), cwd: NEUTRAL_CWD, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  trackChild(child, true);
  let stdout = '';
  let stderrLines = 0;
  let tail: string[] = [];
  let partial = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (c: string) => (stdout += c));
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => {
    const parts = (partial + c).split('\n');
    partial = parts.pop()!;
    stderrLines += parts.length;
    tail.push(...parts);
    if (tail.length > 40) tail = tail.slice(-20);
  });
  // Fallback RSS: poll VmHWM (peak) of the node process while it runs.
  let hwm: number | null = null;
  const poll = useTime
    ? undefined
    : setInterval(() => {
        readFile(`/proc/${child.pid}/status`, 'utf8')
          .then((s) => {
            const m = /VmHWM:\s+(\d+) kB/.exec(s);
            if (m) hwm = Math.max(hwm ?? 0, Number(m[1]));
          })
          .catch(() => {});
      }, 10);
  const timer = setTimeout(() => killChild(child, true), timeoutMs);
  const { code, signal } = await exited(child);
  const wallMs = performance.now() - t0;
  clearTimeout(timer);
  if (poll) clearInterval(poll);
  let maxRssKb: number | null = hwm;
  let rssSource: CliRun['rssSource'] = hwm === null ? 'none' : '/proc VmHWM';
  let exitCode = code;
  if (useTime) {
    const text = await readFile(timeOut, 'utf8').catch(() => '');
    await rm(timeOut, { force: true });
    const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(text);
    if (m) {
      maxRssKb = Number(m[1]);
      rssSource = 'time -v';
    }
    const st = /Exit status: (\d+)/.exec(text);
    if (st) exitCode = Number(st[1]);
    if (/Command terminated by signal/.test(text)) exitCode = null;
  }
  return { code: exitCode, signal, wallMs, maxRssKb, rssSource, stdout, stderrLines, stderrTail: tail.slice(-20).join('\n') };
}

/** utime+stime of a process in ms (Linux /proc), or null. */
export async function cpuMs(pid: number): Promise<number | null> {
  try {
    const s = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / CLK_TCK;
  } catch {
    return null;
  }
}

/** VmRSS of a process in KiB, or null. */
export async function rssKb(pid: number): Promise<number | null> {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Linux USER_HZ: 100 on every mainstream architecture. */
const CLK_TCK = 100;
