import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { createGzip } from 'node:zlib';
import type { Writable } from 'node:stream';
import { Header, Parser, Pax, type ReadEntry } from 'tar';
import { sha256, validateContent } from '../core/canonical.js';
import { keyProblem, type Key } from '../core/keys.js';
import { FILE_MODE, fsyncDir } from '../fs/atomic.js';

/**
 * The backup archive: a gzip'd tar whose first member is `manifest.json`, then one regular-file
 * member per item at its key. Written through a spool file so the manifest (which needs every item's
 * hash) can come first while memory stays bounded; verified completely before a restore writes anything.
 */

export const ARCHIVE_FORMAT = 1;
export const MANIFEST_NAME = 'manifest.json';
/** Largest item accepted in an archive (credentials and configs are a few KiB). */
export const MAX_ITEM_BYTES = 4 * 1024 * 1024;
/** Largest manifest accepted. */
export const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;

export interface ManifestItem {
  readonly key: Key;
  readonly size: number;
  readonly sha256: string;
  /** The item's version in the store it was read from. */
  readonly version?: string;
}

export interface Manifest {
  readonly format: number;
  readonly credsyncVersion: string;
  readonly store: { readonly kind: string; readonly id: string };
  readonly createdAt: string;
  readonly items: ManifestItem[];
}

// ------------------------------------------------------------------ writing

/** Item bytes parked in a private temp file between reading the store and writing the archive. */
export class Spool {
  private constructor(
    private readonly dir: string,
    private readonly fh: FileHandle,
  ) {}
  private size = 0;

  static async create(): Promise<Spool> {
    const dir = await mkdtemp(join(tmpdir(), 'credsync-spool-'));
    const fh = await open(join(dir, 'items'), 'wx+', FILE_MODE);
    return new Spool(dir, fh);
  }

  async append(data: Uint8Array): Promise<{ offset: number; length: number }> {
    const offset = this.size;
    await this.fh.write(data, 0, data.length, offset);
    this.size += data.length;
    return { offset, length: data.length };
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new Error('spool file shorter than expected');
      done += bytesRead;
    }
    return buf;
  }

  async dispose(): Promise<void> {
    await this.fh.close().catch(() => {});
    await rm(this.dir, { recursive: true, force: true });
  }
}

const BLOCK = 512;
const FIXED_MTIME = new Date(0);

function memberHeader(path: string, size: number, mtime: Date): Buffer {
  const data = { path, mode: FILE_MODE, uid: 0, gid: 0, size, mtime, type: 'File' as const, uname: '', gname: '' };
  const h = new Header(data);
  const block = Buffer.alloc(BLOCK);
  h.encode(block, 0);
  if (!h.needPax) return block;
  // Paths over the ustar limits go in a PAX extended header before the member.
  const pax = new Pax({ path, size, mtime }, false).encode();
  return Buffer.concat([pax, block]);
}

const padding = (size: number): Buffer => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);

/** Streams tar members into `sink` (gzip'd), honouring back-pressure. */
export class TarWriter {
  private readonly gzip = createGzip();
  constructor(sink: Writable, endSink = true) {
    this.gzip.pipe(sink, { end: endSink });
  }
  private async write(buf: Buffer): Promise<void> {
    if (!this.gzip.write(buf)) await once(this.gzip, 'drain');
  }
  async member(path: string, data: Uint8Array, mtime = FIXED_MTIME): Promise<void> {
    await this.write(memberHeader(path, data.length, mtime));
    await this.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    await this.write(padding(data.length));
  }
  /** Writes the end-of-archive blocks; resolves when the gzip stream has handed everything on. */
  async end(): Promise<void> {
    await this.write(Buffer.alloc(BLOCK * 2));
    const ended = once(this.gzip, 'end');
    this.gzip.end();
    await ended;
  }
}

/**
 * Writes the archive to `out` (`-` = `stdout`): a temp file in the same directory (0600), fsynced,
 * renamed over `out`, the directory fsynced — a crash never leaves a truncated archive under the
 * final name. `fill` writes the members.
 */
export async function writeArchiveFile(out: string, stdout: Writable, fill: (w: TarWriter) => Promise<void>): Promise<void> {
  if (out === '-') {
    const w = new TarWriter(stdout, false);
    await fill(w);
    await w.end();
    return;
  }
  const tmp = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const sink = createWriteStream(tmp, { flags: 'wx', mode: FILE_MODE });
    // A write error (disk full …) rejects instead of leaving the writer waiting for 'drain'.
    const failure = new Promise<never>((_, reject) => sink.once('error', reject));
    failure.catch(() => {});
    const finished = once(sink, 'close');
    const w = new TarWriter(sink);
    await Promise.race([
      (async () => {
        await fill(w);
        await w.end();
        await finished;
      })(),
      failure,
    ]);
    const fh = await open(tmp, 'r+');
    try {
      await fh.chmod(FILE_MODE);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, out);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fsyncDir(dirname(out));
}

// ------------------------------------------------------------------ reading

export interface Member {
  /** The member name exactly as the archive spells it. */
  readonly name: string;
  /** node-tar's type name (`File`, `SymbolicLink`, `Link`, `CharacterDevice`, `Directory` …). */
  readonly type: string;
  readonly size: number;
  /** The bytes; null when the member was not read (not a regular file, or over the size cap). */
  readonly data: Buffer | null;
  readonly problem?: string;
}

/**
 * The archive's members, one at a time, reading the file only as fast as the caller consumes them
 * (memory stays bounded). Throws on a damaged or truncated archive.
 */
export async function* archiveMembers(path: string, capFor: (name: string, index: number) => number = (_, i) => (i === 0 ? MAX_MANIFEST_BYTES : MAX_ITEM_BYTES)): AsyncGenerator<Member> {
  const parser = new Parser({ strict: true });
  const queue: Member[] = [];
  let failure: Error | null = null;
  let index = 0;
  let ended = false;
  parser.on('entry', (e: ReadEntry) => {
    const name = e.header?.path ?? e.path;
    const type = String(e.type);
    const size = e.size ?? 0;
    const cap = capFor(name, index++);
    if (type !== 'File' && type !== 'OldFile' && type !== 'ContiguousFile') {
      queue.push({ name, type, size, data: null, problem: `is a ${type} member (only regular files are allowed)` });
      e.resume();
      return;
    }
    if (size > cap) {
      queue.push({ name, type, size, data: null, problem: `is ${size} bytes, over the ${cap}-byte cap` });
      e.resume();
      return;
    }
    const parts: Buffer[] = [];
    let got = 0;
    e.on('data', (c: Buffer) => {
      got += c.length;
      if (got <= cap) parts.push(c);
    });
    e.on('end', () => queue.push({ name, type, size, data: Buffer.concat(parts) }));
  });
  parser.on('error', (err: Error) => (failure ??= err));
  parser.on('warn', (_code: string, msg: string | Error) => (failure ??= msg instanceof Error ? msg : new Error(String(msg))));
  parser.on('end', () => (ended = true));
  const input = createReadStream(path);
  try {
    for await (const chunk of input) {
      parser.write(chunk as Buffer);
      while (queue.length) yield queue.shift()!;
      if (failure) throw failure;
    }
    parser.end();
    while (queue.length) yield queue.shift()!;
    if (failure) throw failure;
    if (!ended) await Promise.race([once(parser, 'end'), once(parser, 'close')]);
    while (queue.length) yield queue.shift()!;
    if (failure) throw failure;
  } finally {
    input.destroy();
  }
}

/** Why a member name cannot be restored, or null. */
export function memberNameProblem(name: string): string | null {
  if (name.startsWith('/')) return 'is an absolute path';
  if (name.split('/').includes('..')) return 'has a ".." segment';
  return keyProblem(name);
}

export interface ArchiveCheck {
  readonly manifest: Manifest | null;
  /** Every reason the archive cannot be restored (empty = verified). */
  readonly problems: string[];
}

function checkManifest(raw: Buffer): { manifest: Manifest | null; problems: string[] } {
  let m: Partial<Manifest>;
  try {
    m = JSON.parse(raw.toString('utf8')) as Partial<Manifest>;
  } catch {
    return { manifest: null, problems: [`${MANIFEST_NAME}: not valid JSON`] };
  }
  if (m === null || typeof m !== 'object') return { manifest: null, problems: [`${MANIFEST_NAME}: not a JSON object`] };
  if (m.format !== ARCHIVE_FORMAT) return { manifest: null, problems: [`${MANIFEST_NAME}: unknown format ${JSON.stringify(m.format)} (this credsync reads format ${ARCHIVE_FORMAT})`] };
  if (!Array.isArray(m.items)) return { manifest: null, problems: [`${MANIFEST_NAME}: no items list`] };
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const it of m.items as unknown[]) {
    const item = it as Partial<ManifestItem> | null;
    if (!item || typeof item.key !== 'string' || typeof item.size !== 'number' || typeof item.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(item.sha256)) {
      problems.push(`${MANIFEST_NAME}: malformed item ${JSON.stringify(it).slice(0, 120)}`);
      continue;
    }
    const p = memberNameProblem(item.key);
    if (p) problems.push(`${MANIFEST_NAME}: item ${JSON.stringify(item.key)} ${p}`);
    if (seen.has(item.key)) problems.push(`${MANIFEST_NAME}: item ${item.key} listed twice`);
    seen.add(item.key);
  }
  return { manifest: m as Manifest, problems };
}

/**
 * Verifies the whole archive without writing anything: format known, manifest first, every member a
 * regular file whose name is a valid key listed in the manifest (no absolute path, no `..`, no link,
 * no device), within the size caps, its SHA-256 and size equal to the manifest's, its content valid
 * JSON/YAML; every manifest item present exactly once.
 */
export async function verifyArchive(path: string): Promise<ArchiveCheck> {
  const problems: string[] = [];
  let manifest: Manifest | null = null;
  let byKey = new Map<Key, ManifestItem>();
  const seen = new Set<Key>();
  let first = true;
  try {
    for await (const m of archiveMembers(path)) {
      if (first) {
        first = false;
        if (m.name !== MANIFEST_NAME) {
          problems.push(`the first member is ${JSON.stringify(m.name)}, not ${MANIFEST_NAME} (not a credsync backup)`);
          break;
        }
        if (m.problem || !m.data) {
          problems.push(`${MANIFEST_NAME} ${m.problem ?? 'unreadable'}`);
          break;
        }
        const c = checkManifest(m.data);
        problems.push(...c.problems);
        if (!c.manifest) break;
        manifest = c.manifest;
        byKey = new Map(manifest.items.map((i) => [i.key, i]));
        continue;
      }
      const label = `member ${JSON.stringify(m.name)}`;
      if (m.problem) {
        problems.push(`${label} ${m.problem}`);
        continue;
      }
      const bad = memberNameProblem(m.name);
      if (bad) {
        problems.push(`${label} ${bad}`);
        continue;
      }
      const want = byKey.get(m.name);
      if (!want) {
        problems.push(`${label} is not in the manifest`);
        continue;
      }
      if (seen.has(m.name)) {
        problems.push(`${label} appears twice`);
        continue;
      }
      seen.add(m.name);
      const data = m.data!;
      if (data.length !== want.size) problems.push(`${label} is ${data.length} bytes, the manifest says ${want.size}`);
      else if (sha256(data) !== want.sha256) problems.push(`${label} SHA-256 differs from the manifest (damaged or altered)`);
      else {
        const v = validateContent(m.name, data);
        if (!v.ok) problems.push(`${label} ${v.reason}`);
      }
    }
  } catch (err) {
    problems.push(`archive unreadable: ${(err as Error).message.split('\n')[0]} (damaged or truncated)`);
  }
  if (first) problems.push('the archive is empty');
  if (manifest) for (const k of byKey.keys()) if (!seen.has(k)) problems.push(`item ${k} is in the manifest but not in the archive (truncated?)`);
  return { manifest, problems };
}
