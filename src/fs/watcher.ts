import { watch as fsWatch, type FSWatcher } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import { CONFIG_KEY, RESERVED_PREFIX, type Key } from '../core/keys.js';
import { isTempName } from './atomic.js';
import type { FileTree } from './tree.js';

export interface TreeWatchOptions {
  /** Quiet time per key before it is reported; bursts of writes to one file become one report. */
  readonly debounceMs: number;
  /** Keys whose files changed (added, changed or removed), after their quiet time. The callee re-reads them. */
  onKeys(keys: Key[]): void;
  /**
   * Credential files that just appeared by a rename (how every atomic writer, CLIProxyAPI included,
   * replaces a file): probably complete, so the callee may read them at once instead of after the quiet
   * time — but must say nothing if the content is not valid yet, because the quiet-time report follows
   * anyway. Never called for `config/config.yaml` (a half-written YAML file can be valid).
   */
  onRenamed?(keys: Key[]): void;
  /** A directory appeared or vanished, or an event could not be attributed: rescan everything. */
  onStructural?(): void;
  onReady?(): void;
  onError?(err: Error): void;
}

/**
 * A key is checked once more this long after it was reported, and reported again if its file
 * changed meanwhile: a write landing while the callee reads must never be the last one seen.
 */
const TRAILING_CHECK_MS = 60;

/**
 * The config's quiet time (at least): unlike a credential, a `config.yaml` cut short while it is being
 * written in place is often valid YAML, so it waits longer than a credential — configs change rarely.
 */
export const CONFIG_QUIET_MS = 1000;

/**
 * Only `config/config.yaml` and `auths/**` matter; temp files and anything under a `.credsync*` segment
 * never do. Dot-files below `auths/` are credentials like any other (CLIProxyAPI loads them).
 */
function ignoredPath(root: string, p: string): boolean {
  const rel = relative(root, p);
  if (rel === '') return false;
  const parts = rel.split(sep);
  if (parts.some((s) => s === '' || s.toLowerCase().startsWith(RESERVED_PREFIX)) || isTempName(basename(p))) return true;
  if (parts[0] === 'auths') return false;
  if (parts[0] === 'config') return parts.length > 2 || (parts.length === 2 && parts[1] !== 'config.yaml');
  return true;
}

/**
 * Watches a tree's `config/config.yaml` and `auths/` recursively with one `fs.watch` (inotify) per
 * directory: the root, `config/`, `auths/` and each directory below it, added and dropped as they
 * come and go. (chokidar was measured re-listing a whole directory on every event: 71 ms of CPU per
 * rewrite at 1,000 credentials.) Every event only (re)arms a per-key timer; the callee re-reads the
 * file when it fires. Symlinked directories are not followed. Returns an idempotent stop function.
 */
export async function watchTree(tree: FileTree, opts: TreeWatchOptions): Promise<() => Promise<void>> {
  const root = tree.root;
  const timers = new Map<Key, NodeJS.Timeout>();
  const trailing = new Map<Key, NodeJS.Timeout>();
  // Each watched directory with the inode it was armed on: a directory replaced under the same name
  // (`rm -rf auths && mkdir auths`, what CLIProxyAPI's store does at start-up) gets a new watch.
  const watchers = new Map<string, { w: FSWatcher; ino: bigint }>();
  const due = new Set<Key>();
  let flushQueued = false;
  let stopped = false;

  const signature = async (key: Key): Promise<string> => {
    const st = await tree.statOf(key).catch(() => null);
    return st ? `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : 'absent';
  };
  const flush = (): void => {
    flushQueued = false;
    if (stopped || due.size === 0) return;
    const keys = [...due];
    due.clear();
    opts.onKeys(keys);
  };
  const report = async (key: Key): Promise<void> => {
    const sig = await signature(key);
    if (stopped) return;
    due.add(key);
    // Keys that fall due in the same turn are reported together (one reconcile pass).
    if (!flushQueued) {
      flushQueued = true;
      setImmediate(flush);
    }
    clearTimeout(trailing.get(key));
    trailing.set(
      key,
      setTimeout(() => {
        trailing.delete(key);
        void signature(key).then((now) => {
          if (now !== sig && !timers.has(key)) void report(key);
        });
      }, TRAILING_CHECK_MS),
    );
  };
  const renamed = new Set<Key>();
  let renamedQueued = false;
  const fast = async (key: Key): Promise<void> => {
    if (!opts.onRenamed || key === CONFIG_KEY) return;
    if ((await signature(key)) === 'absent' || stopped) return;
    renamed.add(key);
    if (!renamedQueued) {
      renamedQueued = true;
      setImmediate(() => {
        renamedQueued = false;
        if (stopped || renamed.size === 0) return;
        const keys = [...renamed];
        renamed.clear();
        opts.onRenamed?.(keys);
      });
    }
  };
  const touch = (key: Key): void => {
    if (stopped) return;
    clearTimeout(timers.get(key));
    timers.set(
      key,
      setTimeout(
        () => {
          timers.delete(key);
          void report(key);
        },
        key === CONFIG_KEY ? Math.max(opts.debounceMs, CONFIG_QUIET_MS) : opts.debounceMs,
      ),
    );
  };

  const unwatch = (dir: string): void => {
    for (const [d, { w }] of watchers) {
      if (d === dir || d.startsWith(dir + sep)) {
        w.close();
        watchers.delete(d);
      }
    }
  };

  /** Watches `dir` (if it is a real directory) and, below `auths/`, its subdirectories. */
  const watchDir = async (dir: string): Promise<void> => {
    if (stopped) return;
    const st = await lstat(dir, { bigint: true }).catch(() => null);
    if (!st?.isDirectory()) return;
    const current = watchers.get(dir);
    if (current && current.ino === st.ino) {
      // Still the same directory; its subdirectories may have been replaced.
      if (dir !== root) await armChildren(dir);
      return;
    }
    if (current) unwatch(dir); // replaced: the old watch sees a deleted inode and would stay blind
    let w: FSWatcher;
    try {
      w = fsWatch(dir, { persistent: true }, (event, name) => void onEvent(dir, name === null ? null : String(name), event));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      opts.onError?.(err as Error);
      return;
    }
    w.on('error', (err) => {
      // An error of a watch already replaced (the directory was re-created) must not close its successor.
      if (watchers.get(dir)?.w !== w) return;
      unwatch(dir);
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'EPERM') opts.onError?.(err);
      opts.onStructural?.();
    });
    watchers.set(dir, { w, ino: st.ino });
    if (dir === root) return;
    await armChildren(dir);
  };

  const armChildren = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory() && !ignoredPath(root, p)) await watchDir(p);
    }
  };

  const reportWithin = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
    for (const e of entries) {
      const p = join(e.parentPath, e.name);
      const key = e.isFile() && !ignoredPath(root, p) ? tree.keyOfPath(p) : null;
      if (key) touch(key);
    }
  };

  const onEvent = async (dir: string, name: string | null, event: string = 'change'): Promise<void> => {
    if (stopped) return;
    if (name === null) return opts.onStructural?.();
    const p = join(dir, name);
    if (ignoredPath(root, p)) return;
    const key = tree.keyOfPath(p);
    if (key) {
      // A name appearing (`rename`: moved in, or created) may be read at once; writes in place
      // (`change`) wait for their quiet time. The quiet-time report follows in both cases.
      if (event === 'rename') void fast(key);
      touch(key);
      return;
    }
    // Not an item: a directory (config/, auths/ or one below it) appeared or vanished.
    const st = await lstat(p).catch(() => null);
    if (st?.isDirectory()) {
      await watchDir(p);
      // Files written into it before its watch was attached produced no event of their own.
      await reportWithin(p);
    } else if (!st && watchers.has(p)) {
      unwatch(p);
    } else {
      // A file that is not an item (another writer's temp file, renamed away by now, or a stray
      // name): nothing to reconcile. Taking its vanishing for a directory's cost a full pass per write.
      return;
    }
    opts.onStructural?.();
  };

  try {
    await watchDir(root);
    await watchDir(join(root, 'config'));
    await watchDir(join(root, 'auths'));
  } catch (err) {
    for (const { w } of watchers.values()) w.close();
    throw err;
  }
  opts.onReady?.();

  return async () => {
    if (stopped) return;
    stopped = true;
    for (const t of [...timers.values(), ...trailing.values()]) clearTimeout(t);
    timers.clear();
    trailing.clear();
    for (const { w } of watchers.values()) w.close();
    watchers.clear();
  };
}
