/**
 * Helpers for the S3 end-to-end tests: daemon environment as CLIProxyAPI configures it (OBJECTSTORE_*),
 * raw views of the bucket, credentials for the tests.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { headRaw, listAll, type S3TestServer } from '../../support/s3-server.js';

export { authPath, configPath, conflictFiles, cred, exists, fileSig, logged, readJson, sameJson, stderrTails, waitGone, waitJson, writeAuth, writeConfig } from '../postgres/helpers.js';

/** Environment of one daemon: CLIProxyAPI's variables, plus a mirror of its own. */
export function s3Env(srv: Pick<S3TestServer, 'endpoint' | 'accessKey' | 'secretKey'>, bucket: string, mirror: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    OBJECTSTORE_ENDPOINT: srv.endpoint,
    OBJECTSTORE_BUCKET: bucket,
    OBJECTSTORE_ACCESS_KEY: srv.accessKey,
    OBJECTSTORE_SECRET_KEY: srv.secretKey,
    CREDSYNC_LOCAL_DIR: mirror,
    CREDSYNC_DEBOUNCE: '20ms',
    CREDSYNC_RECONCILE_INTERVAL: '60s',
    CREDSYNC_LOG_LEVEL: process.env.CREDSYNC_TEST_DAEMON_LOG_LEVEL ?? 'info',
    ...extra,
  };
}

export interface ObjectState {
  etag: string;
  lastModified: number;
  contentType?: string;
}

/** Every object of the bucket (or under a prefix) with its ETag, modification time and content type. */
export async function bucketState(c: S3Client, bucket: string, prefix?: string): Promise<Map<string, ObjectState>> {
  const out = new Map<string, ObjectState>();
  for (const o of await listAll(c, bucket, prefix)) {
    const h = await headRaw(c, bucket, o.Key!);
    if (h) out.set(o.Key!, { etag: h.etag, lastModified: h.lastModified?.getTime() ?? 0, contentType: h.contentType });
  }
  return out;
}

export const stats = (xs: number[]): string => {
  if (!xs.length) return 'n/a';
  const s = [...xs].sort((a, b) => a - b);
  return `n=${s.length} min=${s[0]} median=${s[Math.floor(s.length / 2)]} max=${s[s.length - 1]} ms`;
};
