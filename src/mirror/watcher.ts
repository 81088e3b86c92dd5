import { watch, type FSWatcher } from 'chokidar';
import { basename, relative, sep } from 'node:path';
import type { Key } from '../stores/keys.js';
import { isTempName } from './atomic.js';
import type { FileTree } from './tree.js';

export interface TreeWatchOptions {
  /** Quiet time per key before it is reported; bursts of writes to one file become one report. */
  readonly debounceMs: number;
  /** Keys whose files changed (added, changed or removed). The callee re-reads them. */
  onKeys(keys: Key[]): void;
  /** A directory appeared or vanished: the callee should rescan everything. */
  onStructural?(): void;
  onReady?(): void;
  onError?(err: Error): void;
}

/**
 * chokidar keeps the first `change` event of a file and drops the others for 50 ms, with no
 * trailing event. A key is therefore checked once more after that window, and reported again
 * if its file changed since it was reported.
 */
const TRAILING_CHECK_MS = 60;

/** Only `config/config.yaml` and `auths/**` matter; dot-files, temp files and `.credsync/` never do. */
function ignoredPath(root: string, p: string): boolean {
  const rel = relative(root, p);
  if (rel === '') return false;
  const parts = rel.split(sep);
  if (parts.some((s) => s.startsWith('.') || s === '') || isTempName(basename(p))) return true;
  if (parts[0] === 'auths') return false;
  if (parts[0] === 'config') return parts.length > 2 || (parts.length === 2 && parts[1] !== 'config.yaml');
  return true;
}

/**
 * Watches a tree's `config/config.yaml` and `auths/` recursively, including directories created or
 * re-created after the start (the root itself is watched). chokidar reports only the first of a burst
 * of writes, so every event only (re)arms a per-key timer and the callee re-reads the file when it
 * fires. Returns an idempotent stop function.
 */
export async function watchTree(tree: FileTree, opts: TreeWatchOptions): Promise<() => Promise<void>> {
  const timers = new Map<Key, NodeJS.Timeout>();
  const trailing = new Map<Key, NodeJS.Timeout>();
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
  const touch = (path: string): void => {
    if (stopped) return;
    const key = tree.keyOfPath(path);
    if (!key) return;
    clearTimeout(timers.get(key));
    timers.set(
      key,
      setTimeout(() => {
        timers.delete(key);
        void report(key);
      }, opts.debounceMs),
    );
  };

  const watcher: FSWatcher = watch(tree.root, {
    ignoreInitial: true,
    persistent: true,
    followSymlinks: false,
    depth: 17,
    ignored: (p: string) => ignoredPath(tree.root, p),
  });
  watcher.on('add', touch).on('change', touch).on('unlink', touch);
  watcher.on('addDir', () => opts.onStructural?.());
  watcher.on('unlinkDir', () => opts.onStructural?.());
  watcher.on('error', (err) => opts.onError?.(err instanceof Error ? err : new Error(String(err))));
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  opts.onReady?.();

  return async () => {
    if (stopped) return;
    stopped = true;
    for (const t of [...timers.values(), ...trailing.values()]) clearTimeout(t);
    timers.clear();
    trailing.clear();
    await watcher.close();
  };
}
