import { randomBytes } from 'node:crypto';
import { DeleteObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { StoreConfigError } from '../../core/errors.js';
import { BOOKKEEPING_DIR, STORE, classify, fail, normalizeEtag, type S3Context } from './settings.js';

/**
 * Whether the server enforces conditional requests, settled once per store at `init()`, per operation:
 *
 * - `enforced`: the server refuses a write whose condition fails (412);
 * - `rejected`: it refuses conditional writes altogether (501, Swift's s3api, Backblaze);
 * - `ignored`: it accepts the header and writes anyway (s3rver, Wasabi, the GCS XML API);
 * - `off`: not used (`OBJECTSTORE_CONDITIONAL_WRITES=off`);
 * - `unknown`: the probe could not tell (e.g. no permission under `.credsync/`).
 *
 * Where an operation is not enforced the store reads the ETag right before the write and checks
 * again after it (check-then-write), which leaves a window of a few milliseconds in which another
 * writer's update can be overwritten. That is warned about once and exposed in the capabilities.
 */
export type ConditionState = 'enforced' | 'rejected' | 'ignored' | 'off' | 'unknown';

export interface Conditions {
  /** `PutObject` with `If-None-Match: *` (create only if absent). */
  readonly create: ConditionState;
  /** `PutObject` with `If-Match: <etag>`. */
  readonly update: ConditionState;
  /** `DeleteObject` with `If-Match: <etag>`. */
  readonly del: ConditionState;
  /** The form of the ETag the server matches `If-Match` against: bare (RGW needs this) or quoted. */
  readonly ifMatchForm: 'bare' | 'quoted';
}

export const OFF: Conditions = { create: 'off', update: 'off', del: 'off', ifMatchForm: 'bare' };

/** Formats an ETag for `If-Match` in the form the server accepted in the probe. */
export const ifMatchValue = (c: Conditions, version: string): string => (c.ifMatchForm === 'quoted' ? `"${version}"` : version);

/** An ETag that no object has (If-Match with it must fail). */
const BOGUS_ETAG = '00000000000000000000000000000000';

type Outcome = 'ok' | 'precondition' | 'not-implemented';

/** A probe request that failed for another reason than its condition (kept raw for classification). */
class ProbeFailure extends Error {
  constructor(
    readonly api: 'PutObject' | 'HeadObject' | 'DeleteObject',
    readonly target: string,
    readonly err: unknown,
  ) {
    super(`${api} ${target}`);
  }
}

/**
 * The probe: a scratch object under `[prefix/].credsync/` written with conditions that must fail.
 * About eight requests, once per process; the scratch object is removed afterwards.
 */
export async function probeConditions(ctx: S3Context): Promise<Conditions> {
  const Bucket = ctx.bucket;
  const Key = `${ctx.base}${BOOKKEEPING_DIR}probe-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const body = (n: number): Buffer => Buffer.from(`credsync conditional-write probe ${n}\n`);
  const put = async (n: number, cond: { IfNoneMatch?: string; IfMatch?: string }): Promise<Outcome> => {
    try {
      await ctx.client.send(new PutObjectCommand({ Bucket, Key, Body: body(n), ContentType: 'text/plain', ...cond }));
      return 'ok';
    } catch (err) {
      const c = classify(err);
      if (c.kind === 'precondition' || c.kind === 'conditional-conflict') return 'precondition';
      if (c.kind === 'not-implemented') return 'not-implemented';
      throw new ProbeFailure('PutObject', Key, err);
    }
  };
  const head = async (): Promise<string | null> => {
    try {
      return normalizeEtag((await ctx.client.send(new HeadObjectCommand({ Bucket, Key }))).ETag);
    } catch (err) {
      if (classify(err).kind === 'not-found') return null;
      throw new ProbeFailure('HeadObject', Key, err);
    }
  };
  const state = (o: Outcome): ConditionState => (o === 'precondition' ? 'enforced' : o === 'not-implemented' ? 'rejected' : 'ignored');

  await put(1, {});
  try {
    // 1. create-if-absent on an existing object must fail.
    const create = state(await put(2, { IfNoneMatch: '*' }));

    // 2. If-Match with an ETag the object does not have must fail; with its ETag it must succeed,
    //    in the form the server matches (RGW: only without quotes; RFC 7232 and AWS: quoted too).
    let update = state(await put(3, { IfMatch: BOGUS_ETAG }));
    let ifMatchForm: Conditions['ifMatchForm'] = 'bare';
    if (update === 'enforced') {
      const cur = await head();
      if (!cur || (await put(4, { IfMatch: cur })) !== 'ok') {
        const again = await head();
        if (again && (await put(5, { IfMatch: `"${again}"` })) === 'ok') ifMatchForm = 'quoted';
        else update = 'rejected'; // refuses every If-Match: unusable
      }
    }

    // 3. A conditional delete with a wrong ETag must leave the object in place.
    if ((await head()) === null) await put(6, {});
    let del: ConditionState;
    try {
      await ctx.client.send(new DeleteObjectCommand({ Bucket, Key, IfMatch: BOGUS_ETAG }));
      del = (await head()) === null ? 'ignored' : 'enforced';
    } catch (err) {
      const c = classify(err);
      if (c.kind === 'precondition') del = 'enforced';
      else if (c.kind === 'not-implemented') del = 'rejected';
      else throw new ProbeFailure('DeleteObject', Key, err);
    }
    return { create, update, del, ifMatchForm };
  } finally {
    await ctx.client.send(new DeleteObjectCommand({ Bucket, Key })).catch(() => {});
  }
}

/** `auto`: probe, and fall back to check-then-write when the probe itself fails (logged). */
export async function settleConditions(ctx: S3Context, mode: 'auto' | 'require' | 'off'): Promise<{ conditions: Conditions; probeError?: string }> {
  if (mode === 'off') return { conditions: OFF };
  try {
    return { conditions: await probeConditions(ctx) };
  } catch (err) {
    if (!(err instanceof ProbeFailure)) throw err;
    const c = classify(err.err);
    const e = fail(ctx, 'init', undefined, err.api, err.target, err.err);
    // Credentials, a missing bucket, a wrong region and an outage are what they are whatever the mode;
    // anything else (typically no permission under .credsync/) only leaves the probe undecided.
    if (c.kind === 'credentials' || c.kind === 'no-bucket' || c.kind === 'region' || c.kind === 'outage') throw e;
    return { conditions: { create: 'unknown', update: 'unknown', del: 'unknown', ifMatchForm: 'bare' }, probeError: `the probe failed: ${e.message}` };
  }
}

/** Puts are enforced: what `capabilities.cas = 'enforced'` means for this store. */
export const writesEnforced = (c: Conditions): boolean => c.create === 'enforced' && c.update === 'enforced';

const WHY: Record<ConditionState, string> = {
  enforced: 'enforced',
  rejected: 'rejected by the server (501 NotImplemented)',
  ignored: 'ignored by the server (it writes anyway)',
  off: 'not used (OBJECTSTORE_CONDITIONAL_WRITES=off)',
  unknown: 'unknown (the probe under .credsync/ failed)',
};

export function describeConditions(c: Conditions): string {
  return `If-None-Match on PutObject ${WHY[c.create]}; If-Match on PutObject ${WHY[c.update]}${c.update === 'enforced' ? ` (ETag sent ${c.ifMatchForm === 'bare' ? 'without' : 'with'} quotes)` : ''}; If-Match on DeleteObject ${WHY[c.del]}`;
}

/** `require` without enforced writes: a configuration error (exit 2) that says why. */
export function requireError(ctx: S3Context, c: Conditions, probeError?: string): StoreConfigError {
  return new StoreConfigError(
    STORE,
    'init',
    `OBJECTSTORE_CONDITIONAL_WRITES=require, but the server at ${ctx.endpoint} does not enforce conditional writes: ${probeError ?? describeConditions(c)}`,
    'use a server that enforces If-Match/If-None-Match (AWS S3, MinIO, Ceph RGW, Cloudflare R2), or set OBJECTSTORE_CONDITIONAL_WRITES=auto to accept check-then-write',
  );
}
