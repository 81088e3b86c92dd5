import { createHash } from 'node:crypto';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { ConflictError, InvalidContentError } from '../../core/errors.js';
import { AUTH_PREFIX, CONFIG_KEY, keyProblem, validateKey, type Key } from '../../core/keys.js';
import { forEachLimit } from '../../core/limit.js';
import type { DeleteOptions, Entry, Item, Listing, PutOptions, SkippedItem } from '../../core/store.js';
import { ifMatchValue, type Conditions } from './conditional.js';
import { BOOKKEEPING_DIR, STORE, classify, contentTypeOf, fail, normalizeEtag, objectKeyOf, type S3Context } from './settings.js';

/**
 * The data operations on objects: `[prefix/]config/config.yaml` and `[prefix/]auths/<id>`, bodies the
 * exact bytes, versions the ETag. Compare-and-swap by conditional request where the server enforces
 * it, else by reading the ETag right before the write and checking it right after (check-then-write).
 */
export interface ObjectOps {
  list(): Promise<Listing>;
  get(key: Key): Promise<Item | null>;
  getMany(keys: Key[]): Promise<Item[]>;
  put(key: Key, data: Uint8Array, options?: PutOptions): Promise<Entry>;
  delete(key: Key, options?: DeleteOptions): Promise<void>;
}

export interface ObjectDeps {
  readonly ctx: S3Context;
  /** The conditions settled at init (before init: none enforced). */
  conditions(): Conditions;
  /** Called after every write that reached the server (the generation bump). */
  wrote(): void;
  readonly parallelReads: number;
}

/** How many times a `409 ConditionalRequestConflict` (a concurrent conditional write in flight) is retried. */
const CONDITIONAL_CONFLICT_RETRIES = 4;

/** Re-reads of an object whose body does not match its ETag before the ETag is taken as not an MD5. */
const MIXED_READ_RETRIES = 3;
const MISMATCHES_BEFORE_OFF = 3;
const md5 = (data: Uint8Array): string => createHash('md5').update(data).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

export function objectOps(d: ObjectDeps): ObjectOps {
  const { ctx } = d;
  const Bucket = ctx.bucket;
  const okey = (key: Key): string => objectKeyOf(ctx, key);
  /** Cleared after a few objects whose ETag never matched their body (an SSE-KMS bucket): the check is pointless there. */
  let etagsAreMd5 = true;
  let persistentMismatches = 0;

  async function head(key: Key, op: string): Promise<string | null> {
    try {
      const r = await ctx.client.send(new HeadObjectCommand({ Bucket, Key: okey(key) }));
      return normalizeEtag(r.ETag);
    } catch (err) {
      if (classify(err).kind === 'not-found') return null;
      throw fail(ctx, op, key, 'HeadObject', okey(key), err);
    }
  }

  async function getOnce(key: Key, op: string): Promise<Item | null> {
    try {
      const r = await ctx.client.send(new GetObjectCommand({ Bucket, Key: okey(key) }));
      const data = Buffer.from(await r.Body!.transformToByteArray());
      const version = normalizeEtag(r.ETag);
      if (!version) return { key, version: (await head(key, op)) ?? 'unknown', data };
      return { key, version, data };
    } catch (err) {
      if (classify(err).kind === 'not-found') return null;
      throw fail(ctx, op, key, 'GetObject', okey(key), err);
    }
  }

  /**
   * A version must name exactly the bytes it comes with: the engine remembers (hash, version) pairs
   * and trusts an unchanged version to mean unchanged content. A single-part PUT's ETag is the MD5 of
   * the body, so a body that does not hash to it was read while the object was being replaced (s3rver,
   * which stores body and metadata as separate files, answers such mixed reads): read it again.
   * ETags that are not an MD5 (multipart uploads, SSE-KMS) are left alone after a few tries.
   */
  async function get(key: Key, op = 'get'): Promise<Item | null> {
    validateKey(key);
    for (let attempt = 0; ; attempt++) {
      const item = await getOnce(key, op);
      if (!item || !etagsAreMd5 || !/^[0-9a-f]{32}$/.test(item.version) || md5(item.data) === item.version) return item;
      if (attempt < MIXED_READ_RETRIES) {
        await sleep(10 * (attempt + 1));
        continue;
      }
      // Still mismatched: a server that mixed two concurrent writes, or ETags that are not MD5s.
      if (++persistentMismatches >= MISMATCHES_BEFORE_OFF) {
        etagsAreMd5 = false;
        ctx.log?.warn(`s3 ${ctx.id}: ETags on this bucket are not the MD5 of the bodies (SSE-KMS or multipart uploads); no longer checking them`);
      } else {
        ctx.log?.warn(
          { key, version: item.version },
          `s3 get ${key}: the body is not the one its ETag ${item.version} names — the server mixed two concurrent writes (s3rver does), or the ETag is not an MD5 (SSE-KMS, multipart); using it as is`,
        );
      }
      return item;
    }
  }

  /** One PutObject; returns the new ETag (read back when the server does not return one). */
  async function rawPut(key: Key, data: Uint8Array, cond: { IfNoneMatch?: string; IfMatch?: string }): Promise<string> {
    const r = await ctx.client.send(
      new PutObjectCommand({ Bucket, Key: okey(key), Body: Buffer.from(data), ContentType: contentTypeOf(key), ...cond }),
    );
    d.wrote();
    return normalizeEtag(r.ETag) ?? (await head(key, 'put')) ?? '';
  }

  /**
   * A refused condition: the current object decides. Byte-for-byte ours means our own write landed
   * (the SDK retried a request whose answer was lost, and the retry met our object): success.
   */
  async function refused(key: Key, data: Uint8Array, expected: string | null | undefined, op: 'put'): Promise<Entry> {
    const cur = await get(key, op);
    if (cur && sameBytes(cur.data, data)) return { key: cur.key, version: cur.version };
    throw new ConflictError(STORE, op, key, expected, cur?.version ?? null);
  }

  async function enforcedPut(key: Key, data: Uint8Array, expected: string | null, cond: { IfNoneMatch?: string; IfMatch?: string }): Promise<Entry> {
    for (let attempt = 0; ; attempt++) {
      try {
        return { key, version: await rawPut(key, data, cond) };
      } catch (err) {
        const c = classify(err);
        // AWS answers If-Match on a missing key with 404, RGW with 412: both are a failed precondition.
        if (c.kind === 'precondition' || (c.kind === 'not-found' && cond.IfMatch)) return refused(key, data, expected, 'put');
        if (c.kind === 'conditional-conflict' && attempt < CONDITIONAL_CONFLICT_RETRIES) {
          // Another conditional write to this key is in flight: re-read; retry while ours can still win.
          const cur = await head(key, 'put');
          if (expected === null ? cur !== null : cur !== expected) return refused(key, data, expected, 'put');
          await sleep(20 * 2 ** attempt * (0.5 + Math.random()));
          continue;
        }
        throw fail(ctx, 'put', key, 'PutObject', okey(key), err);
      }
    }
  }

  /** Check-then-write for servers that do not enforce the condition: read, write, verify. */
  async function checkedPut(key: Key, data: Uint8Array, expected: string | null): Promise<Entry> {
    const before = await head(key, 'put');
    if (expected === null ? before !== null : before !== expected) return refused(key, data, expected, 'put');
    let etag: string;
    try {
      etag = await rawPut(key, data, {});
    } catch (err) {
      throw fail(ctx, 'put', key, 'PutObject', okey(key), err);
    }
    const after = await head(key, 'put');
    // Someone wrote (or deleted) right after us: report it, so the engine re-reads and resolves it
    // by its conflict policy instead of believing its copy is the store's.
    if (after !== etag) throw new ConflictError(STORE, 'put', key, etag, after);
    return { key, version: etag };
  }

  return {
    async list(): Promise<Listing> {
      const entries: Entry[] = [];
      const skipped: SkippedItem[] = [];
      let ContinuationToken: string | undefined;
      do {
        let page: ListObjectsV2CommandOutput;
        try {
          page = await ctx.client.send(new ListObjectsV2Command({ Bucket, Prefix: ctx.base || undefined, ContinuationToken }));
        } catch (err) {
          throw fail(ctx, 'list', undefined, 'ListObjectsV2', `bucket ${Bucket}${ctx.base ? ` prefix ${ctx.base}` : ''}`, err);
        }
        for (const o of page.Contents ?? []) {
          if (!o.Key || !o.Key.startsWith(ctx.base)) continue;
          const rel = o.Key.slice(ctx.base.length);
          if (rel.startsWith(BOOKKEEPING_DIR)) continue;
          if (rel === CONFIG_KEY) {
            entries.push({ key: rel, version: normalizeEtag(o.ETag) ?? '' });
            continue;
          }
          if (!rel.startsWith(AUTH_PREFIX)) continue; // not ours to mirror (CLIProxyAPI reads only these)
          if (rel.endsWith('/') && !o.Size) continue; // a "folder" marker made by a console
          const problem = keyProblem(rel);
          if (problem) skipped.push({ id: rel, reason: `object key ${JSON.stringify(o.Key).slice(0, 300)} ${problem}` });
          else entries.push({ key: rel, version: normalizeEtag(o.ETag) ?? '' });
        }
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (ContinuationToken);
      return { entries, skipped };
    },

    get: (key) => get(key),

    async getMany(keys: Key[]): Promise<Item[]> {
      for (const k of keys) validateKey(k);
      const out: Array<Item | null> = new Array<Item | null>(keys.length).fill(null);
      const idx = keys.map((_, i) => i);
      await forEachLimit(idx, d.parallelReads, async (i) => {
        out[i] = await get(keys[i]!);
      });
      return out.filter((x): x is Item => x !== null);
    },

    async put(key: Key, data: Uint8Array, options: PutOptions = {}): Promise<Entry> {
      validateKey(key);
      if (data.byteLength === 0) throw new InvalidContentError(key, 'empty content: an empty object is never written');
      const c = d.conditions();
      const ifVersion = options.ifVersion;
      if (ifVersion === undefined) {
        try {
          return { key, version: await rawPut(key, data, {}) };
        } catch (err) {
          throw fail(ctx, 'put', key, 'PutObject', okey(key), err);
        }
      }
      if (ifVersion === null) return c.create === 'enforced' ? enforcedPut(key, data, null, { IfNoneMatch: '*' }) : checkedPut(key, data, null);
      return c.update === 'enforced' ? enforcedPut(key, data, ifVersion, { IfMatch: ifMatchValue(c, ifVersion) }) : checkedPut(key, data, ifVersion);
    },

    async delete(key: Key, options: DeleteOptions = {}): Promise<void> {
      validateKey(key);
      const c = d.conditions();
      const ifVersion = options.ifVersion;
      if (ifVersion !== undefined && c.del !== 'enforced') {
        const cur = await head(key, 'delete');
        if (cur === null) return;
        if (cur !== ifVersion) throw new ConflictError(STORE, 'delete', key, ifVersion, cur);
      }
      try {
        await ctx.client.send(
          new DeleteObjectCommand({ Bucket, Key: okey(key), ...(ifVersion !== undefined && c.del === 'enforced' ? { IfMatch: ifMatchValue(c, ifVersion) } : {}) }),
        );
        d.wrote();
      } catch (err) {
        const k = classify(err).kind;
        if (k === 'not-found') return;
        if (k === 'precondition') {
          const cur = await head(key, 'delete');
          if (cur === null) return; // already gone: deleting is idempotent
          throw new ConflictError(STORE, 'delete', key, ifVersion, cur);
        }
        throw fail(ctx, 'delete', key, 'DeleteObject', okey(key), err);
      }
    },
  };
}
