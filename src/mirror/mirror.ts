import { dirname, join } from 'node:path';
import type { Key } from '../core/keys.js';
import type { SkippedItem } from '../core/store.js';
import { lstat } from 'node:fs/promises';
import { atomicWrite, DEFAULT_MAX_ITEM_BYTES, ensureDir, FileRefusedError, fileKind, fsyncDir, identityOf, type FileIdentity } from '../fs/atomic.js';
import { forEachLimit } from '../core/limit.js';
import { validateContent } from '../core/canonical.js';
import { errnoReason, FileTree, type FileTreeOptions, type TreeFile, type UnreadableDir } from '../fs/tree.js';

export type { FileIdentity } from '../fs/atomic.js';

/** What the mirror holds for one key. */
export type LocalState =
  | { readonly present: false }
  | { readonly present: true; readonly valid: true; readonly hash: string; readonly id?: FileIdentity }
  | { readonly present: true; readonly valid: false; readonly reason: string; readonly id?: FileIdentity };

/**
 * The identity of the file a LocalState was judged from (stat before the read: a file changed after the
 * stat only makes a later guarded write re-plan); null when absent; undefined when unknown.
 */
export function identityOfState(s: LocalState): FileIdentity | null | undefined {
  return s.present ? s.id : null;
}

/**
 * Attaches the identity as a non-enumerable property: it travels with the state to the planner but
 * never into JSON (it holds bigints), logs, or structural comparisons of states.
 */
function withIdentity<T extends LocalState>(s: T, id: FileIdentity): T {
  Object.defineProperty(s, 'id', { value: id, enumerable: false });
  return s;
}

/**
 * The outcome of a guarded mirror write: `written`; `changed` (nothing written: the file was no longer
 * the one planned against — re-plan); `replaced` (written, but what it replaced was a newer local write:
 * its bytes, to be kept and re-decided; null when they could not be read back).
 */
export type MirrorWriteResult =
  | { readonly status: 'written'; readonly identity: FileIdentity | null }
  | { readonly status: 'changed' }
  | { readonly status: 'replaced'; readonly identity: FileIdentity | null; readonly replaced: Uint8Array | null };

export interface MirrorScan {
  /**
   * Every key present in the mirror, judged. Present-but-unusable keys (a FIFO, socket or device under a
   * credential's name, a file over the size limit, a mode-000 file, a dangling symlink …) are here as
   * `valid: false` with the reason — never missing, so never taken for a deletion.
   */
  readonly items: Map<Key, LocalState>;
  /** Names that are not valid keys, and directories too deep for any key: reported, never items. */
  readonly skipped: SkippedItem[];
  /**
   * Directories the scan could not list. A key below one of these prefixes that is not in `items` is
   * unknown, not absent: pass the keys you know about as `scan({ known })` and they are inspected one
   * by one (see `unreadableReason`).
   */
  readonly unreadable: UnreadableDir[];
}

export interface MirrorScanOptions {
  /**
   * Keys the caller knows of (store listing, base). Those below a directory that could not be listed
   * (or vanished during the scan) are inspected individually, so such a file is still judged: present,
   * absent, or present-but-unreadable. Without `known`, a directory that cannot be listed fails the
   * scan (UnreadableDirError) rather than have its files taken for absent.
   */
  readonly known?: Iterable<Key>;
}

/** The reason `key` lies in a directory the scan could not list, or null. */
export function unreadableReason(scan: Pick<MirrorScan, 'unreadable'>, key: Key): string | null {
  const u = scan.unreadable.find((d) => key.startsWith(d.prefix));
  return u ? `${u.prefix}: ${u.reason}` : null;
}

interface CacheEntry {
  readonly sig: string;
  readonly state: LocalState;
}

const ABSENT: LocalState = { present: false };
/** A file's stat signature (inode, size, mtime and ctime in ns) as a string: what the cache and `Mirror.remembered` compare. */
export function signatureOf(id: FileIdentity): string {
  return `${id.ino}:${id.size}:${id.mtimeNs}:${id.ctimeNs}`;
}
const sigOf = (st: import('node:fs').BigIntStats): string => signatureOf(identityOf(st));
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

  private readonly statCache: boolean;
  /**
   * What the caller remembers of a key's file from the last sync (its signature and content hash; the
   * engine keeps them in the state): a file whose signature is unchanged is not read again on a scan,
   * also after a restart, when the in-memory cache is empty.
   */
  remembered?: (key: Key) => { readonly sig: string; readonly hash: string } | undefined;

  /**
   * `maxItemBytes`: a local file larger than this is an invalid item (default 1 MiB). `statCache:
   * false` for one-shot commands, which scan once: the cache would only hold memory per file.
   */
  constructor(
    readonly root: string,
    o: FileTreeOptions & { statCache?: boolean } = {},
  ) {
    this.statCache = o.statCache ?? true;
    this.tree = new FileTree(root, { maxItemBytes: o.maxItemBytes ?? DEFAULT_MAX_ITEM_BYTES });
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
   * (known to be inside the mirror), read without re-resolving its path. Never throws for a file that
   * is missing (absent) or cannot be used: a FIFO, socket or device (never opened blocking), a file over
   * the size limit, one that cannot be read (EACCES …), a dangling symlink — those are present and
   * invalid, with the reason, and never cached.
   */
  async inspect(key: Key, fresh = true, scanned?: TreeFile): Promise<{ state: LocalState; data?: Uint8Array }> {
    let st: import('node:fs').BigIntStats | null;
    try {
      st = await this.tree.statOf(key);
    } catch (err) {
      return this.unusable(key, `cannot read: ${errnoReason(err)}`);
    }
    if (!st) {
      // stat follows links: a link to nothing is there all the same.
      const l = await lstat(this.tree.pathOf(key)).catch(() => null);
      if (l?.isSymbolicLink()) return this.unusable(key, 'symlink to a missing file');
      this.cache.delete(key);
      return { state: ABSENT };
    }
    if (!st.isFile()) return this.unusable(key, `not a regular file (${fileKind(st)})`);
    const sig = sigOf(st);
    const cached = this.cache.get(key);
    if (!fresh && cached && cached.sig === sig) return { state: cached.state };
    if (!fresh) {
      const known = this.remembered?.(key);
      if (known && known.sig === sig) {
        const state = withIdentity({ present: true, valid: true, hash: known.hash } as const, identityOf(st));
        if (this.statCache) this.cache.set(key, { sig, state });
        return { state };
      }
    }
    let data: Uint8Array | null;
    try {
      data = scanned ? await this.tree.readScanned(scanned) : await this.tree.read(key);
    } catch (err) {
      return this.unusable(key, err instanceof FileRefusedError ? err.reason : `cannot read: ${errnoReason(err)}`);
    }
    if (!data) {
      this.cache.delete(key);
      return { state: ABSENT };
    }
    const v = validateContent(key, data);
    const id = identityOf(st);
    const state: LocalState = withIdentity(v.ok ? { present: true, valid: true, hash: v.hash } : { present: true, valid: false, reason: v.reason }, id);
    if (this.statCache) this.cache.set(key, { sig, state });
    return { state, data };
  }

  private unusable(key: Key, reason: string): { state: LocalState } {
    this.cache.delete(key);
    return { state: { present: true, valid: false, reason } };
  }

  async read(key: Key): Promise<Uint8Array | null> {
    return this.tree.read(key);
  }

  /**
   * Every item, judged. Uses the stat cache; files are read in parallel. Present-but-unusable entries
   * are items with `valid: false`; keys below a directory the scan could not list are inspected one by
   * one when the caller names them in `known`.
   */
  async scan(o: MirrorScanOptions = {}): Promise<MirrorScan> {
    // Without `known` the caller cannot tell unknown from absent: a directory that cannot be listed fails the scan.
    const { files, skipped, rejected, unreadable } = await this.tree.scan({ unreadable: o.known !== undefined });
    const states = new Map<Key, LocalState>();
    await forEachLimit(files, SCAN_PARALLEL, async (f) => {
      const { state } = await this.inspect(f.key, false, f);
      if (state.present) states.set(f.key, state);
    });
    for (const r of rejected) states.set(r.key, { present: true, valid: false, reason: r.reason });
    if (unreadable.length > 0 && o.known) {
      const hidden = [...new Set(o.known)].filter((k) => !states.has(k) && unreadableReason({ unreadable }, k) !== null);
      await forEachLimit(hidden, SCAN_PARALLEL, async (k) => {
        const { state } = await this.inspect(k, true);
        if (state.present) states.set(k, state);
      });
    }
    const items = new Map<Key, LocalState>();
    for (const k of [...states.keys()].sort()) items.set(k, states.get(k)!);
    for (const k of [...this.cache.keys()]) if (!items.has(k)) this.cache.delete(k);
    // Rejected keys are items (present, invalid), not skipped names.
    const rejectedKeys = new Set(rejected.map((r) => r.key));
    return { items, skipped: skipped.filter((x) => !rejectedKeys.has(x.id)), unreadable };
  }

  /**
   * Atomically writes content whose canonical hash the caller already knows. The directory is
   * fsynced by the next `flush()` (once per directory per pass, not once per file).
   *
   * `expected` (the identity observed when planning, `identityOfState`; null: absent) guards the write:
   * it replaces only that file (see `guardedWrite` for the protocol and its one remaining window).
   * `expectedHash`, the content hash planned against, is checked on the replaced file as well, since an
   * identity can repeat (inode reuse within one timestamp tick). Without `expected` the write is unconditional.
   */
  async write(key: Key, data: Uint8Array, hash: string, expected?: FileIdentity | null, expectedHash?: string): Promise<MirrorWriteResult> {
    if (expected === undefined) {
      await this.tree.write(key, data, { syncDir: false });
      this.dirsToSync.add(dirname(this.tree.pathOf(key)));
      const st = await this.tree.statOf(key);
      if (st && this.statCache) this.cache.set(key, { sig: sigOf(st), state: withIdentity({ present: true, valid: true, hash }, identityOf(st)) });
      return { status: 'written', identity: st ? identityOf(st) : null };
    }
    // The replaced file's content is checked too when the caller knows what it planned against (see GuardedWriteOptions.verify).
    const r = await this.tree.writeGuarded(key, data, expected, { syncDir: false, verify: this.verifier(key, expectedHash) });
    if (r.status === 'changed') return r;
    this.dirsToSync.add(dirname(this.tree.pathOf(key)));
    if (r.identity && this.statCache) this.cache.set(key, { sig: signatureOf(r.identity), state: withIdentity({ present: true, valid: true, hash }, r.identity) });
    else this.cache.delete(key);
    return r;
  }

  /**
   * Removes a key's file. With `expected` (its identity when planned), only that file is removed:
   * `changed` when another one is there now (left in place).
   */
  async remove(key: Key, expected?: FileIdentity | null, expectedHash?: string): Promise<'removed' | 'changed'> {
    this.cache.delete(key);
    if (expected === undefined || expected === null) {
      if (await this.tree.remove(key, { syncDir: false })) this.dirsToSync.add(dirname(this.tree.pathOf(key)));
      return 'removed';
    }
    const r = await this.tree.removeGuarded(key, expected, { syncDir: false, verify: this.verifier(key, expectedHash) });
    this.dirsToSync.add(dirname(this.tree.pathOf(key)));
    return r.status;
  }

  private verifier(key: Key, expectedHash: string | undefined): ((b: Buffer) => boolean) | undefined {
    if (expectedHash === undefined) return undefined;
    return (b) => {
      const v = validateContent(key, b);
      return v.ok && v.hash === expectedHash;
    };
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
