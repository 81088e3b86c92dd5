import { createHash, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { deflate } from 'node:zlib';

/** Parsing of git's plumbing output and the one object we write ourselves (a loose blob). */

const deflateAsync = promisify(deflate);

export const ZERO_OID = '0000000000000000000000000000000000000000';

/** The SHA-1 blob id of `data`, exactly as `git hash-object` computes it. */
export function blobId(data: Uint8Array): string {
  return createHash('sha1').update(`blob ${data.byteLength}\0`).update(data).digest('hex');
}

/**
 * Writes `data` as a loose blob into a SHA-1 repository (what `git hash-object -w` does: zlib of
 * "blob <size>\0<data>" under objects/xx/yyyy…, written to a temp file and linked into place, 0444).
 * Returns the blob id. An object already present is left alone.
 */
export async function writeLooseBlob(gitDir: string, data: Uint8Array): Promise<string> {
  const oid = blobId(data);
  const dir = join(gitDir, 'objects', oid.slice(0, 2));
  const path = join(dir, oid.slice(2));
  if (await stat(path).then(() => true, () => false)) return oid;
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `tmp_obj_credsync_${randomBytes(6).toString('hex')}`);
  const body = await deflateAsync(Buffer.concat([Buffer.from(`blob ${data.byteLength}\0`), data]));
  // Not fsynced: the clone is a cache of the remote; a torn object after a crash is a corruption that
  // clone.ts detects and repairs by cloning again.
  await writeFile(tmp, body, { mode: 0o444 });
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(tmp).catch(() => {});
  }
  await chmod(path, 0o444).catch(() => {});
  return oid;
}

export interface TreeEntry {
  readonly mode: string;
  readonly type: string;
  readonly oid: string;
  readonly path: string;
}

/** `git ls-tree -r -z` output. */
export function parseLsTree(out: string): TreeEntry[] {
  const entries: TreeEntry[] = [];
  for (const rec of out.split('\0')) {
    if (!rec) continue;
    const tab = rec.indexOf('\t');
    const [mode, type, oid] = rec.slice(0, tab).split(' ');
    if (tab < 0 || !mode || !type || !oid) continue;
    entries.push({ mode, type, oid, path: rec.slice(tab + 1) });
  }
  return entries;
}

export interface TreeChange {
  readonly status: string;
  readonly newMode: string;
  readonly newOid: string;
  readonly path: string;
}

/** `git diff-tree -r -z --raw --no-renames` output: `:old new oldoid newoid S\0path\0` records. */
export function parseDiffTree(out: string): TreeChange[] {
  const parts = out.split('\0');
  const changes: TreeChange[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const head = parts[i]!;
    if (!head.startsWith(':')) {
      i -= 1; // a commit id line (diff-tree of a single commit); skip it
      continue;
    }
    const [, newMode, , newOid, status] = head.slice(1).split(' ');
    changes.push({ status: status ?? '', newMode: newMode ?? '', newOid: newOid ?? '', path: parts[i + 1]! });
  }
  return changes;
}

/**
 * `git cat-file --batch` output for `requested` object ids, in order: each `<oid> <type> <size>\n<data>\n`
 * or `<oid> missing\n`. Returns oid → data (blobs only), missing ones absent.
 */
export function parseCatFileBatch(out: Buffer, requested: readonly string[]): Map<string, Buffer> {
  const found = new Map<string, Buffer>();
  let pos = 0;
  for (let n = 0; n < requested.length && pos < out.length; n++) {
    const nl = out.indexOf(0x0a, pos);
    if (nl < 0) break;
    const header = out.subarray(pos, nl).toString('utf8').split(' ');
    pos = nl + 1;
    if (header[1] === 'missing' || header[1] === 'ambiguous' || header.length < 3) continue;
    const size = Number(header[2]);
    const data = out.subarray(pos, pos + size);
    pos += size + 1;
    if (header[1] === 'blob') found.set(header[0]!, Buffer.from(data));
  }
  return found;
}

/** `git cat-file --batch-check` output: the requested ids that are missing. */
export function missingInBatchCheck(out: string): string[] {
  return out
    .split('\n')
    .filter((l) => / missing$/.test(l))
    .map((l) => l.split(' ')[0]!);
}
