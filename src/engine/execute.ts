import type { Logger } from 'pino';
import { ConflictError, InvalidKeyError, ItemRejectedError, StoreConfigError, StoreError, errorMessage } from '../core/errors.js';
import { keyKind, type Key } from '../core/keys.js';
import { forEachLimit } from '../core/limit.js';
import type { Item, Store } from '../core/store.js';
import type { Mirror } from '../mirror/mirror.js';
import { resolveConflict, type ConflictPolicy } from './conflict.js';
import type { DeleteWindow } from './guard.js';
import { judgeItem, localSide, type Plan } from './plan.js';
import type { Rejections } from './rejections.js';
import type { BaseEntry, StateFile } from './state.js';
import type { EngineObserver, ReconcileReport, SyncMode } from './types.js';

/** An outage (not a conflict, not one item's failure, not a configuration error): stop the pass, retry with backoff. */
export const isOutage = (err: unknown): boolean =>
  err instanceof StoreError && !(err instanceof ConflictError) && !(err instanceof ItemRejectedError) && !(err instanceof StoreConfigError);

const MAX_CAS_RETRIES = 3;
const EXECUTE_PARALLEL = 16;

export interface ExecutorDeps {
  readonly store: Store;
  readonly mirror: Mirror;
  readonly state: StateFile;
  readonly log: Logger;
  readonly observer?: EngineObserver;
  readonly rejections: Rejections;
  readonly conflictPolicy: ConflictPolicy;
  readonly storeDeletes: DeleteWindow;
  readonly localDeletes: DeleteWindow;
  readonly maxItemBytes?: number;
  /** Plans one key again from fresh reads (after a CAS conflict or a concurrent local write), guards applied. */
  replan(key: Key, mode: SyncMode, report: ReconcileReport): Promise<Plan | undefined>;
  /** The key kept changing through every retry: hand it to the next pass. */
  giveUp(key: Key): void;
  /** One key failed locally (ENOSPC, EIO …): try it again soon, with a backoff of its own. */
  retrySoon?(key: Key): void;
}

/**
 * Carries out plans: pulls, pushes (conditional on the version planned), deletions, conflicts. Every
 * outcome is recorded in the base, the report, the metrics and the log. Keys are independent and run
 * concurrently (bounded); an outage stops new work and fails the pass.
 */
export class Executor {
  constructor(private readonly d: ExecutorDeps) {}

  async executeAll(plans: Plan[], mode: SyncMode, report: ReconcileReport, since?: ReadonlyMap<Key, number>, progress?: (done: number, total: number) => void): Promise<void> {
    // Progress counts real work only: keys already in sync finish instantly and would make the bar lie.
    const work = plans.filter((p) => p.action !== 'in-sync' && p.action !== 'forget' && p.action !== 'held').length;
    let done = 0;
    await forEachLimit(plans, EXECUTE_PARALLEL, async (plan) => {
      const counted = plan.action !== 'in-sync' && plan.action !== 'forget' && plan.action !== 'held';
      await this.executeOne(plan, mode, report, since?.get(plan.key));
      if (counted && progress) progress(++done, work);
    });
  }

  /** Runs one plan; a CAS conflict or a concurrent local write re-plans that key (bounded). */
  private async executeOne(plan: Plan, mode: SyncMode, report: ReconcileReport, since?: number): Promise<void> {
    const { log, state } = this.d;
    let p: Plan | undefined = plan;
    for (let attempt = 0; p; attempt++) {
      try {
        const r = await this.execute(p, mode, report, since);
        if (r === 'done') return;
      } catch (err) {
        if (err instanceof ConflictError) {
          log.info({ key: p.key }, `${errorMessage(err)}; re-reading and retrying`);
        } else if (err instanceof ItemRejectedError) {
          this.d.rejections.add({ key: p.key, source: p.action === 'pull' || p.action === 'delete-local' ? 'store' : 'local', reason: err.message });
          return;
        } else if (isOutage(err) || err instanceof StoreConfigError) {
          if (p.action === 'push' || p.action === 'delete-store' || p.action === 'conflict') state.markPending(p.key, errorMessage(err));
          throw err;
        } else if (err instanceof InvalidKeyError) {
          this.d.rejections.add({ key: p.key, source: 'local', reason: err.reason });
          return;
        } else {
          // One item's failure (a full disk, an I/O error on one file) is that item's: every other key
          // keeps syncing, and this one is retried soon rather than at the next periodic reconcile.
          report.errors.push({ key: p.key, error: errorMessage(err) });
          log.error({ key: p.key, err: errorMessage(err) }, `sync ${p.key}: ${errorMessage(err)}; retrying this key soon`);
          this.d.retrySoon?.(p.key);
          return;
        }
      }
      if (attempt >= MAX_CAS_RETRIES) {
        report.errors.push({ key: p.key, error: 'kept changing while syncing; will retry' });
        this.d.giveUp(p.key);
        return;
      }
      p = await this.d.replan(p.key, mode, report);
    }
  }

  private async fetchItem(p: Plan): Promise<Item | null> {
    if (p.storeItem) return p.storeItem;
    const item = await this.d.store.get(p.key);
    if (item) p.storeItem = item;
    return item;
  }

  /** Reads the local file and checks it is still what was planned (the proxy may have written meanwhile). */
  private async localStillAsPlanned(p: Plan): Promise<{ same: boolean; data?: Uint8Array; hash?: string }> {
    const { state, data } = await this.d.mirror.inspect(p.key, true);
    const now = localSide(state);
    const same = now.kind === p.local.kind && (now.kind !== 'valid' || (p.local.kind === 'valid' && now.hash === p.local.hash));
    return { same, data, hash: now.kind === 'valid' ? now.hash : undefined };
  }

  private async doPull(p: Plan, report: ReconcileReport, since?: number): Promise<'done' | 'replan'> {
    const item = await this.fetchItem(p);
    if (!item) return 'replan';
    const side = judgeItem(item, this.d.maxItemBytes);
    if (side.kind !== 'valid') {
      if (side.kind === 'invalid') this.d.rejections.add({ key: p.key, source: 'store', reason: side.reason });
      return 'done';
    }
    const check = await this.localStillAsPlanned(p);
    if (!check.same) return 'replan';
    await this.d.mirror.write(p.key, item.data, side.hash);
    return this.synced('pull', p.key, { hash: side.hash, version: item.version }, report, since);
  }

  private async doPush(p: Plan, report: ReconcileReport, since?: number): Promise<'done' | 'replan'> {
    const check = await this.localStillAsPlanned(p);
    if (!check.same || !check.data || !check.hash) return 'replan';
    const entry = await this.d.store.put(p.key, check.data, { ifVersion: p.remote.kind === 'absent' ? null : (p.remoteVersion ?? null) });
    return this.synced('push', p.key, { hash: check.hash, version: entry.version }, report, since);
  }

  /** Records a pull or push that just happened: new base, queue and rejection cleared, counted, logged. */
  private synced(direction: 'pull' | 'push', key: Key, base: BaseEntry, report: ReconcileReport, since?: number): 'done' {
    this.d.state.setBase(key, base);
    this.d.state.clearPending(key);
    this.d.rejections.clear(key);
    (direction === 'pull' ? report.pulled : report.pushed).push(key);
    this.d.observer?.synced(direction, keyKind(key));
    if (since !== undefined) this.d.observer?.propagation(direction, (Date.now() - since) / 1000);
    this.d.log.debug({ key, version: base.version }, direction === 'pull' ? `pull ${key}: written to mirror` : `push ${key}: stored`);
    return 'done';
  }

  private async execute(p: Plan, mode: SyncMode, report: ReconcileReport, since?: number): Promise<'done' | 'replan'> {
    const { state, rejections, observer, log } = this.d;
    const kind = keyKind(p.key);
    switch (p.action) {
      case 'in-sync':
        if (p.local.kind === 'valid' && p.remoteVersion) state.setBase(p.key, { hash: p.local.hash, version: p.remoteVersion });
        state.clearPending(p.key);
        rejections.clear(p.key);
        return 'done';
      case 'forget':
        state.dropBase(p.key);
        state.clearPending(p.key);
        rejections.clear(p.key);
        return 'done';
      case 'pull':
        return this.doPull(p, report, since);
      case 'push':
        if (p.remote.kind === 'invalid') rejections.clear(p.key);
        return this.doPush(p, report, since);
      case 'delete-store': {
        await this.d.store.delete(p.key, { ifVersion: p.remoteVersion });
        this.d.storeDeletes.record([p.key]);
        state.dropBase(p.key);
        state.clearPending(p.key);
        report.deletedStore.push(p.key);
        observer?.synced('delete-store', kind);
        log.debug({ key: p.key }, `delete ${p.key}: removed from store (deleted locally)`);
        return 'done';
      }
      case 'delete-local': {
        const check = await this.localStillAsPlanned(p);
        if (!check.same) return 'replan';
        await this.d.mirror.remove(p.key);
        this.d.localDeletes.record([p.key]);
        state.dropBase(p.key);
        state.clearPending(p.key);
        report.deletedLocal.push(p.key);
        observer?.synced('delete-local', kind);
        log.debug({ key: p.key }, `delete ${p.key}: removed from mirror (deleted in store)`);
        return 'done';
      }
      case 'conflict': {
        const item = await this.fetchItem(p);
        const check = await this.localStillAsPlanned(p);
        if (!item || !check.same || !check.data) return 'replan';
        const verdict = resolveConflict(p.key, this.d.conflictPolicy, check.data, item.data);
        if ((mode === 'pull' && verdict.winner === 'local') || (mode === 'push' && verdict.winner === 'store')) {
          report.held.push({ key: p.key, action: 'conflict', reason: `conflict: ${verdict.winner} copy wins (${verdict.why}) but this run is ${mode} only`, guard: false });
          return 'done';
        }
        const keptAt = await this.d.mirror.keepConflict(p.key, verdict.winner === 'local' ? 'store' : 'local', verdict.winner === 'local' ? item.data : check.data);
        report.conflicts.push({ key: p.key, winner: verdict.winner, why: verdict.why, keptAt });
        observer?.conflict(kind);
        log.warn({ key: p.key, winner: verdict.winner, why: verdict.why, keptAt }, `conflict ${p.key}: ${verdict.winner} copy wins (${verdict.why}); the other copy is kept at ${keptAt}`);
        p.action = verdict.winner === 'local' ? 'push' : 'pull';
        return verdict.winner === 'local' ? this.doPush(p, report, since) : this.doPull(p, report, since);
      }
      case 'reject-local':
        if (p.local.kind === 'invalid') rejections.add({ key: p.key, source: 'local', reason: p.local.reason });
        return 'done';
      case 'reject-store':
        if (p.remote.kind === 'invalid') rejections.add({ key: p.key, source: 'store', reason: p.remote.reason });
        return 'done';
      case 'held':
        return 'done';
    }
  }
}
