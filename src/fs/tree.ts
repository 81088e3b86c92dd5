import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { validateKey, keyProblem, type Key, CONFIG_KEY, RESERVED_PREFIX } from '../core/keys.js';
import { atomicWrite, ensureDir, isTempName, readNoFollow, removeFile, type DurabilityOptions } from './atomic.js';
import type { SkippedItem } from '../core/store.js';

export interface TreeFile {
  readonly key: Key;
  readonly path: string;
  /** A symlink whose target was checked to lie inside the tree (read it by path, not no-follow). */
  readonly link?: boolean;
}

export interface TreeScan {
  readonly files: TreeFile[];
  /** Files that look like items but whose names are not valid keys, or links that leave the tree. */
  readonly skipped: SkippedItem[];
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

  constructor(readonly root: string) {}

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
        const real = await realpath(probe);
        if (!(await this.inside(real))) throw new Error(`${key}: resolves outside ${this.root} (symlink)`);
        return;
      } catch (err) {
        if (!isNotFound(err)) throw err;
        const parent = join(probe, '..');
        if (parent === probe) return;
        probe = parent;
      }
    }
  }

  /** Bytes of `key`, or null when it does not exist. */
  async read(key: Key): Promise<Uint8Array | null> {
    const path = this.pathOf(key);
    try {
      await this.assertContained(key, path);
      return await readFile(path);
    } catch (err) {
      if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return null;
      throw err;
    }
  }

  /**
   * Bytes of a file found by `scan` (already known to be inside the tree), or null when it vanished.
   * A regular file is opened without following links, so one swapped for a symlink since the scan fails.
   */
  async readScanned(f: TreeFile): Promise<Uint8Array | null> {
    try {
      return f.link ? await this.read(f.key) : await readNoFollow(f.path);
    } catch (err) {
      if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'ELOOP') return null;
      throw err;
    }
  }

  /** Atomic write (0600 file, 0700 directories). */
  async write(key: Key, data: Uint8Array, o?: DurabilityOptions): Promise<void> {
    const path = this.pathOf(key);
    await this.assertContained(key, path);
    await atomicWrite(path, data, o);
  }

  /** Removes `key`; missing is success. Returns whether a file was removed. */
  async remove(key: Key, o?: DurabilityOptions): Promise<boolean> {
    const path = this.pathOf(key);
    await this.assertContained(key, path);
    return removeFile(path, o);
  }

  async statOf(key: Key): Promise<import('node:fs').BigIntStats | null> {
    try {
      return await stat(this.pathOf(key), { bigint: true });
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

  /** Number of regular `*.json` files under auths/ (0 when the directory is missing). */
  async countAuthFiles(): Promise<number> {
    return (await this.scanAuths()).files.length;
  }

  /** Every item in the tree. Unreadable subtrees are skipped; symlinks leaving the root are reported. */
  async scan(): Promise<TreeScan> {
    const files: TreeFile[] = [];
    const skipped: SkippedItem[] = [];
    const cfg = join(this.root, 'config', 'config.yaml');
    try {
      const st = await lstat(cfg);
      if (st.isSymbolicLink()) {
        const real = await realpath(cfg).catch(() => null);
        if (real && (await this.inside(real))) files.push({ key: CONFIG_KEY, path: cfg, link: true });
        else if (real) skipped.push({ id: CONFIG_KEY, reason: 'symlink pointing outside the mirror' });
      } else if (st.isFile()) files.push({ key: CONFIG_KEY, path: cfg });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const auths = await this.scanAuths();
    files.push(...auths.files);
    skipped.push(...auths.skipped);
    return { files, skipped };
  }

  private async scanAuths(): Promise<TreeScan> {
    const files: TreeFile[] = [];
    const skipped: SkippedItem[] = [];
    const walk = async (dir: string, depth: number): Promise<void> => {
      let names: import('node:fs').Dirent[];
      try {
        names = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
      for (const d of names) {
        const full = join(dir, d.name);
        const rel = relative(this.root, full).split(sep).join('/');
        if (d.isDirectory()) {
          if (d.name.toLowerCase().startsWith(RESERVED_PREFIX) || depth > 16) continue;
          await walk(full, depth + 1);
          continue;
        }
        if (isTempName(d.name) || !d.name.toLowerCase().endsWith('.json')) continue;
        const problem = keyProblem(rel);
        if (problem) {
          skipped.push({ id: rel, reason: problem });
          continue;
        }
        if (d.isSymbolicLink()) {
          const real = await realpath(full).catch(() => null);
          if (!real) continue;
          if (!(await this.inside(real))) {
            skipped.push({ id: rel, reason: 'symlink pointing outside the mirror' });
            continue;
          }
          const st = await stat(real).catch(() => null);
          if (!st?.isFile()) continue;
          files.push({ key: rel, path: full, link: true });
          continue;
        }
        if (!d.isFile()) continue;
        files.push({ key: rel, path: full });
      }
    };
    await walk(join(this.root, 'auths'), 0);
    files.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { files, skipped };
  }
}
