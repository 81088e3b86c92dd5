import { open, rename, unlink, mkdir, chmod } from 'node:fs/promises';
import { closeSync, constants, fstatSync, fsync, linkSync, lstatSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';

const fsyncFd = promisify(fsync);

export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;
/** Temp files start with this and end in `.tmp`: the proxy only loads `*.json` / `config.yaml`. */
export const TEMP_PREFIX = '.credsync-';
export const TEMP_SUFFIX = '.tmp';

/** A fresh temp-style name in `dir` (the proxy, the scanner and the watcher ignore such names). */
const tempPathIn = (dir: string): string => join(dir, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX) && name.endsWith(TEMP_SUFFIX);
}

/** mkdir -p with 0700 for every directory it creates. Idempotent. */
export async function ensureDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface DurabilityOptions {
  /**
   * false: the caller fsyncs the directory itself later (see `Mirror.flush`), so a pass writing
   * many files in one directory syncs it once. The rename is visible to readers either way.
   */
  readonly syncDir?: boolean;
}

/**
 * Creates a new temp file (0600: created with that mode, which a umask can only narrow) in `dir`,
 * creating `dir` (0700) only when it is missing — a write into an existing directory costs no mkdir.
 */
async function openTemp(dir: string): Promise<{ fd: number; tmp: string }> {
  const tmp = tempPathIn(dir);
  try {
    return { fd: openSync(tmp, 'wx', FILE_MODE), tmp };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await ensureDir(dir);
    return { fd: openSync(tmp, 'wx', FILE_MODE), tmp };
  }
}

/**
 * Writes all of `data` to a new temp file's descriptor and makes it durable. Opening, writing into
 * the page cache and closing are synchronous (microseconds; see `readRegular`); only the fsync, which
 * waits for the disk, goes to the thread pool, so concurrent writers still overlap their fsyncs.
 */
async function fillDurably(fd: number, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.byteLength) done += writeSync(fd, data, done, data.byteLength - done);
  await fsyncFd(fd);
}

/**
 * Writes `data` to `path` so that readers see either the old file or the whole new one:
 * temp file (0600) in the same directory, fsync, rename over the target, fsync the directory.
 * On failure the temp file is removed and the target is untouched.
 */
export async function atomicWrite(path: string, data: Uint8Array, o: DurabilityOptions = {}): Promise<void> {
  const dir = dirname(path);
  const { fd, tmp } = await openTemp(dir);
  try {
    try {
      await fillDurably(fd, data);
    } finally {
      closeSync(fd);
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  if (o.syncDir !== false) await fsyncDir(dir);
}

/** Removes `path`; a missing file is success. The directory is fsynced so the removal survives a crash. */
export async function removeFile(path: string, o: DurabilityOptions = {}): Promise<boolean> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if (o.syncDir !== false) await fsyncDir(dirname(path)).catch(() => {});
  return true;
}

/** The largest item read by default (1 MiB); `CREDSYNC_MAX_ITEM_BYTES` raises it. */
export const DEFAULT_MAX_ITEM_BYTES = 1024 * 1024;

/** `1048576` → `1 MiB`, `2048` → `2 KiB`, `1000` → `1000 bytes`. */
export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

/**
 * What lies at an item's path cannot be an item: not a regular file (a FIFO, a socket, a device, a
 * directory), too large, or a link leading out of the tree. The caller knows the key; `reason` never
 * holds the path or the content.
 */
export class FileRefusedError extends Error {
  override name = 'FileRefusedError';
  constructor(
    readonly reason: string,
    /** `directory`: a directory where a file was expected; `special`: FIFO, socket, device; `too-large`; `outside`: a link out of the tree. */
    readonly kind: 'directory' | 'special' | 'too-large' | 'outside',
  ) {
    super(reason);
  }
}

/** What a non-regular file is, for messages. */
export function fileKind(st: { isFile(): boolean; isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSymbolicLink(): boolean }): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSymbolicLink()) return 'a symlink';
  return 'not a file';
}

export function tooLargeReason(size: number, maxBytes: number, orMore = false): string {
  return `larger than ${formatBytes(maxBytes)} (${size}${orMore ? ' or more' : ''} bytes); raise CREDSYNC_MAX_ITEM_BYTES to accept it`;
}

export interface ReadOptions {
  /** Follow a symlink in the last component (the caller checked where it leads). Default false. */
  readonly follow?: boolean;
  /** Refuse a file larger than this (default 1 MiB). */
  readonly maxBytes?: number;
}

/**
 * Reads a regular file, never blocking and never reading without bound: opened with
 * `O_NONBLOCK | O_NOCTTY` (and `O_NOFOLLOW` unless `follow`), the open handle is `fstat`ed, and
 * anything but a regular file — a FIFO, a socket, a device, a directory — is refused with
 * FileRefusedError, as is a file larger than `maxBytes` (checked on the size and while reading, so a
 * growing file is caught too). A symlink in the last component without `follow` fails with ELOOP.
 *
 * The system calls are synchronous: items are small files, usually just written (in the page cache),
 * read in microseconds, where each asynchronous call costs a thread-pool round trip (about 0.1 ms: a
 * read measured 0.4 ms that way, 0.015 ms this way). The async signature stays for the callers.
 */
export async function readRegular(path: string, o: ReadOptions = {}): Promise<Buffer> {
  const maxBytes = o.maxBytes ?? DEFAULT_MAX_ITEM_BYTES;
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | (o.follow ? 0 : constants.O_NOFOLLOW);
  let fd: number;
  try {
    fd = openSync(path, flags);
  } catch (err) {
    // A Unix socket cannot be opened at all.
    if ((err as NodeJS.ErrnoException).code === 'ENXIO') throw new FileRefusedError('not a regular file (a socket or a device without a reader)', 'special');
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FileRefusedError(`not a regular file (${fileKind(st)})`, st.isDirectory() ? 'directory' : 'special');
    if (st.size > maxBytes) throw new FileRefusedError(tooLargeReason(st.size, maxBytes), 'too-large');
    let buf = Buffer.allocUnsafe(Math.min(maxBytes, st.size) + 1);
    let total = 0;
    for (;;) {
      if (total === buf.length) {
        if (buf.length > maxBytes) throw new FileRefusedError(tooLargeReason(total, maxBytes, true), 'too-large');
        const bigger = Buffer.allocUnsafe(Math.min(maxBytes + 1, buf.length * 2));
        buf.copy(bigger, 0, 0, total);
        buf = bigger;
      }
      const want = buf.length - total;
      const bytesRead = readSync(fd, buf, total, want, null);
      total += bytesRead;
      // A regular file returns less than asked (0 included) only at its end: no extra read to see 0 (the
      // buffer is one byte larger than the size seen, so a file that grew meanwhile fills it and is read on).
      if (bytesRead < want) break;
    }
    return buf.subarray(0, total);
  } finally {
    closeSync(fd);
  }
}

/** Reads a regular file without following a symlink in its last component (ELOOP if it is one). See `readRegular`. */
export async function readNoFollow(path: string, maxBytes = DEFAULT_MAX_ITEM_BYTES): Promise<Buffer> {
  return readRegular(path, { maxBytes });
}

export async function tightenMode(path: string, mode: number): Promise<void> {
  await chmod(path, mode).catch(() => {});
}

// ------------------------------------------------------------------ guarded replace

/**
 * What identifies one version of a file without reading it: inode, size, mtime and ctime in ns.
 * A rename over the path gives a new inode; an in-place rewrite changes mtime/ctime (and usually size).
 */
export interface FileIdentity {
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

export function identityOf(st: { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): FileIdentity {
  return { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

export function sameIdentity(a: FileIdentity | null, b: FileIdentity | null): boolean {
  if (a === null || b === null) return a === b;
  return a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** Identity of what is at `path` now (a symlink is judged by its target, as a read would see it); null when absent. Synchronous on purpose. */
export function identityNowSync(path: string): FileIdentity | null {
  const l = lstatSync(path, { bigint: true, throwIfNoEntry: false });
  if (!l) return null;
  if (!l.isSymbolicLink()) return identityOf(l);
  const s = statSync(path, { bigint: true, throwIfNoEntry: false });
  return s ? identityOf(s) : identityOf(l);
}

/**
 * The outcome of `guardedWrite`:
 * - `written`: the target was what the caller planned against and now holds `data`;
 * - `changed`: the target no longer matched the expected identity right before the rename: nothing
 *   was written (the caller re-plans);
 * - `replaced`: `data` was written, but the file it replaced was not the one planned against (a write
 *   landed in the last instant): its bytes are returned so the caller keeps and re-decides them.
 *   `replaced` is null when that file could not be read back.
 * `identity` is the written file's identity when it could be confirmed right after the rename.
 */
export type GuardedWriteResult =
  | { readonly status: 'written'; readonly identity: FileIdentity | null }
  | { readonly status: 'changed' }
  | { readonly status: 'replaced'; readonly identity: FileIdentity | null; readonly replaced: Buffer | null };

/**
 * Atomic write that never silently replaces a file other than the one the caller planned against.
 * `expected`: the target's identity observed when planning, or null for "absent".
 *
 * 1. The temp file (created 0600) is written and fsynced (the slow part) before anything is checked.
 * 2. Then, synchronously (no await, so nothing of ours interleaves): the target's identity is compared
 *    with `expected` — a mismatch unlinks the temp file and returns `changed`.
 * 3. Target expected absent: the temp file is hard-linked to the target name, which fails if anything
 *    appeared meanwhile (exact: create-if-absent), then the temp name is removed.
 *    Target expected present: the current target is hard-linked to a private temp-style name (which the
 *    proxy and the watcher ignore), the temp file renamed over the target, and the linked inode compared
 *    with `expected` (ino, size, mtime; the link itself bumps ctime). When it differs, a write landed
 *    between the check and the link: it is returned as `replaced`.
 *
 * With `verify`, the replaced file's content is checked as well (an identity can repeat: see
 * GuardedWriteOptions.verify), which also catches an in-place rewrite of the same size within one tick.
 *
 * What remains unobservable is a rename by another process between the `link` and the `rename` — two
 * consecutive system calls (tens of µs, more if the process is preempted between them); no call Node
 * offers lets a process swap a file in and get the replaced one back atomically (Linux's
 * renameat2(RENAME_EXCHANGE) is not exposed).
 */
export interface GuardedWriteOptions extends DurabilityOptions {
  /**
   * Checks the bytes of the file that was replaced when its identity matched `expected`. Identity alone
   * can be fooled: ext4 hands a just-freed inode number to the next new file, and mtime/ctime move in
   * kernel ticks (1–4 ms), so a rewrite of the same size within one tick can carry the very identity
   * planned against. When `verify` returns false, the replaced file is reported as `replaced`.
   */
  readonly verify?: (replaced: Buffer) => boolean;
  /** Called synchronously right after the identity check, before the link/rename (tests use it to land a write in that instant). */
  readonly afterCheck?: () => void;
}

export async function guardedWrite(path: string, data: Uint8Array, expected: FileIdentity | null, o: GuardedWriteOptions = {}): Promise<GuardedWriteResult> {
  const dir = dirname(path);
  const { fd, tmp } = await openTemp(dir);
  let tmpIno: bigint;
  try {
    try {
      await fillDurably(fd, data);
      tmpIno = fstatSync(fd, { bigint: true }).ino;
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  let keep: string | null = null;
  // ---- synchronous from the check to the rename: the smallest window this process can give.
  try {
    if (!sameIdentity(identityNowSync(path), expected)) {
      unlinkSync(tmp);
      return { status: 'changed' };
    }
    o.afterCheck?.();
    if (expected === null) {
      try {
        linkSync(tmp, path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        unlinkSync(tmp);
        return { status: 'changed' };
      }
      unlinkSync(tmp);
    } else {
      const isLink = lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink() ?? false;
      if (!isLink) {
        keep = tempPathIn(dir);
        try {
          linkSync(path, keep);
        } catch (err) {
          keep = null;
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          unlinkSync(tmp);
          return { status: 'changed' };
        }
      }
      renameSync(tmp, path);
    }
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      /* renamed or gone */
    }
    if (keep) {
      try {
        unlinkSync(keep);
      } catch {
        /* gone */
      }
    }
    throw err;
  }
  // ---- the new file is in place.
  const now = lstatSync(path, { bigint: true, throwIfNoEntry: false });
  const identity = now && now.ino === tmpIno ? identityOf(now) : null;
  let result: GuardedWriteResult = { status: 'written', identity };
  if (keep) {
    const k = lstatSync(keep, { bigint: true, throwIfNoEntry: false });
    const same = k !== undefined && k.ino === expected!.ino && k.size === expected!.size && k.mtimeNs === expected!.mtimeNs;
    if (!same) {
      const replaced = await readRegular(keep, { maxBytes: Number.MAX_SAFE_INTEGER }).catch(() => null);
      result = { status: 'replaced', identity, replaced };
    } else if (o.verify) {
      const replaced = await readRegular(keep, { maxBytes: Number.MAX_SAFE_INTEGER }).catch(() => null);
      if (replaced === null || !o.verify(replaced)) result = { status: 'replaced', identity, replaced };
    }
    await unlink(keep).catch(() => {});
  }
  if (o.syncDir !== false) await fsyncDir(dir);
  return result;
}

/**
 * The outcome of `guardedRemove`: `removed` (the file planned against is gone, or it was already
 * absent), or `changed` (the file at the path was not the one planned against: it is left in place).
 */
export type GuardedRemoveResult = { readonly status: 'removed' } | { readonly status: 'changed' };

/**
 * Removes `path` only if it is still the file identified by `expected` — exactly: the file is first
 * renamed to a private temp-style name (atomic: whatever was there moves), its identity compared, and a
 * different file is put back (by link, so a newer one written meanwhile is never replaced).
 */
export async function guardedRemove(path: string, expected: FileIdentity, o: DurabilityOptions & Pick<GuardedWriteOptions, 'verify'> = {}): Promise<GuardedRemoveResult> {
  const dir = dirname(path);
  const now = identityNowSync(path);
  if (now === null) return { status: 'removed' };
  if (!sameIdentity(now, expected)) return { status: 'changed' };
  const keep = tempPathIn(dir);
  try {
    renameSync(path, keep);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'removed' };
    throw err;
  }
  const k = lstatSync(keep, { bigint: true, throwIfNoEntry: false });
  // The rename bumps ctime: compare the rest.
  let same = k !== undefined && k.ino === expected.ino && k.size === expected.size && k.mtimeNs === expected.mtimeNs;
  if (same && o.verify) same = o.verify(await readRegular(keep, { maxBytes: Number.MAX_SAFE_INTEGER }).catch(() => Buffer.alloc(0)));
  if (!same) {
    try {
      linkSync(keep, path);
    } catch (err) {
      // EEXIST: an even newer file is there already; the one we moved is older than it.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    await unlink(keep).catch(() => {});
    return { status: 'changed' };
  }
  await unlink(keep);
  if (o.syncDir !== false) await fsyncDir(dir).catch(() => {});
  return { status: 'removed' };
}
