import type { Logger } from 'pino';
import { ConfigError, StoreConfigError, errorMessage } from '../core/errors.js';
import { keyProblem, type Key } from '../core/keys.js';
import type { Change, StopWatching } from '../core/store.js';
import { watchTree } from '../fs/watcher.js';
import { isOutage } from './execute.js';
import { SETTLE_MS, type Reconciler } from './reconciler.js';
import type { EngineOptions } from './types.js';

/**
 * The daemon's scheduling: both watchers feed a set of dirty keys; one pump at a time runs passes
 * (a full reconcile when asked — at start, on every store re-subscription, at the interval, after a
 * failure — else a targeted pass over the dirty keys) until nothing is dirty. Failures back off
 * exponentially; nothing runs before `start()`.
 */
/** A configuration error that appears after start-up is retried this slowly (it needs an operator). */
const CONFIG_RETRY_MS = 60_000;
/** The delete guard's sliding window (see DeleteWindow). */
const GUARD_WINDOW_MS = 10_000;

export class Daemon {
  private readonly log: Logger;
  private readonly dirty = new Map<Key, number>();
  private readonly dirtyFromStore = new Set<Key>();
  /** Keys a local event marked (their file is read afresh; a key only the store announced may trust the stat cache). */
  private readonly dirtyLocal = new Set<Key>();
  /** Keys reported early (renamed into place): read now, but an invalid read is not yet a rejection. */
  private readonly tentative = new Set<Key>();
  private fullRequested = false;
  private pumping = false;
  private stopping = false;
  private started = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private intervalTimer: NodeJS.Timeout | null = null;
  private backoffMs: number;
  private stopWatchers: StopWatching[] = [];
  private storeWatchStarted = false;
  private _ready = false;

  constructor(
    private readonly o: EngineOptions,
    private readonly r: Reconciler,
  ) {
    this.log = o.log;
    this.backoffMs = o.backoffInitialMs ?? 500;
    r.onStoreUp = () => {
      this.backoffMs = this.o.backoffInitialMs ?? 500;
    };
    r.onHeld = () => this.recheckHeld();
  }

  /** True once the first full reconcile has finished. */
  get initialised(): boolean {
    return this._ready;
  }

  /** A key that kept changing through every retry: picked up again by the next targeted pass. */
  retryLater(key: Key): void {
    this.dirty.set(key, Date.now());
    this.dirtyFromStore.add(key);
  }

  private readonly keyRetry = new Map<Key, { delay: number; timer: NodeJS.Timeout | null; at: number }>();

  /**
   * One key failed on its own (a full disk, an I/O error): a targeted pass for it after 1 s, doubling
   * up to 30 s while it keeps failing; the rest of the daemon is not slowed.
   */
  retrySoon(key: Key): void {
    if (this.stopping || !this.started) return;
    const prev = this.keyRetry.get(key);
    if (prev?.timer) return;
    const delay = prev && Date.now() - prev.at < 60_000 ? Math.min(prev.delay * 2, 30_000) : 1000;
    const entry = { delay, at: Date.now(), timer: null as NodeJS.Timeout | null };
    entry.timer = setTimeout(() => {
      entry.timer = null;
      entry.at = Date.now();
      this.markDirty([key], true);
    }, delay);
    entry.timer.unref();
    this.keyRetry.set(key, entry);
  }

  /** Marks keys for a targeted pass. Local events and store events both land here. */
  private markDirty(keys: Key[], fromStore: boolean, tentative = false): void {
    const now = Date.now();
    for (const k of keys) {
      if (keyProblem(k)) continue;
      if (!this.dirty.has(k)) {
        this.dirty.set(k, now);
        if (tentative) this.tentative.add(k);
      } else if (!tentative) this.tentative.delete(k);
      if (fromStore) this.dirtyFromStore.add(k);
      else this.dirtyLocal.add(k);
    }
    this.kick();
  }

  private requestFull(): void {
    this.fullRequested = true;
    this.kick();
  }

  /** Runs passes until nothing is dirty. Only one pump runs at a time. */
  private kick(): void {
    if (this.pumping || this.stopping || this.retryTimer) return;
    this.pumping = true;
    void this.r.serial(async () => {
      try {
        while (!this.stopping && (this.fullRequested || this.dirty.size)) {
          if (this.fullRequested) {
            this.fullRequested = false;
            this.dirty.clear();
            this.dirtyFromStore.clear();
            this.dirtyLocal.clear();
            this.tentative.clear();
            await this.r.fullPass('sync');
            if (!this.storeWatchStarted) await this.startStoreWatch();
            if (!this._ready) {
              this._ready = true;
              this.log.info({ mirror: this.o.mirror.root, store: this.o.store.id }, `sync ${this.o.mirror.root}: initial reconcile done`);
            }
          } else {
            // The batch takes its keys' store flags with it: a notification arriving during the pass
            // marks the key again, flag included, for the next pass.
            const batch = new Map(this.dirty);
            const fromStore = new Set([...batch.keys()].filter((k) => this.dirtyFromStore.delete(k)));
            const tentative = new Set([...batch.keys()].filter((k) => this.tentative.delete(k)));
            const local = new Set([...batch.keys()].filter((k) => this.dirtyLocal.delete(k)));
            this.dirty.clear();
            try {
              await this.r.keysPass(batch, fromStore, tentative, local);
            } catch (err) {
              for (const [k, t] of batch) if (!this.dirty.has(k)) this.dirty.set(k, t);
              for (const k of fromStore) this.dirtyFromStore.add(k);
              for (const k of local) this.dirtyLocal.add(k);
              throw err;
            }
          }
          this.r.setStoreUp(true);
        }
      } catch (err) {
        this.onPassFailure(err);
      } finally {
        this.pumping = false;
      }
    });
  }

  private onPassFailure(err: unknown): void {
    if (err instanceof StoreConfigError || err instanceof ConfigError) {
      // Retrying cannot fix it. Before the first reconcile: stop, so `run` exits 2 with the fix.
      if (!this._ready && this.o.onFatal) {
        this.stopping = true;
        this.o.onFatal(err);
        return;
      }
      this.r.setStoreUp(false);
      this.backoffMs = Math.max(this.backoffMs, CONFIG_RETRY_MS);
      this.log.error({ store: this.o.store.id, retryInMs: this.backoffMs }, `sync ${this.o.store.id}: ${errorMessage(err)}; mirror kept as is; retrying in ${Math.round(this.backoffMs / 1000)} s`);
    } else if (isOutage(err)) {
      this.r.setStoreUp(false);
      this.log.warn(
        { store: this.o.store.id, retryInMs: this.backoffMs, pending: this.r.state.pendingCount },
        `sync ${this.o.store.id}: store unreachable (${errorMessage(err)}); mirror kept as is, local changes queued; retrying in ${this.backoffMs} ms`,
      );
    } else {
      this.log.error({ err: errorMessage(err) }, `sync ${this.o.mirror.root}: ${errorMessage(err)}; retrying in ${this.backoffMs} ms`);
    }
    if (this.stopping) return;
    const wait = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.o.backoffMaxMs ?? 30_000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.requestFull();
    }, wait);
  }

  /** Subscribes to store changes once the store has answered; `onReady` (re)subscriptions ask for a full pass. */
  private async startStoreWatch(): Promise<void> {
    this.storeWatchStarted = true;
    if (!this.o.store.watch || this.stopping) return;
    const onChange = (c: Change): void => {
      const base = this.r.state.base(c.key);
      // Our own write coming back: judged by version (content-derived), not by timers.
      if (c.op === 'put' && c.version && base?.version === c.version) return;
      if (c.op === 'delete' && !base && !this.dirty.has(c.key)) return;
      // … or arriving before our write's own answer: wait for that answer instead of a pass that re-reads.
      const ours = c.op === 'put' && c.version ? this.r.executor.pushInFlight(c.key) : undefined;
      if (ours) {
        void ours.then((stored) => {
          if (stored !== c.version) this.markDirty([c.key], true);
        });
        return;
      }
      this.markDirty([c.key], true);
    };
    try {
      const stop = await this.o.store.watch(onChange, {
        onReady: () => this.requestFull(),
        onError: (err) => {
          this.r.setStoreUp(false);
          this.log.warn({ store: this.o.store.id, err: err.message }, `watch ${this.o.store.id}: ${err.message}; reconnecting`);
        },
      });
      if (this.stopping) await stop();
      else this.stopWatchers.push(stop);
    } catch (err) {
      this.storeWatchStarted = false;
      this.log.warn({ store: this.o.store.id, err: errorMessage(err) }, `watch ${this.o.store.id}: ${errorMessage(err)}; relying on periodic reconciles until it can subscribe`);
    }
  }

  private settleTimer: NodeJS.Timeout | null = null;
  private heldTimer: NodeJS.Timeout | null = null;

  /** A guard held deletions: reconcile again once its window (10 s) has passed, so they are not stuck until the next interval. */
  private recheckHeld(): void {
    if (!this.started || this.stopping || this.heldTimer) return;
    this.heldTimer = setTimeout(() => {
      this.heldTimer = null;
      this.requestFull();
    }, GUARD_WINDOW_MS + 500);
    this.heldTimer.unref();
  }

  /**
   * A directory of the mirror vanished or appeared: reconcile at once (files may have been written
   * before the new directory's watch was armed), and again once it has settled, when deletions held
   * meanwhile are decided.
   */
  private onStructural(): void {
    this.r.structuralAt = Date.now();
    this.requestFull();
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => {
      this.settleTimer = null;
      this.requestFull();
    }, SETTLE_MS + 50);
    this.settleTimer.unref();
  }

  /** Starts watching both sides; the first full reconcile runs at once (retried with backoff). */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.r.announceRecovery = true;
    this.stopWatchers.push(
      await watchTree(this.o.mirror.tree, {
        debounceMs: this.o.debounceMs,
        onKeys: (keys) => this.markDirty(keys, false),
        onRenamed: (keys) => this.markDirty(keys, false, true),
        onStructural: () => this.onStructural(),
        onError: (err) => this.log.warn({ err: err.message }, `watch ${this.o.mirror.root}: ${err.message}`),
      }),
    );
    this.intervalTimer = setInterval(() => this.requestFull(), this.o.reconcileIntervalMs);
    this.intervalTimer.unref();
    this.requestFull();
  }

  /**
   * Stops watchers, then pushes what is pending with one final pass (bounded by `timeoutMs`).
   * Resolves true when everything was flushed.
   */
  async stop(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    if (this.heldTimer) clearTimeout(this.heldTimer);
    for (const r of this.keyRetry.values()) if (r.timer) clearTimeout(r.timer);
    this.retryTimer = null;
    await Promise.allSettled(this.stopWatchers.map((s) => s()));
    this.stopWatchers = [];
    let timer: NodeJS.Timeout | undefined;
    const statePath = this.r.state.path;
    const flush = this.r.serial(() => this.r.fullPass('push')).then(
      () => true,
      (err: unknown) => {
        this.log.warn({ err: errorMessage(err) }, `shutdown: final push failed (${errorMessage(err)}); pending changes stay queued in ${statePath}`);
        return false;
      },
    );
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    const ok = await Promise.race([flush, timeout]);
    clearTimeout(timer);
    if (!ok) this.log.warn({ timeoutMs }, `shutdown: flush incomplete after ${timeoutMs} ms; pending changes stay queued in ${statePath}`);
    return ok;
  }
}
