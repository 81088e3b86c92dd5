import { watch, type FSWatcher } from 'chokidar';
import { basename, join, relative, sep } from 'node:path';
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
 * Watches `config/` and `auths/` of a tree recursively. chokidar reports only the first of a burst of
 * writes, so every event only (re)arms a per-key timer and the callee re-reads the file when it fires.
 * Temp files and `.credsync/` are ignored. Returns an idempotent stop function.
 */
export async function watchTree(tree: FileTree, opts: TreeWatchOptions): Promise<() => Promise<void>> {
  const timers = new Map<Key, NodeJS.Timeout>();
  const due = new Set<Key>();
  let flushQueued = false;
  let stopped = false;

  const flush = (): void => {
    flushQueued = false;
    if (stopped || due.size === 0) return;
    const keys = [...due];
    due.clear();
    opts.onKeys(keys);
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
        due.add(key);
        // Keys that fall due in the same turn are reported together (one reconcile pass).
        if (!flushQueued) {
          flushQueued = true;
          setImmediate(flush);
        }
      }, opts.debounceMs),
    );
  };

  const stateDir = join(tree.root, '.credsync');
  const watcher: FSWatcher = watch([join(tree.root, 'config'), join(tree.root, 'auths')], {
    ignoreInitial: true,
    persistent: true,
    followSymlinks: false,
    depth: 16,
    ignored: (p: string) => {
      if (p === stateDir || p.startsWith(stateDir + sep)) return true;
      const name = basename(p);
      return isTempName(name) || (name.startsWith('.') && relative(tree.root, p) !== '');
    },
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
    for (const t of timers.values()) clearTimeout(t);
    timers.clear();
    await watcher.close();
  };
}
