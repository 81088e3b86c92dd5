import type { Logger } from 'pino';
import { ConflictError, InvalidKeyError, ItemRejectedError, StoreConfigError, StoreError, errorMessage } from '../core/errors.js';
import { keyKind, type Key } from '../core/keys.js';
import { forEachLimit } from '../core/limit.js';
import type { Item, Store } from '../core/store.js';
import { identityOfState, signatureOf, type FileIdentity, type Mirror } from '../mirror/mirror.js';
import { resolveConflict, type ConflictPolicy } from './conflict.js';
import type { DeleteWindow } from './guard.js';
import { validateContent } from '../core/canonical.js';
import { decide } from './decide.js';
import { isWork, judgeItem, localSide, type Plan } from './plan.js';
import type { Rejections } from './rejections.js';
import type { BaseEntry, StateFile } from './state.js';
import type { EngineObserver, ReconcileReport, SyncMode } from './types.js';

/** An outage (not a conflict, not one item's failure, not a configuration error): stop the pass, retry with backoff. */
export const isOutage = (err: unknown): boolean =>
  err instanceof StoreError && !(err instanceof ConflictError) && !(err instanceof ItemRejectedError) && !(err instanceof StoreConfigError);

const MAX_CAS_RETRIES = 3;

/** The signature remembered with a base entry, when the local file's identity is known. */
const sigOf = (id: FileIdentity | null | undefined): string | undefined => (id ? signatureOf(id) : undefined);
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
  /** Pushes sent and not yet answered, by key: resolve with the version stored (null when refused or failed). */
  private readonly inFlight = new Map<Key, Promise<string | null>>();

  constructor(private readonly d: ExecutorDeps) {}

  /**
   * The push of `key` in flight, if any: resolves with the version it stored, or null. A store
   * notification can arrive before the write's own answer; this tells it apart from someone else's.
   */
  pushInFlight(key: Key): Promise<string | null> | undefined {
    return this.inFlight.get(key);
  }

  async executeAll(plans: Plan[], mode: SyncMode, report: ReconcileReport, since?: ReadonlyMap<Key, number>, progress?: (done: number, total: number) => void): Promise<void> {
    // Progress counts real work only: keys already in sync finish instantly and would make the bar lie.
    const work = plans.filter(isWork).length;
    let done = 0;
    await forEachLimit(plans, EXECUTE_PARALLEL, async (plan) => {
      const counted = isWork(plan);
      await this.executeOne(plan, mode, report, since?.get(plan.key));
      if (counted && progress) progress(++done, work);
    });
  }

  /** Runs one plan; a CAS conflict or a concurrent local write re-plans that key (bounded). */
  private async executeOne(plan: Plan, mode: SyncMode, report: ReconcileReport, since?: number): Promise<void> {
    const { log, state } = this.d;
    let p: Plan | undefined = plan;
    for (let attempt = 0; p; attempt++) {
      this.recognisePushed(p, mode, report);
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

  /**
   * A push whose outcome was never recorded (a crash between sending it and saving the base, or an
   * outage that cut the answer) left an intent: when the store now holds exactly the content pushed,
   * that is our own push — the base becomes (that hash, the store's version) and the key is re-decided,
   * so a newer local write is pushed instead of losing a "conflict" against its own older push.
   * Either way the key's open intents are judged now and dropped (once the base is saved).
   */
  private recognisePushed(p: Plan, mode: SyncMode, report: ReconcileReport): void {
    const { state, log } = this.d;
    const intents = state.openIntents(p.key);
    if (intents.length === 0) return;
    state.resolveIntents(p.key);
    if (p.remote.kind !== 'valid' || !p.remoteVersion) return;
    const hash = p.remote.hash;
    if (!intents.some((i) => i.hash === hash)) return;
    if (p.base?.hash === hash && p.base.version === p.remoteVersion) return;
    const base = { hash, version: p.remoteVersion };
    state.setBase(p.key, base);
    log.info({ key: p.key, version: p.remoteVersion }, `push ${p.key}: the store holds our interrupted push; recorded as synced`);
    if (p.action !== 'conflict' && p.action !== 'pull' && p.action !== 'push') return;
    const action = decide(p.local, p.remote, base);
    p.base = base;
    if (action === 'delete-store' || action === 'delete-local') return; // deletions stay with the guarded table (edit beats delete)
    if ((mode === 'pull' && action === 'push') || (mode === 'push' && action === 'pull')) {
      p.action = 'held';
      report.held.push({ key: p.key, action, reason: `local change not pushed (${mode} only)`, guard: false });
      return;
    }
    p.action = action;
  }

  private async fetchItem(p: Plan): Promise<Item | null> {
    if (p.storeItem) return p.storeItem;
    const item = await this.d.store.get(p.key);
    if (item) p.storeItem = item;
    return item;
  }

  /** Reads the local file and checks it is still what was planned (the proxy may have written meanwhile). */
  private async localStillAsPlanned(p: Plan): Promise<{ same: boolean; data?: Uint8Array; hash?: string; id?: FileIdentity | null }> {
    const { state, data } = await this.d.mirror.inspect(p.key, true);
    const now = localSide(state);
    const same = now.kind === p.local.kind && (now.kind !== 'valid' || (p.local.kind === 'valid' && now.hash === p.local.hash));
    return { same, data, hash: now.kind === 'valid' ? now.hash : undefined, id: identityOfState(state) };
  }

  private async doPull(p: Plan, mode: SyncMode, report: ReconcileReport, since?: number): Promise<'done' | 'replan'> {
    const item = await this.fetchItem(p);
    if (!item) return 'replan';
    const side = judgeItem(item, this.d.maxItemBytes);
    if (side.kind !== 'valid') {
      if (side.kind === 'invalid') this.d.rejections.add({ key: p.key, source: 'store', reason: side.reason });
      return 'done';
    }
    if (p.localId === undefined) {
      // Planned without the file's identity: the old check (read, compare) before an unconditional write.
      const check = await this.localStillAsPlanned(p);
      if (!check.same) return 'replan';
    }
    const w = await this.d.mirror.write(p.key, item.data, side.hash, p.localId, p.local.kind === 'valid' ? p.local.hash : undefined);
    if (w.status === 'changed') {
      this.d.log.debug({ key: p.key }, `pull ${p.key}: the local file changed since planning; re-planning`);
      return 'replan';
    }
    this.synced('pull', p.key, { hash: side.hash, version: item.version, sig: sigOf(w.identity) }, report, since);
    if (w.status === 'replaced') return this.replacedLocalWrite(p, mode, item, w.replaced, w.identity, report);
    return 'done';
  }

  /**
   * A pull replaced a local write that landed after the last check (the proxy wrote in the last
   * instant). It is never dropped: kept under conflicts/, then re-decided by the policy against the
   * copy just pulled; when it wins, it is written back (replacing only our own write) and the key is
   * re-planned, which pushes it.
   */
  private async replacedLocalWrite(p: Plan, mode: SyncMode, item: Item, replaced: Uint8Array | null, written: FileIdentity | null, report: ReconcileReport): Promise<'done' | 'replan'> {
    const { log, mirror, observer } = this.d;
    if (!replaced) {
      log.warn({ key: p.key }, `pull ${p.key}: a local write landed while the pulled copy was written and could not be read back; re-planning`);
      return 'replan';
    }
    const v = validateContent(p.key, replaced);
    if (v.ok && p.local.kind === 'valid' && v.hash === p.local.hash) return 'done';
    if (v.ok && p.remote.kind === 'valid' && v.hash === p.remote.hash) return 'done';
    const keptAt = await mirror.keepConflict(p.key, 'local', replaced);
    if (!v.ok) {
      log.warn({ key: p.key, keptAt }, `pull ${p.key}: replaced a local write that was not valid (${v.reason}); it is kept at ${keptAt}`);
      return 'done';
    }
    const verdict = resolveConflict(p.key, this.d.conflictPolicy, replaced, item.data);
    report.conflicts.push({ key: p.key, winner: verdict.winner, why: verdict.why, keptAt });
    observer?.conflict(keyKind(p.key));
    log.warn(
      { key: p.key, winner: verdict.winner, why: verdict.why, keptAt },
      `conflict ${p.key}: a local write landed while the pulled copy was written; ${verdict.winner} copy wins (${verdict.why}); the local copy is kept at ${keptAt}`,
    );
    if (verdict.winner === 'store') return 'done';
    if (mode === 'pull') {
      report.held.push({ key: p.key, action: 'conflict', reason: `conflict: local copy wins (${verdict.why}) but this run is pull only; it is kept at ${keptAt}`, guard: false });
      return 'done';
    }
    // Written back only over our own write; a newer local write there already wins as it is.
    if (written) await mirror.write(p.key, replaced, v.hash, written);
    return 'replan';
  }

  private async doPush(p: Plan, report: ReconcileReport, since?: number): Promise<'done' | 'replan'> {
    // Content read with the hash the plan was judged on is sent as it is: a write landing after that
    // read has its own watcher event and is pushed by the next pass, on the version this push leaves.
    const check = p.localData && p.local.kind === 'valid' ? { same: true, data: p.localData, hash: p.local.hash, id: p.localId } : await this.localStillAsPlanned(p);
    if (!check.same || !check.data || !check.hash) return 'replan';
    const ifVersion = p.remote.kind === 'absent' ? null : (p.remoteVersion ?? null);
    // Write-ahead: a crash after the put and before the base is saved must not make our own push look like someone else's.
    await this.d.state.recordIntent(p.key, check.hash, ifVersion);
    let entry;
    const put = this.d.store.put(p.key, check.data, { ifVersion });
    const version = put.then((e) => e.version, () => null);
    this.inFlight.set(p.key, version);
    try {
      entry = await put;
    } catch (err) {
      // Refused for sure (CAS, item, key, configuration): the push did not land. An outage leaves the outcome unknown: the intent stays.
      if (!isOutage(err)) this.d.state.resolveIntents(p.key);
      throw err;
    } finally {
      if (this.inFlight.get(p.key) === version) this.inFlight.delete(p.key);
    }
    this.synced('push', p.key, { hash: check.hash, version: entry.version, sig: sigOf(check.id) }, report, since);
    this.d.state.resolveIntents(p.key);
    return 'done';
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
        if (p.local.kind === 'valid' && p.remoteVersion) state.setBase(p.key, { hash: p.local.hash, version: p.remoteVersion, sig: sigOf(p.localId) });
        state.clearPending(p.key);
        rejections.clear(p.key);
        return 'done';
      case 'forget':
        state.dropBase(p.key);
        state.clearPending(p.key);
        rejections.clear(p.key);
        return 'done';
      case 'pull':
        return this.doPull(p, mode, report, since);
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
        if (p.localId === undefined) {
          const check = await this.localStillAsPlanned(p);
          if (!check.same) return 'replan';
        }
        // Removes only the file planned against: one written meanwhile is left in place and re-planned.
        if ((await this.d.mirror.remove(p.key, p.localId, p.local.kind === 'valid' ? p.local.hash : undefined)) === 'changed') return 'replan';
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
        return verdict.winner === 'local' ? this.doPush(p, report, since) : this.doPull(p, mode, report, since);
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
