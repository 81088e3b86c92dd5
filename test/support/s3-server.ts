/**
 * S3 servers for tests. No vitest import here: bench/ uses it too.
 *
 * - s3rver (npm), started as a child process by `startS3rver()` — it needs
 *   `node --openssl-legacy-provider` for paginated listings (DES continuation tokens), so it runs
 *   from `s3rver-runner.mjs` with that flag; `stop()` ends it and waits for the exit. It checks the
 *   access key id but not SigV4 signatures, and ignores conditional writes.
 * - OpenStack Swift with s3api and Ceph's RADOS Gateway, started outside (`.ci/run`, or by hand with
 *   ../shared/servers/start-swift-s3.sh / start-rgw.sh) and named by environment variables.
 *
 * Server variables (global-setup.ts reads them): `endpoint|accessKey|secretKey`, or a URL with the
 * keys as its (URL-encoded) user info, `http://ACCESS:SECRET@host:port`; `skip` leaves the server out
 * on purpose (even in CI). Unset: s3rver is started instead of CREDSYNC_TEST_S3_URL; Swift and RGW are
 * not tested — a failure in CI, where every server must be there.
 *
 *   CREDSYNC_TEST_S3_URL        replaces the s3rver started here (any S3 server)
 *   CREDSYNC_TEST_S3_SWIFT_URL  OpenStack Swift s3api (answers 501 to conditional PUTs)
 *   CREDSYNC_TEST_S3_RGW_URL    Ceph RADOS Gateway (enforces If-None-Match / If-Match)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type _Object,
} from '@aws-sdk/client-s3';

/** What each kind of server does with conditional requests (checked on these machines). */
export type ServerKind = 's3rver' | 'swift' | 'rgw' | 'custom';

export interface S3TestServer {
  /** For test names: `s3rver`, `swift`, `rgw`, or the host of CREDSYNC_TEST_S3_URL. */
  readonly name: string;
  readonly kind: ServerKind;
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
}

/** Expected outcome of the conditional-write probe per kind (`custom`: not asserted). */
export const EXPECTED_CONDITIONS: Record<Exclude<ServerKind, 'custom'>, { create: string; update: string; del: string; cas: 'enforced' | 'checked' }> = {
  s3rver: { create: 'ignored', update: 'ignored', del: 'ignored', cas: 'checked' },
  swift: { create: 'rejected', update: 'rejected', del: 'enforced', cas: 'checked' },
  rgw: { create: 'enforced', update: 'enforced', del: 'ignored', cas: 'enforced' },
};

export const S3_SERVER_VARS = {
  default: 'CREDSYNC_TEST_S3_URL',
  swift: 'CREDSYNC_TEST_S3_SWIFT_URL',
  rgw: 'CREDSYNC_TEST_S3_RGW_URL',
} as const;

/** `endpoint|access|secret` or `http://access:secret@host:port`; null for `skip`. Throws on anything else. */
export function parseS3ServerVar(name: string, raw: string): { endpoint: string; accessKey: string; secretKey: string } | null {
  const v = raw.trim();
  if (/^(skip|off|none)$/i.test(v)) return null;
  if (v.includes('|')) {
    const [endpoint, accessKey, secretKey] = v.split('|');
    if (!endpoint || !accessKey || !secretKey) throw new Error(`${name}: expected endpoint|accessKey|secretKey`);
    return { endpoint, accessKey, secretKey };
  }
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new Error(`${name}: expected endpoint|accessKey|secretKey or http://ACCESS:SECRET@host:port`);
  }
  const accessKey = decodeURIComponent(u.username);
  const secretKey = decodeURIComponent(u.password);
  if (!accessKey || !secretKey) throw new Error(`${name}: the URL needs the access and secret keys as user info (URL-encoded)`);
  u.username = '';
  u.password = '';
  return { endpoint: u.toString().replace(/\/$/, ''), accessKey, secretKey };
}

export interface RunningS3rver {
  readonly endpoint: string;
  readonly port: number;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly dir: string;
  /** SIGTERM, wait for the exit (SIGKILL after 5 s), remove the directory. Idempotent. */
  stop(): Promise<void>;
}

const RUNNER = fileURLToPath(new URL('./s3rver-runner.mjs', import.meta.url));

/** Starts s3rver on a free port in a temp directory (about 0.3 s). */
export async function startS3rver(): Promise<RunningS3rver> {
  const dir = await mkdtemp(join(tmpdir(), 'credsync-s3rver-'));
  const child: ChildProcess = spawn(process.execPath, ['--openssl-legacy-provider', RUNNER, dir], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => (stderr = (stderr + c).slice(-4000)));
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within 15 s; stderr: ${stderr}`)), 15_000);
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (c: string) => {
        out += c;
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) {
          clearTimeout(timer);
          resolve((JSON.parse(line) as { port: number }).port);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited with code ${code}; stderr: ${stderr}`));
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    accessKey: 'S3RVER',
    secretKey: 'S3RVER',
    dir,
    stop: () =>
      (stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(t);
        }
        await rm(dir, { recursive: true, force: true });
      })()),
  };
}

// ------------------------------------------------------------------ raw access for tests

/** A plain SDK client on a test server: what a foreign writer (CLIProxyAPI, `aws s3 cp`) would use. */
export function rawClient(s: Pick<S3TestServer, 'endpoint' | 'accessKey' | 'secretKey'>): S3Client {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({
    endpoint: s.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s.accessKey, secretAccessKey: s.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A name no test has used: `credsync-<tag>-<time>-<random>` (S3 bucket-name rules: lower case, ≤ 63). */
export function uniqueName(tag: string): string {
  return `cs-${tag}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`.toLowerCase().slice(0, 63);
}

export async function ensureBucket(c: S3Client, Bucket: string): Promise<void> {
  try {
    await c.send(new CreateBucketCommand({ Bucket }));
  } catch (err) {
    const name = (err as Error).name;
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw err;
  }
}

export async function listAll(c: S3Client, Bucket: string, Prefix?: string): Promise<_Object[]> {
  const out: _Object[] = [];
  let ContinuationToken: string | undefined;
  do {
    const r = await c.send(new ListObjectsV2Command({ Bucket, Prefix, ContinuationToken }));
    out.push(...(r.Contents ?? []));
    ContinuationToken = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (ContinuationToken);
  return out;
}

/** Deletes every object under `prefix` (or the whole bucket). */
export async function emptyPrefix(c: S3Client, Bucket: string, Prefix?: string): Promise<void> {
  const objs = await listAll(c, Bucket, Prefix).catch(() => []);
  await Promise.all(objs.map((o) => c.send(new DeleteObjectCommand({ Bucket, Key: o.Key! })).catch(() => {})));
}

export async function putRaw(c: S3Client, Bucket: string, Key: string, body: string | Buffer, ContentType?: string): Promise<string> {
  const r = await c.send(new PutObjectCommand({ Bucket, Key, Body: Buffer.from(body), ContentType }));
  return (r.ETag ?? '').replace(/"/g, '');
}

export async function getRaw(c: S3Client, Bucket: string, Key: string): Promise<{ body: Buffer; etag: string; contentType?: string } | null> {
  try {
    const r = await c.send(new GetObjectCommand({ Bucket, Key }));
    return { body: Buffer.from(await r.Body!.transformToByteArray()), etag: (r.ETag ?? '').replace(/"/g, ''), contentType: r.ContentType };
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null;
    throw err;
  }
}

export async function headRaw(c: S3Client, Bucket: string, Key: string): Promise<{ etag: string; contentType?: string; lastModified?: Date } | null> {
  try {
    const r = await c.send(new HeadObjectCommand({ Bucket, Key }));
    return { etag: (r.ETag ?? '').replace(/"/g, ''), contentType: r.ContentType, lastModified: r.LastModified };
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null;
    throw err;
  }
}
