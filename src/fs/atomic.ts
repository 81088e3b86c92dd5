import { open, rename, unlink, mkdir, chmod, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';

export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;
/** Temp files start with this and end in `.tmp`: the proxy only loads `*.json` / `config.yaml`. */
export const TEMP_PREFIX = '.credsync-';
export const TEMP_SUFFIX = '.tmp';

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
 * Writes `data` to `path` so that readers see either the old file or the whole new one:
 * temp file in the same directory, fsync, chmod 0600, rename over the target, fsync the directory.
 * On failure the temp file is removed and the target is untouched.
 */
export async function atomicWrite(path: string, data: Uint8Array, o: DurabilityOptions = {}): Promise<void> {
  const dir = dirname(path);
  await ensureDir(dir);
  const tmp = join(dir, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
  const fh = await open(tmp, 'wx', FILE_MODE);
  try {
    try {
      await fh.writeFile(data);
      await fh.chmod(FILE_MODE);
      await fh.sync();
    } finally {
      await fh.close();
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
 */
export async function readRegular(path: string, o: ReadOptions = {}): Promise<Buffer> {
  const maxBytes = o.maxBytes ?? DEFAULT_MAX_ITEM_BYTES;
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | (o.follow ? 0 : constants.O_NOFOLLOW);
  let fh: FileHandle;
  try {
    fh = await open(path, flags);
  } catch (err) {
    // A Unix socket cannot be opened at all.
    if ((err as NodeJS.ErrnoException).code === 'ENXIO') throw new FileRefusedError('not a regular file (a socket or a device without a reader)', 'special');
    throw err;
  }
  try {
    const st = await fh.stat();
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
      const { bytesRead } = await fh.read(buf, total, buf.length - total, null);
      if (bytesRead === 0) break;
      total += bytesRead;
    }
    return buf.subarray(0, total);
  } finally {
    await fh.close();
  }
}

/** Reads a regular file without following a symlink in its last component (ELOOP if it is one). See `readRegular`. */
export async function readNoFollow(path: string, maxBytes = DEFAULT_MAX_ITEM_BYTES): Promise<Buffer> {
  return readRegular(path, { maxBytes });
}

export async function tightenMode(path: string, mode: number): Promise<void> {
  await chmod(path, mode).catch(() => {});
}
