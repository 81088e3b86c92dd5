/** File-system helpers: the proxy's writes, raw durable writes (floors), and watching a mirror for content. */
import { randomBytes } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { mkdir, open, readdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { canonicalOfText } from './creds.js';

/**
 * How a proxy rewrites a credential: whole new file under a temp name the watcher ignores (dot file,
 * no `.json` suffix), then rename over the target. No fsync (the proxy's business, not credsync's).
 */
export async function proxyWrite(path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.bench-${randomBytes(4).toString('hex')}.tmp`);
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, path);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * The durability protocol credsync's invariant 1 requires, done raw: temp file, write, fsync, rename,
 * fsync the directory (`dirSync` false: the caller fsyncs the directory once for a batch).
 */
export async function durableWrite(path: string, data: string | Uint8Array, dirSync = true): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.raw-${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  if (dirSync) await fsyncDir(dir);
}

/** Writes many files durably with `parallel` writers; each file still gets the full protocol. */
export async function durableWriteMany(dir: string, files: ReadonlyArray<{ name: string; data: string }>, parallel: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const f = files[next++]!;
      await durableWrite(join(dir, f.name), f.data);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, files.length) }, worker));
}

/** Number of `*.json` files directly in `dir` (0 when missing). */
export async function countJson(dir: string): Promise<number> {
  try {
    return (await readdir(dir)).filter((n) => n.endsWith('.json') && !n.startsWith('.')).length;
  } catch {
    return 0;
  }
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/**
 * Watches one directory (inotify through fs.watch) and, as a safety net, polls every `pollMs` (~1 ms by
 * default): `waitFor` resolves with performance.now() at the first check where the file holds the
 * expected content. Many waiters at once (the fleet bench) poll less often, so that the bench's own
 * polling does not take the CPU the daemons need; inotify still catches the rename at once.
 */
export class FileWaiter {
  private readonly watcher: FSWatcher;
  private readonly pokes = new Set<() => void>();

  constructor(
    readonly dir: string,
    private readonly pollMs = 1,
  ) {
    this.watcher = watch(dir, () => {
      for (const p of this.pokes) p();
    });
  }

  /** Resolves when `path` parses to JSON whose canonical form is `expected`. */
  waitForContent(path: string, expected: string, timeoutMs: number): Promise<number> {
    let lastText: string | null = null;
    const check = (): boolean => {
      const text = readText(path);
      if (text === null || text === lastText) return false;
      lastText = text;
      return canonicalOfText(text) === expected;
    };
    return new Promise<number>((resolve, reject) => {
      let finished = false;
      const finish = (err: Error | null, at = 0): void => {
        if (finished) return;
        finished = true;
        clearInterval(interval);
        clearTimeout(timer);
        this.pokes.delete(poke);
        if (err) reject(err);
        else resolve(at);
      };
      const poke = (): void => {
        if (!finished && check()) finish(null, performance.now());
      };
      const interval = setInterval(poke, this.pollMs);
      const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${path} to get the new content`)), timeoutMs);
      this.pokes.add(poke);
      poke();
    });
  }

  close(): void {
    this.watcher.close();
  }
}

/**
 * Tracks many files of one directory until each holds its expected content (canonical JSON). Checks a
 * file on every fs.watch event naming it, and sweeps all pending files every `sweepMs`.
 */
export class BurstTracker {
  private readonly pending: Map<string, string>;
  private readonly watcher: FSWatcher;
  private readonly sweep: NodeJS.Timeout;
  firstAt: number | null = null;
  lastAt: number | null = null;
  readonly done: Promise<number>;
  private resolveDone!: (at: number) => void;

  constructor(
    readonly dir: string,
    expected: ReadonlyMap<string, string>,
    sweepMs = 200,
  ) {
    this.pending = new Map(expected);
    this.done = new Promise((r) => (this.resolveDone = r));
    this.watcher = watch(dir, (_ev, name) => {
      if (name && this.pending.has(name)) this.check(name);
    });
    this.sweep = setInterval(() => {
      for (const name of [...this.pending.keys()]) this.check(name);
    }, sweepMs);
  }

  get remaining(): number {
    return this.pending.size;
  }

  private check(name: string): void {
    const want = this.pending.get(name);
    if (want === undefined) return;
    const text = readText(join(this.dir, name));
    if (text === null || canonicalOfText(text) !== want) return;
    const now = performance.now();
    this.pending.delete(name);
    this.firstAt ??= now;
    this.lastAt = now;
    if (this.pending.size === 0) {
      this.close();
      this.resolveDone(now);
    }
  }

  close(): void {
    clearInterval(this.sweep);
    this.watcher.close();
  }

  /** Resolves when every file holds its content; rejects after `timeoutMs` with `explain()` appended. Closes the tracker. */
  async finish(timeoutMs: number, explain: () => string): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.done,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${this.remaining} of the files not there yet\n${explain()}`)), timeoutMs);
          timer.unref();
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.close();
    }
  }
}
