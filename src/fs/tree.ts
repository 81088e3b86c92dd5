import { realpathSync, statSync } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { validateKey, keyProblem, type Key, CONFIG_KEY, RESERVED_PREFIX, MAX_KEY_BYTES, AUTH_PREFIX } from '../core/keys.js';
import { atomicWrite, ensureDir, FileRefusedError, fileKind, guardedRemove, guardedWrite, isTempName, readRegular, removeFile, type DurabilityOptions, type FileIdentity, type GuardedRemoveResult, type GuardedWriteOptions, type GuardedWriteResult } from './atomic.js';
import type { SkippedItem } from '../core/store.js';

export interface TreeFile {
  readonly key: Key;
  readonly path: string;
  /** A symlink whose target was checked to lie inside the tree (read it by path, not no-follow). */
  readonly link?: boolean;
}

/** A valid key whose path holds something that is not a readable item. */
export interface RejectedFile {
  readonly key: Key;
  readonly reason: string;
}

/** A directory the scan could not list: every key below `prefix` is unknown — neither present nor absent. */
export interface UnreadableDir {
  /** Key prefix ending in "/", e.g. `auths/team/` (`auths/` when auths/ itself could not be listed). */
  readonly prefix: string;
  readonly reason: string;
  /** The directory was listed by its parent but gone when read (removed or replaced meanwhile). */
  readonly vanished: boolean;
}

export interface TreeScanOptions {
  /**
   * true: a directory that cannot be listed is reported in `unreadable` (the caller treats the keys
   * below it as unknown). false (default): it fails the scan, as a caller that only knows "present"
   * and "absent" must never take its files for absent. A directory that vanished during the scan is
   * reported either way and fails nothing.
   */
  readonly unreadable?: boolean;
}

/** A directory could not be listed and the caller cannot represent unknown keys. */
export class UnreadableDirError extends Error {
  override name = 'UnreadableDirError';
  constructor(
    readonly root: string,
    readonly dirs: readonly UnreadableDir[],
  ) {
    super(`scan ${root}: cannot list ${dirs.map((d) => `${d.prefix} (${d.reason})`).join(', ')}`);
  }
}

/**
 * What a scan saw. Nothing the scan could not see or read is left out silently: a key is in `files`
 * (a regular file, or a link to one inside the tree), in `rejected` (present but not an item), or below
 * an `unreadable` prefix (unknown) — or it is truly absent.
 */
export interface TreeScan {
  readonly files: TreeFile[];
  /**
   * Names that are not valid keys (never items; reported), directories too deep to hold a valid key —
   * and, repeated from `rejected`, every rejected key, so a caller that knows only `skipped` (a store
   * listing) still reports them.
   */
  readonly skipped: SkippedItem[];
  /**
   * Valid keys present in the tree that are not readable items: a FIFO, socket or device, a directory,
   * a symlink that dangles or leaves the tree, an entry that could not be examined. Never read, never absent.
   */
  readonly rejected: RejectedFile[];
  /** Directories that could not be listed (EACCES, I/O error, replaced during the scan). */
  readonly unreadable: UnreadableDir[];
}

export interface FileTreeOptions {
  /**
   * Largest file read as an item; a bigger one is refused (FileRefusedError). Default: no limit here
   * (the directory store reads what it holds); the Mirror passes 1 MiB unless told otherwise
   * (`CREDSYNC_MAX_ITEM_BYTES`).
   */
  readonly maxItemBytes?: number;
}

/** Why an error stopped a read or a listing, without the path (messages name the key). */
export function errnoReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return `permission denied (${code})`;
  if (code === 'EIO') return 'I/O error (EIO)';
  if (code === 'ELOOP') return 'too many levels of symlinks (ELOOP)';
  return code ?? (err instanceof Error ? err.message : String(err));
}

class ContainmentError extends Error {
  override name = 'ContainmentError';
}

const isNotFound = (err: unknown): boolean => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
};

/**
 * The on-disk layout shared by the mirror and the directory store:
 * `config/config.yaml` and `auths/<id>`. Every path is derived from a validated key and checked
 * to resolve inside the root, so neither `..` nor a symlink can lead a read or write outside it.
 */
export class FileTree {
  private realRoot: string | undefined;
  readonly maxItemBytes: number;

  constructor(
    readonly root: string,
    o: FileTreeOptions = {},
  ) {
    this.maxItemBytes = o.maxItemBytes ?? Number.POSITIVE_INFINITY;
  }

  async init(): Promise<void> {
    await ensureDir(this.root);
    this.realRoot = await realpath(this.root);
  }

  /** Absolute path for a key; throws InvalidKeyError. Pure (no I/O). */
  pathOf(key: Key): string {
    validateKey(key);
    return join(this.root, ...key.split('/'));
  }

  private async rootReal(): Promise<string> {
    this.realRoot ??= await realpath(this.root);
    return this.realRoot;
  }

  private async inside(p: string): Promise<boolean> {
    const root = await this.rootReal();
    return p === root || p.startsWith(root + sep);
  }

  /** Throws when an existing component of `path` resolves outside the root (a symlink out). */
  private async assertContained(key: Key, path: string): Promise<void> {
    let probe = path;
    for (;;) {
      try {
        const real = realpathSync(probe);
        if (!(await this.inside(real))) throw new ContainmentError(`${key}: resolves outside ${this.root} (symlink)`);
        return;
      } catch (err) {
        if (!isNotFound(err)) throw err;
        const parent = join(probe, '..');
        if (parent === probe) return;
        probe = parent;
      }
    }
  }

  /**
   * Bytes of `key`, or null when it does not exist (or is a directory). A symlink is followed only
   * inside the tree. Throws FileRefusedError for a FIFO, socket or device (opened without blocking),
   * a file larger than `maxItemBytes`, or a link leading out of the tree.
   */
  async read(key: Key): Promise<Uint8Array | null> {
    const path = this.pathOf(key);
    try {
      await this.assertContained(key, path);
    } catch (err) {
      if (isNotFound(err)) return null;
      if (err instanceof ContainmentError) throw new FileRefusedError('symlink pointing outside the mirror', 'outside');
      throw err;
    }
    try {
      return await readRegular(path, { follow: true, maxBytes: this.maxItemBytes });
    } catch (err) {
      if (isNotFound(err)) return null;
      if (err instanceof FileRefusedError && err.kind === 'directory') return null;
      throw err;
    }
  }

  /**
   * Bytes of a file found by `scan` (already known to be inside the tree), or null when it vanished.
   * A regular file is opened without following links; one swapped for a symlink since the scan is read
   * through `read` (followed only inside the tree). Throws FileRefusedError like `read`.
   */
  async readScanned(f: TreeFile): Promise<Uint8Array | null> {
    if (f.link) return this.read(f.key);
    try {
      return await readRegular(f.path, { maxBytes: this.maxItemBytes });
    } catch (err) {
      if (isNotFound(err)) return null;
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') return this.read(f.key);
      throw err;
    }
  }

  /** Atomic write (0600 file, 0700 directories). */
  async write(key: Key, data: Uint8Array, o?: DurabilityOptions): Promise<void> {
    const path = this.pathOf(key);
    await this.assertContained(key, path);
    await atomicWrite(path, data, o);
  }

  /** Atomic write that refuses to replace anything but the file identified by `expected` (null: absent). See `guardedWrite`. */
  async writeGuarded(key: Key, data: Uint8Array, expected: FileIdentity | null, o?: GuardedWriteOptions): Promise<GuardedWriteResult> {
    const path = this.pathOf(key);
    await this.assertContained(key, path);
    return guardedWrite(path, data, expected, o);
  }

  /** Removes `key` only if it is still the file identified by `expected`. See `guardedRemove`. */
  async removeGuarded(key: Key, expected: FileIdentity, o?: DurabilityOptions & Pick<GuardedWriteOptions, 'verify'>): Promise<GuardedRemoveResult> {
    const path = this.pathOf(key);
    await this.assertContained(key, path);
    return guardedRemove(path, expected, o);
  }

  /** Removes `key`; missing is success. Returns whether a file was removed. */
  async remove(key: Key, o?: DurabilityOptions): Promise<boolean> {
    const path = this.pathOf(key);
    await this.assertContained(key, path);
    return removeFile(path, o);
  }

  async statOf(key: Key): Promise<import('node:fs').BigIntStats | null> {
    try {
      // Synchronous: microseconds, where an asynchronous stat is a thread-pool round trip (see readRegular).
      return statSync(this.pathOf(key), { bigint: true, throwIfNoEntry: false }) ?? null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** Key for an absolute path inside the tree, or null when the path is not an item location. */
  keyOfPath(path: string): Key | null {
    const rel = relative(this.root, path).split(sep).join('/');
    if (rel === CONFIG_KEY) return rel;
    if (!rel.startsWith('auths/')) return null;
    return keyProblem(rel) === null ? rel : null;
  }

  /**
   * Number of auth items present under auths/, readable or not (0 when the directory is missing).
   * 0 as well when part of auths/ cannot be listed: the emptied-mirror guard then refuses deletions,
   * which is the safe answer when the mirror cannot be seen whole.
   */
  async countAuthFiles(): Promise<number> {
    const scan = await this.scanAuths();
    if (scan.unreadable.some((u) => !u.vanished)) return 0;
    return scan.files.length + scan.rejected.length;
  }

  /**
   * Every item in the tree, at any depth a key can reach (a key is at most 255 bytes). What cannot be
   * read is reported, never left out: see TreeScan.
   */
  async scan(o: TreeScanOptions = {}): Promise<TreeScan> {
    const files: TreeFile[] = [];
    const skipped: SkippedItem[] = [];
    const rejected: RejectedFile[] = [];
    const unreadable: UnreadableDir[] = [];
    const cfg = join(this.root, 'config', 'config.yaml');
    try {
      const st = await lstat(cfg);
      const judged = await this.judgeEntry(CONFIG_KEY, cfg, st);
      if ('file' in judged) files.push(judged.file);
      else rejected.push(judged.rejected);
    } catch (err) {
      if (!isNotFound(err)) rejected.push({ key: CONFIG_KEY, reason: `cannot read: ${errnoReason(err)}` });
    }
    const auths = await this.scanAuths();
    files.push(...auths.files);
    skipped.push(...auths.skipped);
    rejected.push(...auths.rejected);
    unreadable.push(...auths.unreadable);
    for (const r of rejected) skipped.push({ id: r.key, reason: r.reason });
    const hard = unreadable.filter((u) => !u.vanished);
    if (hard.length > 0 && !o.unreadable) throw new UnreadableDirError(this.root, hard);
    return { files, skipped, rejected, unreadable };
  }

  /** A valid key's directory entry: a file to read, or why it is not one. */
  private async judgeEntry(
    key: Key,
    full: string,
    st: { isFile(): boolean; isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSymbolicLink(): boolean },
  ): Promise<{ file: TreeFile } | { rejected: RejectedFile }> {
    if (st.isFile()) return { file: { key, path: full } };
    if (!st.isSymbolicLink()) return { rejected: { key, reason: `not a regular file (${fileKind(st)})` } };
    let real: string;
    try {
      real = await realpath(full);
    } catch (err) {
      return { rejected: { key, reason: isNotFound(err) ? 'symlink to a missing file' : `cannot resolve the symlink: ${errnoReason(err)}` } };
    }
    if (!(await this.inside(real))) return { rejected: { key, reason: 'symlink pointing outside the mirror' } };
    try {
      const target = await stat(real);
      if (!target.isFile()) return { rejected: { key, reason: `symlink to ${fileKind(target)}, not a regular file` } };
    } catch (err) {
      return { rejected: { key, reason: isNotFound(err) ? 'symlink to a missing file' : `cannot read: ${errnoReason(err)}` } };
    }
    return { file: { key, path: full, link: true } };
  }

  /** Walks auths/ with an explicit stack (no recursion, no depth limit but the key length). */
  private async scanAuths(): Promise<TreeScan> {
    const files: TreeFile[] = [];
    const skipped: SkippedItem[] = [];
    const rejected: RejectedFile[] = [];
    const unreadable: UnreadableDir[] = [];
    const authsDir = join(this.root, 'auths');
    const pending: { dir: string; rel: string }[] = [{ dir: authsDir, rel: AUTH_PREFIX.slice(0, -1) }];
    while (pending.length > 0) {
      const { dir, rel: dirRel } = pending.pop()!;
      let names: import('node:fs').Dirent[];
      try {
        names = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (dir === authsDir && isNotFound(err)) continue; // no auths/ at all
        const vanished = isNotFound(err);
        unreadable.push({ prefix: `${dirRel}/`, reason: vanished ? 'removed or replaced during the scan' : `cannot list the directory: ${errnoReason(err)}`, vanished });
        continue;
      }
      for (const d of names) {
        const full = join(dir, d.name);
        const rel = `${dirRel}/${d.name}`;
        if (d.isDirectory()) {
          if (d.name.toLowerCase().startsWith(RESERVED_PREFIX)) continue;
          // The shortest key below it is `<rel>/.json`: past 255 bytes no valid key can live there.
          if (Buffer.byteLength(rel, 'utf8') + '/.json'.length > MAX_KEY_BYTES) {
            skipped.push({ id: `${rel}/`, reason: `directory too deep for any key (keys are at most ${MAX_KEY_BYTES} bytes); its files are not synced` });
            continue;
          }
          if (keyProblem(rel) === null) rejected.push({ key: rel, reason: 'not a regular file (a directory)' });
          pending.push({ dir: full, rel });
          continue;
        }
        if (isTempName(d.name) || !d.name.toLowerCase().endsWith('.json')) continue;
        const problem = keyProblem(rel);
        if (problem) {
          skipped.push({ id: rel, reason: problem });
          continue;
        }
        const judged = await this.judgeEntry(rel, full, d);
        if ('file' in judged) files.push(judged.file);
        else rejected.push(judged.rejected);
      }
    }
    const byKey = <T extends { key: Key }>(a: T, b: T): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    files.sort(byKey);
    rejected.sort(byKey);
    unreadable.sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0));
    return { files, skipped, rejected, unreadable };
  }
}
