import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import type { Diagnosis } from '../../core/store.js';
import { describeConditions, settleConditions, writesEnforced } from './conditional.js';
import { BOOKKEEPING_DIR, classify, makeContext, type S3StoreOptions } from './settings.js';

/**
 * `doctor`'s S3 checks, with the store's own client settings: list, put, get and delete on the
 * prefix (a probe object under `.credsync/`, never under `config/` or `auths/`), and which conditional
 * requests the server enforces. Each failure names the S3 action and what to grant. Never throws.
 */
export async function diagnoseS3(o: S3StoreOptions): Promise<Diagnosis[]> {
  const ctx = makeContext(o);
  const out: Diagnosis[] = [];
  const probe = `${ctx.base}${BOOKKEEPING_DIR}doctor-${randomBytes(6).toString('hex')}`;
  const step = async (action: string, fn: () => Promise<unknown>): Promise<boolean> => {
    try {
      await fn();
      return true;
    } catch (err) {
      const c = classify(err);
      out.push({
        status: 'fail',
        check: `s3 ${action}`,
        detail: `${action} on ${probe.startsWith(ctx.base) ? `${ctx.bucket}/${probe}` : probe}: ${c.code ?? c.kind}`,
        fix: c.kind === 'denied' ? `grant ${action} on arn:aws:s3:::${ctx.bucket}/${ctx.base}* to these credentials (${ctx.credentialSource === 'static' ? 'OBJECTSTORE_ACCESS_KEY' : 'the AWS default credential chain'})` : 'check OBJECTSTORE_ENDPOINT, OBJECTSTORE_BUCKET and the credentials',
      });
      return false;
    }
  };
  try {
    try {
      await ctx.client.send(new ListObjectsV2Command({ Bucket: ctx.bucket, Prefix: ctx.base || undefined, MaxKeys: 1 }));
    } catch (err) {
      const c = classify(err);
      if (c.kind === 'no-bucket' || c.kind === 'not-found') {
        out.push({
          status: o.createBucket === false ? 'fail' : 'warn',
          check: 's3 bucket',
          detail: `bucket ${ctx.bucket} does not exist`,
          fix: o.createBucket === false ? 'create the bucket, or leave OBJECTSTORE_CREATE_BUCKET unset so credsync creates it' : 'credsync creates it at its first start (OBJECTSTORE_CREATE_BUCKET is not false)',
        });
        return out;
      }
    }
    const ok =
      (await step('s3:ListBucket', () => ctx.client.send(new ListObjectsV2Command({ Bucket: ctx.bucket, Prefix: ctx.base || undefined, MaxKeys: 1 })))) &&
      (await step('s3:PutObject', () => ctx.client.send(new PutObjectCommand({ Bucket: ctx.bucket, Key: probe, Body: Buffer.from('doctor probe\n'), ContentType: 'text/plain' })))) &&
      (await step('s3:GetObject', () => ctx.client.send(new GetObjectCommand({ Bucket: ctx.bucket, Key: probe })))) &&
      (await step('s3:DeleteObject', () => ctx.client.send(new DeleteObjectCommand({ Bucket: ctx.bucket, Key: probe }))));
    if (ok) out.push({ status: 'ok', check: 's3 permissions', detail: `list, put, get and delete work on ${ctx.bucket}/${ctx.base}` });
    const settled = await settleConditions(ctx, 'auto').catch((err: unknown) => ({ conditions: null, probeError: (err as Error).message }));
    if (!settled.conditions) {
      out.push({ status: 'warn', check: 's3 conditional writes', detail: `could not probe: ${settled.probeError}`, fix: 'check the permissions above' });
      return out;
    }
    out.push(
      writesEnforced(settled.conditions)
        ? { status: 'ok', check: 's3 conditional writes', detail: `enforced by the server (${describeConditions(settled.conditions)})` }
        : {
            status: 'warn',
            check: 's3 conditional writes',
            detail: `not enforced by this server (${settled.probeError ?? describeConditions(settled.conditions)}): credsync checks then writes; two writers within milliseconds can overwrite each other`,
            fix: 'use a server that enforces If-Match/If-None-Match (AWS S3, MinIO, Ceph RGW, R2), or accept the race',
          },
    );
  } finally {
    ctx.client.destroy();
    ctx.pollClient.destroy();
  }
  return out;
}
