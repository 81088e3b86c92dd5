import { dirname, join } from 'node:path';
import type { Key } from '../core/keys.js';
import type { SkippedItem } from '../core/store.js';
import { atomicWrite, ensureDir, fsyncDir } from '../fs/atomic.js';
import { forEachLimit } from '../core/limit.js';
import { validateContent } from '../core/canonical.js';
import { FileTree, type TreeFile } from '../fs/tree.js';

/** What the mirror holds for one key. */
export type LocalState =
  | { readonly present: false }
  | { readonly present: true; readonly valid: true; readonly hash: string }
  | { readonly present: true; readonly valid: false; readonly reason: string };

export interface MirrorScan {
  readonly items: Map<Key, LocalState>;
  readonly skipped: SkippedItem[];
}

interface CacheEntry {
  readonly sig: string;
  readonly state: LocalState;
}

const ABSENT: LocalState = { present: false };
/** File-system calls in flight during a scan: the thread pool, not the disk, is the limit. */
const SCAN_PARALLEL = 32;

/**
 * The local directory the proxy reads. Owns `<root>/.credsync/` (state and conflicts) too.
 * A stat-signature cache (inode, size, mtime, ctime in ns) spares re-hashing unchanged files on rescans;
 * reads triggered by the watcher bypass it.
 */
export class Mirror {
  readonly tree: FileTree;
  readonly stateDir: string;
  readonly conflictsDir: string;
  private readonly cache = new Map<Key, CacheEntry>();
  private readonly dirsToSync = new Set<string>();

  constructor(readonly root: string) {
    this.tree = new FileTree(root);
    this.stateDir = join(root, '.credsync');
    this.conflictsDir = join(this.stateDir, 'conflicts');
  }

  /** Creates the root, `config/`, `auths/` and `.credsync/` (0700) when missing, so a proxy finds its layout on a fresh volume. */
  async init(): Promise<void> {
    await this.tree.init();
    await ensureDir(this.stateDir);
    await ensureDir(join(this.root, 'config'));
    await ensureDir(join(this.root, 'auths'));
  }

  /**
   * Reads and judges one key. `fresh` skips the cache. `scanned` is the file as found by a scan
   * (known to be inside the mirror), read without re-resolving its path. Never throws for a missing file.
   */
  async inspect(key: Key, fresh = true, scanned?: TreeFile): Promise<{ state: LocalState; data?: Uint8Array }> {
    const st = await this.tree.statOf(key);
    if (!st || !st.isFile()) {
      this.cache.delete(key);
      return { state: ABSENT };
    }
    const sig = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    const cached = this.cache.get(key);
    if (!fresh && cached && cached.sig === sig) return { state: cached.state };
    const data = scanned ? await this.tree.readScanned(scanned) : await this.tree.read(key);
    if (!data) {
      this.cache.delete(key);
      return { state: ABSENT };
    }
    const v = validateContent(key, data);
    const state: LocalState = v.ok ? { present: true, valid: true, hash: v.hash } : { present: true, valid: false, reason: v.reason };
    this.cache.set(key, { sig, state });
    return { state, data };
  }

  async read(key: Key): Promise<Uint8Array | null> {
    return this.tree.read(key);
  }

  /** Every item, judged. Uses the stat cache; files are read in parallel. */
  async scan(): Promise<MirrorScan> {
    const { files, skipped } = await this.tree.scan();
    const states = new Map<Key, LocalState>();
    await forEachLimit(files, SCAN_PARALLEL, async (f) => {
      const { state } = await this.inspect(f.key, false, f);
      if (state.present) states.set(f.key, state);
    });
    const items = new Map<Key, LocalState>();
    for (const f of files) if (states.has(f.key)) items.set(f.key, states.get(f.key)!);
    for (const k of [...this.cache.keys()]) if (!items.has(k)) this.cache.delete(k);
    return { items, skipped };
  }

  /**
   * Atomically writes content whose canonical hash the caller already knows. The directory is
   * fsynced by the next `flush()` (once per directory per pass, not once per file).
   */
  async write(key: Key, data: Uint8Array, hash: string): Promise<void> {
    await this.tree.write(key, data, { syncDir: false });
    this.dirsToSync.add(dirname(this.tree.pathOf(key)));
    const st = await this.tree.statOf(key);
    if (st) this.cache.set(key, { sig: `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`, state: { present: true, valid: true, hash } });
  }

  async remove(key: Key): Promise<void> {
    if (await this.tree.remove(key, { syncDir: false })) this.dirsToSync.add(dirname(this.tree.pathOf(key)));
    this.cache.delete(key);
  }

  /** Makes the renames and removals of `write`/`remove` durable: fsyncs each touched directory once. */
  async flush(): Promise<void> {
    const dirs = [...this.dirsToSync];
    this.dirsToSync.clear();
    await forEachLimit(dirs, SCAN_PARALLEL, (d) => fsyncDir(d).catch(() => {}));
  }

  /**
   * Keeps the losing copy of a conflict under `.credsync/conflicts/` (outside `auths/`, so the proxy
   * never loads it). Returns the file's path.
   */
  async keepConflict(key: Key, side: 'local' | 'store', data: Uint8Array): Promise<string> {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const path = join(this.conflictsDir, `${stamp}.${side}.${key.replace(/\//g, '__')}`);
    await atomicWrite(path, data);
    return path;
  }

}
