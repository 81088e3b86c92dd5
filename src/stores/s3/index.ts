import { CreateBucketCommand, HeadBucketCommand, ListObjectsV2Command, type BucketLocationConstraint } from '@aws-sdk/client-s3';
import { StoreConfigError, StoreError, errorMessage } from '../../core/errors.js';
import type { Change, InitOptions, Listing, StopWatching, Store, StoreCapabilities, WatchOptions } from '../../core/store.js';
import { validateKey } from '../../core/keys.js';
import { OFF, describeConditions, requireError, settleConditions, writesEnforced, type Conditions } from './conditional.js';
import { GenerationBumper } from './generation.js';
import { objectOps } from './objects.js';
import { Poller, type SeqListing } from './poller.js';
import { STORE, classify, describeCredentials, fail, makeContext, type S3Context, type S3StoreOptions } from './settings.js';

export type { S3StoreOptions } from './settings.js';
export type { ConditionState, Conditions } from './conditional.js';
export { normalizeEtag } from './settings.js';

const DEFAULT_POLL_MS = 1000;
const DEFAULT_LIST_INTERVAL_MS = 60_000;
const DEFAULT_GENERATION_DELAY_MS = 15;
const DEFAULT_PARALLEL_READS = 32;

/** An S3 store also tells which conditional requests its server enforces (after `init()`). */
export interface S3Store extends Store {
  readonly conditions: Conditions | null;
}

/**
 * S3-compatible object store, on the keys CLIProxyAPI's object store uses:
 * `[prefix/]config/config.yaml` (`application/x-yaml`) and `[prefix/]auths/<id>` (`application/json`),
 * bodies the exact bytes. credsync's own objects live under `[prefix/].credsync/` (the generation
 * object, the probe's scratch object) and are never listed as items.
 *
 * - Version: the ETag (quotes and `W/` stripped).
 * - Compare-and-swap: `If-None-Match: *` / `If-Match` where the server enforces them (settled by a
 *   probe at `init()`), else check-then-write with a verification read (warned about once).
 * - Watch: polling one generation object with a conditional GET; a listing by ETag when it moved
 *   and at least every `listIntervalMs` (see poller.ts).
 */
export function createS3Store(options: S3StoreOptions): S3Store {
  const ctx: S3Context = makeContext(options);
  const log = ctx.log;
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_MS;
  const listIntervalMs = options.listIntervalMs ?? DEFAULT_LIST_INTERVAL_MS;
  const mode = options.conditionalWrites ?? 'auto';
  let conditions: Conditions | null = null;
  let capabilities: StoreCapabilities = { cas: 'checked', watch: 'poll', pollIntervalMs };
  let closed = false;
  let credentialsLogged = false;
  let warnedCas = false;
  let bucketMissing = false;
  const bumper = new GenerationBumper(ctx, options.generationDelayMs ?? DEFAULT_GENERATION_DELAY_MS);
  const ops = objectOps({ ctx, conditions: () => conditions ?? OFF, wrote: () => bumper.noteWrite(), parallelReads: options.parallelReads ?? DEFAULT_PARALLEL_READS });
  const pollers = new Set<Poller>();
  const stops = new Set<StopWatching>();
  let listSeq = 0;
  let lastListStartedAt = 0;

  const open = (op: string): void => {
    if (closed) throw new StoreError(STORE, op, undefined, 'store is closed');
  };

  async function listSeqd(): Promise<SeqListing> {
    const seq = ++listSeq;
    const startedAt = Date.now();
    const listing = await ops.list();
    lastListStartedAt = Math.max(lastListStartedAt, startedAt);
    const out = { seq, listing };
    for (const p of pollers) p.observe(out);
    return out;
  }

  /** Returns false when the bucket is missing and `readOnly` forbade creating it. */
  async function ensureBucket(readOnly = false): Promise<boolean> {
    const Bucket = ctx.bucket;
    try {
      await ctx.client.send(new HeadBucketCommand({ Bucket }));
      return true;
    } catch (err) {
      const c = classify(err);
      if (c.kind === 'denied') {
        // A HEAD answer has no body: "access denied" and "wrong credentials" look alike. A listing of
        // the prefix (which the store needs anyway) tells them apart and proves the keys work.
        try {
          await ctx.client.send(new ListObjectsV2Command({ Bucket, Prefix: ctx.base || undefined, MaxKeys: 1 }));
        } catch (e) {
          throw fail(ctx, 'init', undefined, 'ListObjectsV2', `bucket ${Bucket}${ctx.base ? ` prefix ${ctx.base}` : ''}`, e);
        }
        log?.warn({ bucket: Bucket }, `s3 init ${ctx.id}: HeadBucket was denied (403), but listing the prefix works (least-privilege credentials); continuing without checking or creating the bucket`);
        return true;
      }
      if (c.kind !== 'not-found' && c.kind !== 'no-bucket') throw fail(ctx, 'init', undefined, 'HeadBucket', `bucket ${Bucket}`, err);
    }
    if (readOnly) return false;
    if (options.createBucket === false) {
      throw fail(ctx, 'init', undefined, 'HeadBucket', `bucket ${Bucket}`, Object.assign(new Error('no such bucket'), { name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } }));
    }
    const region = options.region || 'us-east-1';
    try {
      await ctx.client.send(
        new CreateBucketCommand({ Bucket, ...(region !== 'us-east-1' ? { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } } : {}) }),
      );
      log?.info({ bucket: Bucket }, `s3 init ${ctx.id}: bucket ${Bucket} did not exist; created it (set OBJECTSTORE_CREATE_BUCKET=false to never create one)`);
    } catch (err) {
      const c = classify(err);
      if (c.code === 'BucketAlreadyOwnedByYou') return true;
      if (c.code === 'BucketAlreadyExists') {
        // Another instance created it a moment ago (some servers answer this even to the owner), or
        // the name belongs to someone else: HeadBucket tells.
        try {
          await ctx.client.send(new HeadBucketCommand({ Bucket }));
          return true;
        } catch {
          throw new StoreConfigError(STORE, 'init', `bucket ${Bucket} could not be created: the name is taken by another account (409 BucketAlreadyExists)`, 'choose another OBJECTSTORE_BUCKET');
        }
      }
      throw fail(ctx, 'init', undefined, 'CreateBucket', `bucket ${Bucket}`, err);
    }
    return true;
  }

  const store: S3Store = {
    name: STORE,
    get capabilities() {
      return capabilities;
    },
    get conditions() {
      return conditions;
    },
    id: ctx.id,

    async init(o?: InitOptions): Promise<void> {
      open('init');
      if (o?.readOnly) {
        // status and dry runs: no bucket created, no probe object written; a missing bucket reads as empty.
        bucketMissing = !(await ensureBucket(true));
        return;
      }
      bucketMissing = false;
      const source = await describeCredentials(ctx);
      if (!credentialsLogged) {
        credentialsLogged = true;
        log?.info({ credentials: source }, `s3 init ${ctx.id}: credentials from ${source}`);
      }
      await ensureBucket();
      const settled = await settleConditions(ctx, mode);
      if (mode === 'require' && !writesEnforced(settled.conditions)) throw requireError(ctx, settled.conditions, settled.probeError);
      conditions = settled.conditions;
      const enforced = writesEnforced(conditions);
      capabilities = { cas: enforced ? 'enforced' : 'checked', watch: 'poll', pollIntervalMs };
      const summary = describeConditions(conditions);
      if (enforced) {
        log?.info({ conditions }, `s3 init ${ctx.id}: conditional writes enforced by the server (compare-and-swap: enforced); ${summary}`);
      } else if (!warnedCas) {
        warnedCas = true;
        log?.warn(
          { conditions, cas: 'checked' },
          `s3 init ${ctx.id}: conditional writes are NOT enforced by this server (${settled.probeError ?? summary}); ` +
            'credsync reads the ETag right before each write and verifies it right after (check-then-write): ' +
            'a second writer landing within those few milliseconds can still overwrite an update without a conflict being seen. ' +
            'Use a server that enforces If-Match/If-None-Match (AWS S3, MinIO, Ceph RGW, R2) to close that race, or set OBJECTSTORE_CONDITIONAL_WRITES=require to refuse to run without it',
        );
      }
    },

    async list(): Promise<Listing> {
      open('list');
      if (bucketMissing) return { entries: [], skipped: [] };
      return (await listSeqd()).listing;
    },

    get: (key) => {
      open('get');
      if (bucketMissing) {
        validateKey(key);
        return Promise.resolve(null);
      }
      return ops.get(key);
    },
    getMany: (keys) => {
      open('get');
      if (bucketMissing) {
        keys.forEach((k) => validateKey(k));
        return Promise.resolve([]);
      }
      return ops.getMany(keys);
    },
    put: (key, data, o) => {
      open('put');
      return ops.put(key, data, o);
    },
    delete: (key, o) => {
      open('delete');
      return ops.delete(key, o);
    },

    async watch(onChange: (change: Change) => void, wopts: WatchOptions): Promise<StopWatching> {
      open('watch');
      const poller = new Poller({ ctx, intervalMs: pollIntervalMs, listIntervalMs, list: listSeqd, lastListStartedAt: () => lastListStartedAt }, onChange, wopts);
      pollers.add(poller);
      const stopPoller = await poller.start();
      const stop: StopWatching = async () => {
        stops.delete(stop);
        pollers.delete(poller);
        await stopPoller();
      };
      stops.add(stop);
      return stop;
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await Promise.all([...stops].map((s) => s().catch(() => {})));
      await bumper.close().catch((err: unknown) => log?.warn({ err: errorMessage(err) }, 's3 close: generation bump failed'));
      ctx.client.destroy();
      ctx.pollClient.destroy();
    },
  };
  return store;
}
