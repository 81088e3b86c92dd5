/**
 * Real credsync processes for end-to-end tests: `credsync run` daemons and one-shot commands, both
 * spawned from the built CLI (dist/cli.js; build it first with `npx tsc -p tsconfig.build.json`).
 *
 * Every child is tracked. `processGroup()` registers an afterEach/afterAll hook that SIGKILLs and
 * *awaits* whatever is still alive, so a failing test never leaves a daemon behind (the machines'
 * PID 1 does not reap orphans: an un-awaited child would linger as a zombie).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach } from 'vitest';
import { sleep, waitFor } from './wait.js';
import { cleanEnv, freePort } from './proc.js';

export { cleanEnv, freePort } from './proc.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
/**
 * Default working directory of spawned commands: neutral, so a `.env` or `config.example.yaml` in the
 * repository can never leak into a test. Tests about cwd behaviour pass their own.
 */
export const NEUTRAL_CWD = tmpdir();

/** Fails loudly (instead of with a confusing spawn error) when dist/ has not been built. */
export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -p tsconfig.build.json\` before the e2e tests`);
}


// ------------------------------------------------------------------ tracking

const live = new Set<ChildProcess>();

/** Resolves when the child has exited (and therefore been reaped by Node). */
function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** SIGKILLs every tracked child that is still running and waits for each to exit. */
export async function killAll(children: Iterable<ChildProcess> = live): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const c of [...children]) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
    waits.push(exited(c));
  }
  await Promise.all(waits);
}

/**
 * Children started through the group are killed (SIGKILL) and awaited in the hook it registers:
 * `afterAll` by default (daemons shared by a describe), `afterEach` for per-test daemons.
 * Call it inside a describe block (or at file level).
 */
export function processGroup(scope: 'all' | 'each' = 'all'): ProcessGroup {
  const g = new ProcessGroup();
  (scope === 'each' ? afterEach : afterAll)(async () => {
    await g.killAll();
  });
  return g;
}

export class ProcessGroup {
  readonly children = new Set<ChildProcess>();
  readonly daemons: Daemon[] = [];

  /** Starts `credsync run`; by default waits until /readyz answers 200. */
  async start(o: DaemonOptions): Promise<Daemon> {
    const d = await Daemon.spawn(o, (c) => this.children.add(c));
    this.daemons.push(d);
    if (o.waitReady !== false) await d.ready(o.readyTimeoutMs);
    return d;
  }

  /** One-shot command; the child is tracked so a hung command is killed by the hook too. */
  cli(args: string[], o: CliOptions = {}): Promise<CliResult> {
    return runCli(args, { ...o, onSpawn: (c) => this.children.add(c) });
  }

  async killAll(): Promise<void> {
    await killAll(this.children);
    this.children.clear();
    this.daemons.length = 0;
  }
}

// ------------------------------------------------------------------ daemons

export interface LogLine {
  /** The raw stderr line. */
  readonly raw: string;
  /** Parsed pino record, when the line is JSON. */
  readonly json?: { level?: number; msg?: string; key?: string; [k: string]: unknown };
  /** When the test process received it. */
  readonly at: number;
}

export interface DaemonOptions {
  /** Extra environment (on top of a clean one). CREDSYNC_HTTP_ADDR is set to a free port unless given. */
  readonly env?: Record<string, string | undefined>;
  readonly args?: string[];
  readonly cwd?: string;
  /** Wait for /readyz 200 before returning (default true). */
  readonly waitReady?: boolean;
  readonly readyTimeoutMs?: number;
  /** A name for messages. */
  readonly name?: string;
  /**
   * How to give the daemon its free HTTP port: `env` (CREDSYNC_HTTP_ADDR, default) or `flag`
   * (`--http-addr`, for tests that must run with no CREDSYNC_* variable at all).
   */
  readonly httpVia?: 'env' | 'flag';
  /** Add the fast test defaults CREDSYNC_DEBOUNCE=20ms and CREDSYNC_RECONCILE_INTERVAL=60s (default true). */
  readonly testDefaults?: boolean;
}

export interface StopResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly elapsedMs: number;
}

/** A running `credsync run` process. */
export class Daemon {
  readonly lines: LogLine[] = [];
  stdout = '';
  private partial = '';
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly child: ChildProcess,
    readonly port: number | null,
    readonly name: string,
  ) {
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop()!;
      for (const raw of parts) this.addLine(raw);
    });
    child.stderr!.on('end', () => {
      if (this.partial) this.addLine(this.partial);
      this.partial = '';
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (c: string) => (this.stdout += c));
    this.exit = exited(child);
  }

  static async spawn(o: DaemonOptions, onSpawn?: (c: ChildProcess) => void): Promise<Daemon> {
    assertBuilt();
    const given = o.env?.CREDSYNC_HTTP_ADDR;
    let port: number | null = null;
    let httpAddr = given;
    if (given === undefined) {
      port = await freePort();
      httpAddr = `127.0.0.1:${port}`;
    } else if (/:(\d+)$/.test(given)) {
      port = Number(/:(\d+)$/.exec(given)![1]);
    }
    const viaFlag = o.httpVia === 'flag';
    const defaults = o.testDefaults === false ? {} : { CREDSYNC_DEBOUNCE: '20ms', CREDSYNC_RECONCILE_INTERVAL: '60s' };
    const env = cleanEnv({ ...defaults, ...o.env, CREDSYNC_HTTP_ADDR: viaFlag ? undefined : httpAddr });
    const args = ['run', ...(viaFlag ? ['--http-addr', httpAddr!] : []), ...(o.args ?? [])];
    const child = spawn(process.execPath, [CLI, ...args], { env, cwd: o.cwd ?? NEUTRAL_CWD, stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    onSpawn?.(child);
    return new Daemon(child, port, o.name ?? `daemon(${httpAddr})`);
  }

  private addLine(raw: string): void {
    if (raw === '') return;
    let json: LogLine['json'];
    if (raw.startsWith('{')) {
      try {
        json = JSON.parse(raw) as LogLine['json'];
      } catch {
        json = undefined;
      }
    }
    this.lines.push({ raw, json, at: Date.now() });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get url(): string {
    if (this.port === null) throw new Error(`${this.name}: HTTP is off`);
    return `http://127.0.0.1:${this.port}`;
  }

  /** All of stderr so far. */
  get stderr(): string {
    return this.lines.map((l) => l.raw).join('\n') + (this.partial ? '\n' + this.partial : '');
  }

  /** Log messages (pino `msg`, or the raw line) received at or after `since`. */
  messages(since = 0): string[] {
    return this.lines.filter((l) => l.at >= since).map((l) => l.json?.msg ?? l.raw);
  }

  /** Waits for a stderr line matching `pred` (a regexp on the raw line, or a predicate). */
  async waitForLog(pred: RegExp | ((l: LogLine) => boolean), timeoutMs = 5000, since = 0): Promise<LogLine> {
    const test = typeof pred === 'function' ? pred : (l: LogLine) => pred.test(l.raw);
    return waitFor(
      `${this.name} to log ${String(pred)}`,
      () => {
        if (!this.running && !this.lines.some((l) => l.at >= since && test(l))) throw new Error(`${this.name} exited; stderr:\n${this.stderr}`);
        return this.lines.find((l) => l.at >= since && test(l));
      },
      timeoutMs,
    );
  }

  /** GET `path` on the daemon's HTTP listener. */
  async get(path: string): Promise<{ status: number; body: string }> {
    const res = await fetch(this.url + path, { signal: AbortSignal.timeout(2000) });
    return { status: res.status, body: await res.text() };
  }

  /** Waits for /readyz 200; fails early (with stderr) when the process exits. */
  async ready(timeoutMs = 10_000): Promise<void> {
    await waitFor(
      `${this.name} /readyz 200`,
      async () => {
        if (!this.running) throw new Error(`${this.name} exited before it was ready; stderr:\n${this.stderr}`);
        return (await this.get('/readyz')).status === 200;
      },
      timeoutMs,
      20,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- ${this.name} stderr ---\n${this.stderr}`);
    });
  }

  /**
   * Sends `signal` (SIGTERM by default) and waits for the exit; after `timeoutMs` it SIGKILLs
   * (and still awaits). `elapsedMs` runs from the signal to the exit.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<StopResult> {
    const t0 = Date.now();
    if (!this.running) {
      const e = await this.exit;
      return { ...e, elapsedMs: 0 };
    }
    this.child.kill(signal);
    const winner = await Promise.race([this.exit, sleep(timeoutMs).then(() => null)]);
    if (winner) return { ...winner, elapsedMs: Date.now() - t0 };
    this.child.kill('SIGKILL');
    const e = await this.exit;
    return { ...e, elapsedMs: Date.now() - t0 };
  }

  /** SIGKILL and await (simulates a crash). */
  async kill(): Promise<StopResult> {
    return this.stop('SIGKILL', 5000);
  }
}

// ------------------------------------------------------------------ one-shot commands

export interface CliOptions {
  /** Extra environment on top of a clean one (no inherited CREDSYNC_* etc.). */
  readonly env?: Record<string, string | undefined>;
  readonly cwd?: string;
  readonly timeoutMs?: number;
  readonly onSpawn?: (c: ChildProcess) => void;
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node dist/cli.js ...args` to completion (killed after `timeoutMs`). Never rejects on a non-zero exit. */
export function runCli(args: string[], o: CliOptions = {}): Promise<CliResult> {
  assertBuilt();
  return new Promise((resolve) => {
    let child: ChildProcess | undefined = undefined;
    child = execFile(
      process.execPath,
      [CLI, ...args],
      { env: cleanEnv(o.env), cwd: o.cwd ?? NEUTRAL_CWD, timeout: o.timeoutMs ?? 20_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals | null }) | null;
        const code = child?.exitCode ?? (typeof e?.code === 'number' ? e.code : e ? null : 0);
        resolve({ code, signal: child?.signalCode ?? e?.signal ?? null, stdout, stderr });
      },
    );
    track(child);
    o.onSpawn?.(child);
  });
}

/**
 * Runs `fn`; when it throws, appends the daemons' recent log messages to the error so a failure in an
 * end-to-end test shows what each process did.
 */
export async function withDaemonLogs<T>(daemons: Array<Daemon | undefined>, fn: () => Promise<T>, lastLines = 40): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const t0 = Math.min(...daemons.flatMap((d) => (d?.lines.length ? [d.lines[0]!.at] : [Date.now()])));
    const logs = daemons
      .filter((d): d is Daemon => !!d)
      .map((d) => `--- ${d.name} (pid ${d.pid}${d.running ? '' : ', exited'}) ---\n` + d.lines.slice(-lastLines).map((l) => `+${l.at - t0}ms ${l.json?.msg ?? l.raw}`).join('\n'))
      .join('\n');
    e.message += `\n${logs}`;
    throw e;
  }
}
