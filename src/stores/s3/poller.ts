import { ItemRejectedError, StoreConfigError, errorMessage } from '../../core/errors.js';
import type { Key } from '../../core/keys.js';
import type { Change, Listing, StopWatching, WatchOptions } from '../../core/store.js';
import { checkGeneration } from './generation.js';
import type { S3Context } from './settings.js';

/** A full listing with the order in which it started (a later-started listing is never overwritten by an earlier one). */
export interface SeqListing {
  readonly seq: number;
  readonly listing: Listing;
}

export interface PollerDeps {
  readonly ctx: S3Context;
  readonly intervalMs: number;
  /** A full listing is made at least this often (unless one was made meanwhile by `list()`). */
  readonly listIntervalMs: number;
  /** The store's full listing; every listing, whoever asked for it, is also handed to `observe`. */
  list(): Promise<SeqListing>;
  /** When the last full listing of this store started (ms since the epoch; 0 = never). */
  lastListStartedAt(): number;
}

const MAX_BACKOFF_MS = 30_000;

/**
 * Watches an S3 prefix by polling, cheaply:
 *
 * - each tick is ONE conditional GET of the generation object (`If-None-Match`, 304 while idle);
 * - when the generation moved, one paginated ListObjectsV2, compared by ETag with the previous
 *   listing: only changed keys are announced, with the new ETag as `version` (so the engine
 *   recognises its own writes and does not read them back);
 * - a full listing at least every `listIntervalMs` (unless the store was listed meanwhile), which
 *   catches writers that never bump the generation (CLIProxyAPI, `aws s3 cp`, a console upload);
 * - `onReady` after the first successful tick and after every recovery; `onError` when a tick fails
 *   (then retried with backoff). Ticks never overlap; the interval is jittered ±10 %.
 */
export class Poller {
  private snapshot: Map<Key, string> | null = null;
  private appliedSeq = 0;
  /** The generation object's ETag at the last check (`null`: absent; `undefined`: not read yet). */
  private genEtag: string | null | undefined = undefined;
  private failing = true;
  private failures = 0;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private current: Promise<void> | null = null;
  private forceList = false;
  /** Reading the generation object is denied: list at every tick instead (warned once). */
  private generationDenied = false;

  constructor(
    private readonly d: PollerDeps,
    private readonly onChange: (c: Change) => void,
    private readonly wopts: WatchOptions,
  ) {}

  /** Runs the first tick (resolving after it, whatever its outcome) and schedules the next ones. */
  async start(): Promise<StopWatching> {
    await this.runTick();
    return () => this.stop();
  }

  private async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.current?.catch(() => {});
  }

  /**
   * Compares a full listing with the previous one and announces the difference. Called for every
   * listing of the store (the watcher's own and `list()`'s): listings are applied in the order they
   * started, so an older one never overwrites a newer view.
   */
  observe({ seq, listing }: SeqListing): void {
    if (this.stopped || seq <= this.appliedSeq) return;
    this.appliedSeq = seq;
    const next = new Map<Key, string>();
    for (const e of listing.entries) next.set(e.key, e.version);
    const prev = this.snapshot;
    this.snapshot = next;
    if (!prev) return; // the baseline: the engine reconciles everything on onReady
    const changes: Change[] = [];
    for (const [key, version] of next) if (prev.get(key) !== version) changes.push({ key, op: 'put', version });
    for (const key of prev.keys()) if (!next.has(key)) changes.push({ key, op: 'delete' });
    for (const c of changes) {
      try {
        this.onChange(c);
      } catch (err) {
        this.d.ctx.log?.error({ err: errorMessage(err) }, 's3 watch: onChange threw');
      }
    }
  }

  private runTick(): Promise<void> {
    const started = Date.now();
    this.current = this.tick().then(
      () => this.schedule(started, true),
      () => this.schedule(started, false),
    );
    return this.current;
  }

  private schedule(startedAt: number, ok: boolean): void {
    if (this.stopped) return;
    const { intervalMs } = this.d;
    let wait: number;
    if (ok) {
      wait = Math.max(0, startedAt + intervalMs * (0.9 + Math.random() * 0.2) - Date.now());
    } else {
      const base = Math.min(MAX_BACKOFF_MS, intervalMs * 2 ** Math.min(this.failures, 10));
      wait = base * (0.75 + Math.random() * 0.5);
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runTick();
    }, wait);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const { ctx } = this.d;
    try {
      let list = this.forceList || this.snapshot === null || Date.now() - this.d.lastListStartedAt() >= this.d.listIntervalMs;
      if (!this.generationDenied) {
        try {
          const g = await checkGeneration(ctx, this.genEtag);
          if (g.changed) list = true;
          this.genEtag = g.etag;
        } catch (err) {
          if (!(err instanceof ItemRejectedError || (err instanceof StoreConfigError && /access denied/.test(err.message)))) throw err;
          this.generationDenied = true;
          ctx.log?.error(
            { err: errorMessage(err) },
            `s3 watch ${ctx.id}: ${errorMessage(err)}; without the generation object every poll is a full listing (grant s3:GetObject and s3:PutObject on ${ctx.base}.credsync/* to poll cheaply)`,
          );
        }
      }
      if (this.generationDenied) list = true;
      if (list) {
        // The listing starts after the generation was read: nothing announced by that generation is missed.
        this.observe(await this.d.list());
        this.forceList = false;
      }
      this.failures = 0;
      if (this.failing && !this.stopped) {
        this.failing = false;
        try {
          this.wopts.onReady();
        } catch (err) {
          ctx.log?.error({ err: errorMessage(err) }, 's3 watch: onReady threw');
        }
      }
    } catch (err) {
      this.failures++;
      // After an outage the next successful tick lists again (changes made meanwhile are compared).
      this.forceList = true;
      this.failing = true;
      if (this.failures > 1) {
        ctx.log?.debug({ err: errorMessage(err), failures: this.failures }, 's3 watch: poll failed again');
        throw err;
      }
      // Reported once per outage; onReady follows the first successful tick after it.
      ctx.log?.debug({ err: errorMessage(err) }, `s3 watch ${ctx.id}: poll failed; retrying with backoff`);
      try {
        this.wopts.onError?.(err instanceof Error ? err : new Error(String(err)));
      } catch (e) {
        ctx.log?.error({ err: errorMessage(e) }, 's3 watch: onError threw');
      }
      throw err;
    }
  }
}
