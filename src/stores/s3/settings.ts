import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import { ItemRejectedError, StoreConfigError, StoreError, errorMessage } from '../../core/errors.js';
import { CONFIG_KEY, type Key } from '../../core/keys.js';
import { redactUrl, scrubSecrets } from '../../core/redact.js';
import type { StoreSpec } from '../spec.js';

type S3Spec = Extract<StoreSpec, { kind: 's3' }>;

export const STORE = 's3';

/** Where credsync keeps its own objects, relative to the prefix. Never listed as an item. */
export const BOOKKEEPING_DIR = '.credsync/';
export const GENERATION_NAME = 'generation';

/**
 * The S3 settings of the store spec (`stores/spec.ts`: endpoint with its scheme, bucket, keys — both or
 * neither —, prefix, region, addressing, bucket creation, conditional-write mode, poll interval), plus
 * what only the store itself tunes.
 */
export interface S3StoreOptions extends Omit<S3Spec, 'kind'> {
  /**
   * The watcher lists every object by ETag at least this often (default 60 s), unless a `list()` of
   * this store did so meanwhile, so writers that do not bump the generation (CLIProxyAPI, `aws s3 cp`,
   * a console upload) are seen within this interval. The registry passes CREDSYNC_RECONCILE_INTERVAL.
   */
  readonly listIntervalMs?: number;
  /** Quiet time after a write before the generation object is bumped, coalescing a burst (default 15 ms). */
  readonly generationDelayMs?: number;
  /** Parallel GETs of `getMany` (default 32). */
  readonly parallelReads?: number;
  readonly log?: Logger;
}

/** A settled, validated view of the options that the parts of the store share. */
export interface S3Context {
  readonly bucket: string;
  /** `''` or `prefix/`. */
  readonly base: string;
  /** Redacted description: `s3://bucket/prefix at endpoint`. */
  readonly id: string;
  readonly endpoint: string;
  readonly log: Logger | undefined;
  /** Data operations (SDK retries on). */
  readonly client: S3Client;
  /** The watcher's requests: one attempt, short timeout; the poller has its own backoff. */
  readonly pollClient: S3Client;
  /** Values that must never appear in a message: the access key id and the secret key. */
  readonly secrets: readonly string[];
  /** How the SDK gets its credentials: `OBJECTSTORE_ACCESS_KEY/OBJECTSTORE_SECRET_KEY` or `the AWS default credential chain`. */
  readonly credentialSource: 'static' | 'chain';
}

export const objectKeyOf = (ctx: Pick<S3Context, 'base'>, key: Key): string => ctx.base + key;
export const generationKeyOf = (ctx: Pick<S3Context, 'base'>): string => `${ctx.base}${BOOKKEEPING_DIR}${GENERATION_NAME}`;

/** CLIProxyAPI's content types. */
export const contentTypeOf = (key: Key): string => (key === CONFIG_KEY ? 'application/x-yaml' : 'application/json');

/** An ETag as a version: quotes and the weak marker stripped (servers differ in what they return). */
export function normalizeEtag(etag: string | undefined | null): string | null {
  if (!etag) return null;
  const s = etag.trim().replace(/^W\//i, '').replace(/^"+|"+$/g, '');
  return s || null;
}

/**
 * The AWS SDK prints a deprecation notice for Node < 22 on stderr the first time a client is made,
 * which breaks the daemon's JSON log lines and is not something an operator of credsync can act on
 * (credsync supports Node 20.19+). Silenced unless the operator set the variable themselves.
 */
function silenceNodeVersionNotice(): void {
  if (process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED === undefined) {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  }
}

export function makeContext(o: S3StoreOptions): S3Context {
  silenceNodeVersionNotice();
  const endpoint = o.endpoint;
  const prefix = (o.prefix ?? '').replace(/^\/+|\/+$/g, '');
  const base = prefix ? `${prefix}/` : '';
  const tls = /^https:/i.test(endpoint);
  const agentOptions = { keepAlive: true, maxSockets: 64 };
  const agent = tls ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
  const haveKeys = Boolean(o.accessKey && o.secretKey);
  const common: S3ClientConfig = {
    endpoint,
    region: o.region || 'us-east-1',
    forcePathStyle: !o.virtualHostedStyle,
    // The SDK's default (CRC32 trailers on every upload, response validation) is not understood by
    // several S3-compatible servers (Swift 2.30, older MinIO/Ceph) and corrupts streamed bodies there.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...(haveKeys ? { credentials: { accessKeyId: o.accessKey!, secretAccessKey: o.secretKey! } } : {}),
  };
  const client = new S3Client({
    ...common,
    maxAttempts: 3,
    requestHandler: { httpAgent: tls ? undefined : agent, httpsAgent: tls ? agent : undefined, connectionTimeout: 5_000, requestTimeout: 30_000 },
  } as S3ClientConfig);
  const pollTimeout = Math.max(3_000, Math.min(15_000, 5 * (o.pollIntervalMs ?? 1000)));
  const pollClient = new S3Client({
    ...common,
    maxAttempts: 1,
    requestHandler: { httpAgent: tls ? undefined : agent, httpsAgent: tls ? agent : undefined, connectionTimeout: pollTimeout, requestTimeout: pollTimeout },
  } as S3ClientConfig);
  return {
    bucket: o.bucket,
    base,
    id: `s3://${o.bucket}/${prefix} at ${redactUrl(endpoint)}`,
    endpoint: redactUrl(endpoint),
    log: o.log?.child({ store: STORE }),
    client,
    pollClient,
    secrets: [o.accessKey, o.secretKey].filter((s): s is string => Boolean(s)),
    credentialSource: haveKeys ? 'static' : 'chain',
  };
}

/** Which provider of the default chain answered (the SDK tags resolved credentials with `$source`). */
export async function describeCredentials(ctx: S3Context): Promise<string> {
  if (ctx.credentialSource === 'static') return 'OBJECTSTORE_ACCESS_KEY/OBJECTSTORE_SECRET_KEY';
  let creds: { $source?: Record<string, unknown> };
  try {
    creds = (await ctx.client.config.credentials()) as typeof creds;
  } catch (err) {
    throw new StoreConfigError(
      STORE,
      'init',
      `no credentials for ${ctx.id}: OBJECTSTORE_ACCESS_KEY/OBJECTSTORE_SECRET_KEY are unset and the AWS default credential chain found none (${scrubSecrets(errorMessage(err), ctx.secrets)})`,
      'set OBJECTSTORE_ACCESS_KEY and OBJECTSTORE_SECRET_KEY, or provide AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, IRSA web identity, instance role)',
      { cause: new Error(errorMessage(err).split('\n')[0]) },
    );
  }
  const tags = Object.keys(creds.$source ?? {});
  const names: Record<string, string> = {
    CREDENTIALS_ENV_VARS: 'environment (AWS_ACCESS_KEY_ID)',
    CREDENTIALS_ENV_VARS_STS_WEB_ID_TOKEN: 'web identity token from the environment (IRSA)',
    CREDENTIALS_STS_ASSUME_ROLE_WEB_ID: 'web identity (AssumeRoleWithWebIdentity, e.g. IRSA)',
    CREDENTIALS_PROFILE: 'shared config/credentials profile',
    CREDENTIALS_PROFILE_SOURCE_PROFILE: 'shared config profile (source_profile)',
    CREDENTIALS_PROFILE_NAMED_PROVIDER: 'shared config profile (credential_source)',
    CREDENTIALS_PROFILE_STS_WEB_ID_TOKEN: 'shared config profile (web identity)',
    CREDENTIALS_PROFILE_SSO: 'shared config profile (SSO)',
    CREDENTIALS_PROFILE_SSO_LEGACY: 'shared config profile (SSO)',
    CREDENTIALS_PROFILE_PROCESS: 'shared config profile (credential_process)',
    CREDENTIALS_PROCESS: 'credential_process',
    CREDENTIALS_HTTP: 'container credentials endpoint (ECS/EKS Pod Identity)',
    CREDENTIALS_IMDS: 'instance metadata (EC2 instance role)',
    CREDENTIALS_SSO: 'SSO',
  };
  const known = tags.map((t) => names[t]).filter(Boolean);
  return `the AWS default credential chain: ${known.length ? known.join(', ') : tags.length ? tags.join(', ') : 'a provider of the chain'}`;
}

// ------------------------------------------------------------------ errors

/** What went wrong, read from an SDK error (or a network error). */
export interface Classified {
  readonly status: number | undefined;
  readonly code: string;
  kind:
    | 'not-found'
    | 'no-bucket'
    | 'not-modified'
    | 'precondition'
    | 'not-implemented'
    | 'conditional-conflict'
    | 'credentials'
    | 'denied'
    | 'region'
    | 'outage'
    | 'other';
}

const STATUS_NAMES: Record<number, string> = { 301: 'MovedPermanently', 304: 'NotModified', 400: 'BadRequest', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 412: 'PreconditionFailed', 500: 'InternalError', 501: 'NotImplemented', 503: 'ServiceUnavailable' };
const CREDENTIAL_CODES = new Set(['SignatureDoesNotMatch', 'InvalidAccessKeyId', 'InvalidToken', 'ExpiredToken', 'TokenRefreshRequired', 'InvalidSecurity', 'CredentialsProviderError']);
const DENIED_CODES = new Set(['AccessDenied', 'AllAccessDisabled', 'AccountProblem', 'Forbidden']);
const REGION_CODES = new Set(['AuthorizationHeaderMalformed', 'PermanentRedirect', 'IllegalLocationConstraintException', 'InvalidRegion']);

export function classify(err: unknown): Classified {
  const e = err as { name?: unknown; Code?: unknown; code?: unknown; $metadata?: { httpStatusCode?: number } } | null;
  const status = e?.$metadata?.httpStatusCode;
  let code = String((typeof e?.Code === 'string' && e.Code) || (typeof e?.name === 'string' && e.name) || (typeof e?.code === 'string' && e.code) || 'Error');
  // Answers without a body (HEAD, 304) carry no error code: name them by their status.
  if ((code === 'Unknown' || code === 'UnknownError') && status !== undefined) code = STATUS_NAMES[status] ?? `HTTP${status}`;
  const k = (kind: Classified['kind']): Classified => ({ status, code, kind });
  if (code === 'NoSuchBucket') return k('no-bucket');
  if (status === 304 || code === 'NotModified') return k('not-modified');
  if (status === 412 || code === 'PreconditionFailed') return k('precondition');
  if (status === 409 && code === 'ConditionalRequestConflict') return k('conditional-conflict');
  if (status === 501 || code === 'NotImplemented') return k('not-implemented');
  if (CREDENTIAL_CODES.has(code)) return k('credentials');
  if (REGION_CODES.has(code) || status === 301) return k('region');
  if (DENIED_CODES.has(code) || status === 403) return k('denied');
  if (status === 404 || code === 'NoSuchKey' || code === 'NotFound') return k('not-found');
  if (status === undefined || status >= 500 || status === 429 || status === 408 || code === 'SlowDown' || code === 'RequestTimeout' || code === 'TimeoutError') return k('outage');
  return k('other');
}

/** The IAM action an S3 API call needs, for messages that name what was denied. */
export const ACTION: Record<string, string> = {
  GetObject: 's3:GetObject',
  HeadObject: 's3:GetObject',
  PutObject: 's3:PutObject',
  DeleteObject: 's3:DeleteObject',
  ListObjectsV2: 's3:ListBucket',
  HeadBucket: 's3:ListBucket',
  CreateBucket: 's3:CreateBucket',
};

const CREDENTIALS_FIX = 'check OBJECTSTORE_ACCESS_KEY and OBJECTSTORE_SECRET_KEY (or the AWS credentials the default chain found)';

/**
 * Any failure → the contract's error classes, with a message that names the operation, the S3 action
 * and the object, and never a key or secret:
 * wrong credentials → StoreConfigError (with the fix); a missing bucket → StoreConfigError;
 * AccessDenied on one object → ItemRejectedError, on the bucket → StoreConfigError;
 * network, 5xx and throttling → StoreError (an outage: backoff and retry).
 */
export function fail(ctx: S3Context, op: string, key: Key | undefined, api: keyof typeof ACTION, target: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const c = classify(err);
  const scrub = (s: string): string => scrubSecrets(s, ctx.secrets);
  const action = ACTION[api] ?? api;
  const status = c.status ? `${c.status} ` : '';
  const raw = err instanceof Error ? err.message : String(err);
  // SDK messages for bodiless responses are "UnknownError"; only keep a message that says something.
  const detail = raw && raw !== 'UnknownError' && raw !== c.code ? `: ${scrub(raw.split('\n')[0]!.slice(0, 300))}` : '';
  const what = `${action} on ${target}`;
  const cause = new Error(`${status}${c.code}${detail}`);
  switch (c.kind) {
    case 'credentials':
      return new StoreConfigError(STORE, op, `${what}: the server rejected the credentials (${status}${c.code})`, CREDENTIALS_FIX, { cause });
    case 'region':
      return new StoreConfigError(STORE, op, `${what}: ${status}${c.code}${detail}`, 'check OBJECTSTORE_REGION (and OBJECTSTORE_ENDPOINT) against the bucket\'s region', { cause });
    case 'no-bucket':
      return new StoreConfigError(STORE, op, `bucket ${ctx.bucket} does not exist at ${ctx.endpoint}`, 'create it, fix OBJECTSTORE_BUCKET, or leave OBJECTSTORE_CREATE_BUCKET unset so credsync creates it', { cause });
    case 'denied': {
      const reason = `${what}: access denied (${status}${c.code})`;
      if (key !== undefined && api !== 'ListObjectsV2' && api !== 'HeadBucket' && api !== 'CreateBucket') {
        return new ItemRejectedError(STORE, op, key, `${reason}; grant ${action} on it to these credentials`, { cause });
      }
      return new StoreConfigError(STORE, op, reason, `grant ${action} on ${target} to these credentials (or ${CREDENTIALS_FIX})`, { cause });
    }
    default:
      return new StoreError(STORE, op, key, `${api} ${target}: ${status}${c.code}${detail}`, { cause });
  }
}
