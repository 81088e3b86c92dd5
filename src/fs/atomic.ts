import { open, rename, unlink, mkdir, chmod } from 'node:fs/promises';
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

/** Reads a regular file without following a symlink in its last component (ELOOP if it is one). */
export async function readNoFollow(path: string): Promise<Buffer> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

export async function tightenMode(path: string, mode: number): Promise<void> {
  await chmod(path, mode).catch(() => {});
}
