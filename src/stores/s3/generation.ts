import { randomBytes } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { errorMessage } from '../../core/errors.js';
import { classify, fail, generationKeyOf, normalizeEtag, type S3Context } from './settings.js';

/**
 * The generation object `[prefix/].credsync/generation`: every credsync writer rewrites it after a
 * batch of writes, so an idle watcher needs one conditional GET per interval (304 while nothing
 * changed) instead of a listing. Its content is bookkeeping only (writer, sequence, time).
 *
 * Bumps are coalesced: the first write of a burst schedules one bump `delayMs` later; writes landing
 * while a bump is in flight schedule exactly one more after it. So the last write of a burst is
 * always followed by a bump that started after it, and a burst of any size costs one or two PUTs.
 */
export class GenerationBumper {
  private readonly writer = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private seq = 0;
  private pending = false;
  private timer: NodeJS.Timeout | null = null;
  private inflight: Promise<void> | null = null;
  private warned = false;
  private closed = false;

  constructor(
    private readonly ctx: S3Context,
    private readonly delayMs: number,
  ) {}

  /** A write reached the server: make sure a bump follows it. */
  noteWrite(): void {
    if (this.closed) return;
    this.pending = true;
    if (!this.timer && !this.inflight) this.timer = setTimeout(() => void this.run(), this.delayMs);
  }

  private run(): Promise<void> {
    this.timer = null;
    if (!this.pending || this.inflight) return this.inflight ?? Promise.resolve();
    this.pending = false;
    this.inflight = this.bump().finally(() => {
      this.inflight = null;
      if (this.pending && !this.closed) this.timer = setTimeout(() => void this.run(), this.delayMs);
    });
    return this.inflight;
  }

  private async bump(): Promise<void> {
    const body = JSON.stringify({ writer: this.writer, seq: ++this.seq, at: new Date().toISOString() }) + '\n';
    const Key = generationKeyOf(this.ctx);
    try {
      await this.ctx.client.send(new PutObjectCommand({ Bucket: this.ctx.bucket, Key, Body: Buffer.from(body), ContentType: 'application/json' }));
      this.warned = false;
    } catch (err) {
      // Other writers' watchers then see this write at their next listing (at most one listing interval).
      if (!this.warned) {
        this.warned = true;
        const e = errorMessage(fail(this.ctx, 'generation', undefined, 'PutObject', Key, err));
        this.ctx.log?.warn({ err: e }, `s3 generation ${Key}: could not bump it (${e}); other instances see this change at their next full listing instead of within their poll interval`);
      }
    }
  }

  /** Performs a pending bump now and waits for the one in flight (before exiting). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.inflight) await this.inflight;
    if (this.pending) await this.run();
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }
}

export type GenerationCheck = { changed: boolean; etag: string | null };

/**
 * One conditional GET of the generation object: 304 when its ETag is still `known`.
 * `known === undefined`: nothing known yet (the first check is reported as changed).
 * Denied or failing requests throw (the caller decides).
 */
export async function checkGeneration(ctx: S3Context, known: string | null | undefined): Promise<GenerationCheck> {
  const Key = generationKeyOf(ctx);
  try {
    const r = await ctx.pollClient.send(new GetObjectCommand({ Bucket: ctx.bucket, Key, ...(known ? { IfNoneMatch: `"${known}"` } : {}) }));
    // Drain the small body so the connection goes back to the pool.
    await r.Body?.transformToByteArray().catch(() => undefined);
    const etag = normalizeEtag(r.ETag);
    return { changed: etag !== known, etag };
  } catch (err) {
    const k = classify(err).kind;
    if (k === 'not-modified') return { changed: false, etag: known ?? null };
    if (k === 'not-found') return { changed: known !== null, etag: null };
    throw fail(ctx, 'watch', undefined, 'GetObject', Key, err);
  }
}
