/**
 * S3 servers and raw S3 operations for the S3 benchmarks: s3rver started here (stopped at cleanup),
 * Swift and RGW from the same variables as the tests (CREDSYNC_TEST_S3_SWIFT_URL / _RGW_URL,
 * `endpoint|access|secret`), started beforehand with ../shared/servers/start-*.sh.
 */
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { onCleanup } from './cleanup.js';
import { S3_SERVER_VARS, emptyPrefix, parseS3ServerVar, rawClient, startS3rver, uniqueName, type S3TestServer } from '../../test/support/s3-server.js';

export { emptyPrefix, ensureBucket, listAll, rawClient, uniqueName, type S3TestServer } from '../../test/support/s3-server.js';
export { startS3Proxy, type S3Proxy } from '../../test/support/s3-proxy.js';

export async function obtainS3Server(kind: 's3rver' | 'swift' | 'rgw'): Promise<S3TestServer> {
  if (kind === 's3rver') {
    const fromEnv = process.env[S3_SERVER_VARS.default]?.trim();
    const p = fromEnv ? parseS3ServerVar(S3_SERVER_VARS.default, fromEnv) : null;
    if (p) return { name: new URL(p.endpoint).host, kind: 'custom', ...p };
    const s = await startS3rver();
    onCleanup('stop s3rver', () => s.stop());
    return { name: 's3rver', kind: 's3rver', endpoint: s.endpoint, accessKey: s.accessKey, secretKey: s.secretKey };
  }
  const name = S3_SERVER_VARS[kind];
  const raw = process.env[name]?.trim();
  const p = raw ? parseS3ServerVar(name, raw) : null;
  if (!p) throw new Error(`${name} is not set: start the server with ../shared/servers/start-${kind === 'swift' ? 'swift-s3' : 'rgw'}.sh and set ${name}=endpoint|access|secret`);
  return { name: kind, kind, ...p };
}

/** Environment selecting the S3 store the way CLIProxyAPI deployments do. */
export function s3Env(srv: Pick<S3TestServer, 'endpoint' | 'accessKey' | 'secretKey'>, bucket: string, localDir: string): Record<string, string> {
  return {
    OBJECTSTORE_ENDPOINT: srv.endpoint,
    OBJECTSTORE_BUCKET: bucket,
    OBJECTSTORE_ACCESS_KEY: srv.accessKey,
    OBJECTSTORE_SECRET_KEY: srv.secretKey,
    CREDSYNC_LOCAL_DIR: localDir,
  };
}

/** A bucket for one benchmark, emptied and deleted at cleanup. */
export async function benchBucket(c: S3Client, tag: string): Promise<string> {
  const { CreateBucketCommand, DeleteBucketCommand } = await import('@aws-sdk/client-s3');
  const bucket = uniqueName(tag);
  await c.send(new CreateBucketCommand({ Bucket: bucket }));
  onCleanup(`delete bucket ${bucket}`, async () => {
    await emptyPrefix(c, bucket);
    await c.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
  });
  return bucket;
}

/** Uploads `items` with `parallel` PUTs in flight. */
export async function putMany(c: S3Client, bucket: string, items: ReadonlyArray<{ key: string; body: string; contentType?: string }>, parallel = 48): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const it = items[next++]!;
      await c.send(new PutObjectCommand({ Bucket: bucket, Key: it.key, Body: Buffer.from(it.body), ContentType: it.contentType }));
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
}

/** GETs `keys` with `parallel` requests in flight; returns the bytes read. */
export async function getMany(c: S3Client, bucket: string, keys: readonly string[], parallel = 32): Promise<number> {
  let next = 0;
  let bytes = 0;
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      const Key = keys[next++]!;
      const r = await c.send(new GetObjectCommand({ Bucket: bucket, Key }));
      bytes += (await r.Body!.transformToByteArray()).length;
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, keys.length) }, worker));
  return bytes;
}

/** AWS S3 Standard request prices (us-east-1): GET/HEAD per 1,000, LIST/PUT per 1,000. */
export const PRICE = { getPer1000: 0.0004, listPer1000: 0.005 } as const;
export const MINUTES_PER_MONTH = 60 * 24 * 30;
