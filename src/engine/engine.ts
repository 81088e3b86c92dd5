import type { Logger } from 'pino';
import type { Mirror, LocalState } from '../mirror/mirror.js';
import { validateContent } from '../core/canonical.js';
import { ConflictError, ItemRejectedError, StoreConfigError, StoreError, InvalidKeyError, errorMessage } from '../core/errors.js';
import { CONFIG_KEY, keyKind, keyProblem, type Key, type KeyKind } from '../core/keys.js';
import type { Change, Entry, Item, Store, StoreCapabilities, StopWatching } from '../core/store.js';
import { decide, type Action, type Side } from './decide.js';
import { resolveConflict, type ConflictPolicy } from './conflict.js';
import { allowedDeletes, DeleteWindow, formatDeleteLimit, type DeleteLimit } from './guard.js';
import { StateFile, type BaseEntry } from './state.js';
import { watchTree } from '../fs/watcher.js';
import { readFile } from 'node:fs/promises';
import { forEachLimit } from '../core/limit.js';

/** Receives counters and gauges; the HTTP layer implements it with prom-client. */
export interface EngineObserver {
  synced(action: 'push' | 'pull' | 'delete-store' | 'delete-local', kind: KeyKind): void;
  conflict(kind: KeyKind): void;
  rejected(source: 'local' | 'store', kind: KeyKind): void;
  rejectedNow(count: number): void;
  storeUp(up: boolean): void;
  pending(count: number): void;
  lastSync(at: number): void;
  propagation(direction: 'push' | 'pull', seconds: number): void;
  /** What the store promises, once it is initialised (e.g. whether its server enforces compare-and-swap). */
  storeCapabilities?(capabilities: StoreCapabilities): void;
}

export type SyncMode = 'sync' | 'pull' | 'push';

export interface EngineOptions {
  readonly store: Store;
  readonly mirror: Mirror;
  readonly log: Logger;
  readonly conflictPolicy: ConflictPolicy;
  readonly maxDelete: DeleteLimit;
  /** Per-key quiet time for local file events. */
  readonly debounceMs: number;
  /** Full reconcile safety net while running. */
  readonly reconcileIntervalMs: number;
  readonly observer?: EngineObserver;
  /** Seed for the config when neither side has one (CLIProxyAPI copies config.example.yaml). */
  readonly seedConfigPath?: string;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
}

export interface Rejection {
  readonly key: string;
  readonly source: 'local' | 'store';
  readonly reason: string;
}

export interface ReconcileReport {
  pulled: Key[];
  pushed: Key[];
  deletedLocal: Key[];
  deletedStore: Key[];
  conflicts: { key: Key; winner: 'local' | 'store'; why: string; keptAt: string }[];
  rejected: Rejection[];
  /** Actions not taken: the mode forbids them, or a guard refused them. */
  held: { key: Key; action: Action; reason: string }[];
  errors: { key: Key; error: string }[];
}

export type ItemState = 'in-sync' | 'local-only' | 'store-only' | 'differs' | 'rejected';

export interface StatusReport {
  store: string;
  /** What the store promises (compare-and-swap enforced or checked, watch push or poll). */
  capabilities: StoreCapabilities;
  mirror: string;
  ready: boolean;
  storeUp: boolean;
  lastSyncAt: string | null;
  counts: Record<ItemState, number>;
  items: { key: string; state: ItemState; source?: 'local' | 'store'; reason?: string }[];
  pending: { key: Key; since: string; attempts: number; lastError?: string }[];
}

interface Plan {
  key: Key;
  action: Action;
  local: Side;
  remote: Side;
  /** Store version observed when planning (CAS precondition); undefined when absent. */
  remoteVersion?: string;
  base?: BaseEntry;
  storeItem?: Item;
  /** Why a guard or the mode changed the action, for the report. */
  note?: string;
}

const emptyReport = (): ReconcileReport => ({
  pulled: [],
  pushed: [],
  deletedLocal: [],
  deletedStore: [],
  conflicts: [],
  rejected: [],
  held: [],
  errors: [],
});

/**
 * An outage (not a conflict, not one refused item): stop the pass, queue local changes, retry with
 * backoff. A StoreConfigError counts too (the store is unusable), but is logged as an error with its fix
 * and retried slowly; at start-up it ends the daemon instead (exit 2).
 */
const isOutage = (err: unknown): boolean => err instanceof StoreError && !(err instanceof ConflictError) && !(err instanceof ItemRejectedError);

/**
 * Judges a store item. A store sets `Item.hash` (the canonical content hash) only for valid content,
 * so the item is parsed and hashed here only when the store did not already do it.
 */
function judgeItem(item: Item): Side {
  if (item.hash) return { kind: 'valid', hash: item.hash };
  const v = validateContent(item.key, item.data);
  return v.ok ? { kind: 'valid', hash: v.hash } : { kind: 'invalid', reason: v.reason };
}

const MAX_CAS_RETRIES = 3;
const FETCH_BATCH = 500;
const FETCH_PARALLEL = 8;
const EXECUTE_PARALLEL = 16;

/**
 * The sync engine: three-way reconcile of mirror (L) against store (R) with the remembered base (B).
 * Only the Store interface is known here. One-shot commands call `open()`, then `reconcile()`, then
 * `close()`; the daemon calls `start()` and `stop()`. All passes run one at a time.
 */
export class Engine {
  readonly state: StateFile;
  private readonly log: Logger;
  private readonly rejections = new Map<string, Rejection>();
  private readonly storeDeletes = new DeleteWindow();
  private readonly localDeletes = new DeleteWindow();
  private readonly dirty = new Map<Key, number>();
  private fullRequested = false;
  private running: Promise<void> | null = null;
  private stopping = false;
  private started = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private intervalTimer: NodeJS.Timeout | null = null;
  private backoffMs: number;
  private stopWatchers: Array<StopWatching> = [];
  private _ready = false;
  private _storeUp = false;
  private lastStoreCount = 0;

  constructor(private readonly o: EngineOptions) {
    this.state = new StateFile(o.mirror.stateDir, o.store.id);
    this.log = o.log;
    this.backoffMs = o.backoffInitialMs ?? 500;
  }

  get ready(): boolean {
    return this._ready && this._storeUp;
  }

  get storeUp(): boolean {
    return this._storeUp;
  }

  /** Prepares the mirror and loads the base. Does not touch the store (it may be down). */
  async open(): Promise<void> {
    await this.o.mirror.init();
    const note = await this.state.load();
    if (note) this.log.warn({ file: this.state.path }, `state ${this.state.path}: ${note}`);
    this.o.observer?.pending(this.state.pendingKeys().length);
    if (this.state.data.lastSyncAt) this.o.observer?.lastSync(this.state.data.lastSyncAt);
  }

  private setStoreUp(up: boolean): void {
    if (up === this._storeUp) return;
    this._storeUp = up;
    this.o.observer?.storeUp(up);
    if (up) {
      this.backoffMs = this.o.backoffInitialMs ?? 500;
      if (this.started) this.log.info({ store: this.o.store.id }, `store ${this.o.store.id}: reachable`);
    }
  }

  // ---------------------------------------------------------------- planning

  private localSide(s: LocalState): Side {
    if (!s.present) return { kind: 'absent' };
    return s.valid ? { kind: 'valid', hash: s.hash } : { kind: 'invalid', reason: s.reason };
  }

  /** Judges the store side. Fetches the item only when its hash cannot be known from the listing or base. */
  private async remoteSide(key: Key, entry: Entry | null, base: BaseEntry | undefined, item?: Item | null): Promise<{ side: Side; item?: Item }> {
    if (!entry || item === null) return { side: { kind: 'absent' } };
    if (!item) {
      if (entry.hash) return { side: { kind: 'valid', hash: entry.hash } };
      if (base && base.version === entry.version) return { side: { kind: 'valid', hash: base.hash } };
      item = await this.o.store.get(key);
      if (!item) return { side: { kind: 'absent' } };
    }
    return { side: judgeItem(item), item };
  }

  private async planKey(key: Key, local: LocalState, entry: Entry | null, item?: Item | null): Promise<Plan> {
    const base = this.state.base(key);
    const r = await this.remoteSide(key, entry, base, item);
    const remoteVersion = r.item?.version ?? entry?.version;
    const l = this.localSide(local);
    return { key, action: decide(l, r.side, base), local: l, remote: r.side, remoteVersion, base, storeItem: r.item };
  }

  /** Plans every key: full store listing, full mirror scan, and every key of the base. */
  private storeInitialised = false;

  private async ensureStore(): Promise<void> {
    if (this.storeInitialised) return;
    await this.o.store.init();
    this.storeInitialised = true;
    this.o.observer?.storeCapabilities?.(this.o.store.capabilities);
    this.setStoreUp(true);
  }

  private async planAll(): Promise<{ plans: Plan[]; storeCount: number }> {
    await this.ensureStore();
    const listing = await this.o.store.list();
    this.setStoreUp(true);
    const scan = await this.o.mirror.scan();
    const entries = new Map(listing.entries.map((e) => [e.key, e]));
    const keys = new Set<Key>([...entries.keys(), ...scan.items.keys(), ...this.state.baseKeys()]);
    // Items whose hash neither the listing nor the base tells are fetched up front, in batches.
    const unknown = listing.entries.filter((e) => !e.hash && this.state.base(e.key)?.version !== e.version).map((e) => e.key);
    const items = await this.fetchMany(unknown);
    const plans: Plan[] = [];
    for (const key of [...keys].sort()) {
      if (keyProblem(key)) continue;
      const entry = entries.get(key) ?? null;
      plans.push(await this.planKey(key, scan.items.get(key) ?? { present: false }, entry, entry ? items.get(key) : undefined));
    }
    for (const s of scan.skipped) this.reject({ key: s.id, source: 'local', reason: s.reason });
    for (const s of listing.skipped) this.reject({ key: s.id, source: 'store', reason: s.reason });
    this.lastStoreCount = listing.entries.length;
    return { plans, storeCount: listing.entries.length };
  }

  /** Fetches items with `getMany` when the store has it, else with bounded parallel `get`s. */
  private async fetchMany(keys: Key[]): Promise<Map<Key, Item | null>> {
    const out = new Map<Key, Item | null>();
    if (!keys.length) return out;
    if (this.o.store.getMany) {
      for (let i = 0; i < keys.length; i += FETCH_BATCH) {
        const chunk = keys.slice(i, i + FETCH_BATCH);
        const got = await this.o.store.getMany(chunk);
        for (const it of got) out.set(it.key, it);
        for (const k of chunk) if (!out.has(k)) out.set(k, null);
      }
      return out;
    }
    await forEachLimit(keys, FETCH_PARALLEL, async (k) => {
      out.set(k, await this.o.store.get(k));
    });
    return out;
  }

  /**
   * Plans the given keys. A key whose local file equals the base is skipped without reading the
   * store (our own write, or a touch) — unless `readStore` says a store change was announced for it.
   */
  private async planKeys(keys: Key[], readStore: (key: Key) => boolean): Promise<Plan[]> {
    const locals = new Map<Key, LocalState>();
    await forEachLimit(keys, FETCH_PARALLEL * 4, async (key) => {
      locals.set(key, (await this.o.mirror.inspect(key, true)).state);
    });
    const toRead = keys.filter((key) => {
      const state = locals.get(key)!;
      const base = this.state.base(key);
      // A local event whose content equals the base is our own write (or a touch): nothing to do.
      if (state.present && state.valid && base?.hash === state.hash && !readStore(key)) {
        this.clearRejection(key);
        return false;
      }
      return state.present || base !== undefined || readStore(key);
    });
    if (toRead.length === 0) return [];
    const items = await this.fetchMany(toRead);
    this.setStoreUp(true);
    const plans: Plan[] = [];
    for (const key of toRead) {
      const item = items.get(key) ?? null;
      plans.push(await this.planKey(key, locals.get(key)!, item, item));
    }
    return plans;
  }

  // ---------------------------------------------------------------- guards

  /** Applies the mode and the deletion guards (invariant 5). Mutates plans' actions. */
  private async guard(plans: Plan[], mode: SyncMode, storeCount: number, report: ReconcileReport): Promise<void> {
    const hold = (p: Plan, reason: string): void => {
      report.held.push({ key: p.key, action: p.action, reason });
      p.note = reason;
      p.action = 'held';
    };
    const restore = (p: Plan, reason: string): void => {
      report.held.push({ key: p.key, action: p.action, reason });
      p.note = reason;
      p.action = mode === 'push' ? 'held' : 'pull';
    };

    const storeDel = plans.filter((p) => p.action === 'delete-store');
    if (storeDel.length) {
      const cfg = storeDel.find((p) => p.key === CONFIG_KEY);
      if (cfg) {
        restore(cfg, `${CONFIG_KEY} is missing locally; the config is never deleted from the store automatically — restoring it`);
        this.log.warn({ key: CONFIG_KEY }, `delete ${CONFIG_KEY}: refused (config deletion is never propagated); restoring the store copy`);
      }
      const auths = storeDel.filter((p) => p.key !== CONFIG_KEY);
      if (auths.length) {
        const localAuths = await this.o.mirror.tree.countAuthFiles();
        const allowed = allowedDeletes(this.o.maxDelete, storeCount);
        const wouldBe = auths.length + this.storeDeletes.recent();
        let reason: string | null = null;
        if (localAuths === 0) {
          reason = `${this.o.mirror.root}/auths is empty or missing: not deleting ${auths.length} item(s) from the store; restoring them locally`;
        } else if (wouldBe > allowed) {
          reason = `deleting ${wouldBe} of ${storeCount} store items exceeds --max-delete ${formatDeleteLimit(this.o.maxDelete)}: refused; restoring them locally (raise --max-delete for one run to delete on purpose)`;
        }
        if (reason) {
          this.log.error({ count: auths.length, keys: auths.slice(0, 20).map((p) => p.key) }, `reconcile ${this.o.mirror.root}: ${reason}`);
          for (const p of auths) restore(p, reason);
          // Refused deletions count too: the rest of the same burst, arriving in a later watcher
          // batch after some files were restored, must not slip under the limit.
          this.storeDeletes.record(auths.length);
        }
      }
    }

    const localDel = plans.filter((p) => p.action === 'delete-local');
    if (localDel.length) {
      const baseCount = this.state.baseKeys().length;
      const wouldBe = localDel.length + this.localDeletes.recent();
      const allowed = allowedDeletes(this.o.maxDelete, Math.max(baseCount, storeCount + localDel.length));
      if (wouldBe > allowed) {
        const reason = `the store lost ${wouldBe} of ${baseCount} items: more than --max-delete ${formatDeleteLimit(this.o.maxDelete)}; keeping the local files (the store may have been wiped or replaced)`;
        this.log.error({ count: localDel.length, keys: localDel.slice(0, 20).map((p) => p.key) }, `reconcile ${this.o.store.id}: ${reason}`);
        for (const p of localDel) hold(p, reason);
        this.localDeletes.record(localDel.length);
      }
    }

    for (const p of plans) {
      if (mode === 'pull' && (p.action === 'push' || p.action === 'delete-store')) hold(p, 'local change not pushed (pull only)');
      if (mode === 'push' && (p.action === 'pull' || p.action === 'delete-local')) hold(p, 'store change not pulled (push only)');
    }
  }

  // ---------------------------------------------------------------- execution

  private reject(r: Rejection): void {
    const id = `${r.source}:${r.key}`;
    const prev = this.rejections.get(id);
    this.rejections.set(id, r);
    if (!prev || prev.reason !== r.reason) {
      const what = r.source === 'local' ? 'not pushed' : 'not written locally';
      this.log.warn({ key: r.key, source: r.source, reason: r.reason }, `validate ${r.key} (${r.source}): ${r.reason}; ${what} — fix the file, the store keeps the last good version`);
      if (keyProblem(r.key) === null) this.o.observer?.rejected(r.source, keyKind(r.key));
      else this.o.observer?.rejected(r.source, 'auth');
    }
    this.o.observer?.rejectedNow(this.rejections.size);
  }

  private clearRejection(key: Key): void {
    const a = this.rejections.delete(`local:${key}`);
    const b = this.rejections.delete(`store:${key}`);
    if (a || b) this.o.observer?.rejectedNow(this.rejections.size);
  }

  private async fetchItem(p: Plan): Promise<Item | null> {
    if (p.storeItem) return p.storeItem;
    const item = await this.o.store.get(p.key);
    if (item) p.storeItem = item;
    return item;
  }

  /** Reads the local file and checks it is still what was planned (the proxy may have written meanwhile). */
  private async localStillAsPlanned(p: Plan): Promise<{ same: boolean; data?: Uint8Array; hash?: string }> {
    const { state, data } = await this.o.mirror.inspect(p.key, true);
    const now = this.localSide(state);
    const same = now.kind === p.local.kind && (now.kind !== 'valid' || (p.local.kind === 'valid' && now.hash === p.local.hash));
    return { same, data, hash: now.kind === 'valid' ? now.hash : undefined };
  }

  private async doPull(p: Plan, report: ReconcileReport, since?: number): Promise<'done' | 'replan'> {
    const item = await this.fetchItem(p);
    if (!item) return 'replan';
    const side = judgeItem(item);
    if (side.kind !== 'valid') {
      if (side.kind === 'invalid') this.reject({ key: p.key, source: 'store', reason: side.reason });
      return 'done';
    }
    const check = await this.localStillAsPlanned(p);
    if (!check.same) return 'replan';
    await this.o.mirror.write(p.key, item.data, side.hash);
    return this.synced('pull', p.key, { hash: side.hash, version: item.version }, report, since);
  }

  private async doPush(p: Plan, report: ReconcileReport, since?: number): Promise<'done' | 'replan'> {
    const check = await this.localStillAsPlanned(p);
    if (!check.same || !check.data || !check.hash) return 'replan';
    const entry = await this.o.store.put(p.key, check.data, { ifVersion: p.remote.kind === 'absent' ? null : (p.remoteVersion ?? null) });
    return this.synced('push', p.key, { hash: check.hash, version: entry.version }, report, since);
  }

  /** Records a pull or push that just happened: new base, queue and rejection cleared, counted, logged. */
  private synced(direction: 'pull' | 'push', key: Key, base: BaseEntry, report: ReconcileReport, since?: number): 'done' {
    this.state.setBase(key, base);
    this.state.clearPending(key);
    this.clearRejection(key);
    (direction === 'pull' ? report.pulled : report.pushed).push(key);
    this.o.observer?.synced(direction, keyKind(key));
    if (since !== undefined) this.o.observer?.propagation(direction, (Date.now() - since) / 1000);
    this.log.info({ key, version: base.version }, direction === 'pull' ? `pull ${key}: written to mirror` : `push ${key}: stored`);
    return 'done';
  }

  private async execute(p: Plan, mode: SyncMode, report: ReconcileReport, since?: number): Promise<'done' | 'replan'> {
    const kind = keyKind(p.key);
    switch (p.action) {
      case 'in-sync':
        if (p.local.kind === 'valid' && p.remoteVersion) this.state.setBase(p.key, { hash: p.local.hash, version: p.remoteVersion });
        this.state.clearPending(p.key);
        this.clearRejection(p.key);
        return 'done';
      case 'forget':
        this.state.dropBase(p.key);
        this.state.clearPending(p.key);
        this.clearRejection(p.key);
        return 'done';
      case 'pull':
        return this.doPull(p, report, since);
      case 'push':
        if (p.remote.kind === 'invalid') this.clearRejection(p.key);
        return this.doPush(p, report, since);
      case 'delete-store': {
        await this.o.store.delete(p.key, { ifVersion: p.remoteVersion });
        this.storeDeletes.record(1);
        this.state.dropBase(p.key);
        this.state.clearPending(p.key);
        report.deletedStore.push(p.key);
        this.o.observer?.synced('delete-store', kind);
        this.log.info({ key: p.key }, `delete ${p.key}: removed from store (deleted locally)`);
        return 'done';
      }
      case 'delete-local': {
        const check = await this.localStillAsPlanned(p);
        if (!check.same) return 'replan';
        await this.o.mirror.remove(p.key);
        this.localDeletes.record(1);
        this.state.dropBase(p.key);
        this.state.clearPending(p.key);
        report.deletedLocal.push(p.key);
        this.o.observer?.synced('delete-local', kind);
        this.log.info({ key: p.key }, `delete ${p.key}: removed from mirror (deleted in store)`);
        return 'done';
      }
      case 'conflict': {
        const item = await this.fetchItem(p);
        const check = await this.localStillAsPlanned(p);
        if (!item || !check.same || !check.data) return 'replan';
        const verdict = resolveConflict(p.key, this.o.conflictPolicy, check.data, item.data);
        if ((mode === 'pull' && verdict.winner === 'local') || (mode === 'push' && verdict.winner === 'store')) {
          report.held.push({ key: p.key, action: 'conflict', reason: `conflict: ${verdict.winner} copy wins (${verdict.why}) but this run is ${mode} only` });
          return 'done';
        }
        const keptAt = await this.o.mirror.keepConflict(p.key, verdict.winner === 'local' ? 'store' : 'local', verdict.winner === 'local' ? item.data : check.data);
        report.conflicts.push({ key: p.key, winner: verdict.winner, why: verdict.why, keptAt });
        this.o.observer?.conflict(kind);
        this.log.warn({ key: p.key, winner: verdict.winner, why: verdict.why, keptAt }, `conflict ${p.key}: ${verdict.winner} copy wins (${verdict.why}); the other copy is kept at ${keptAt}`);
        p.action = verdict.winner === 'local' ? 'push' : 'pull';
        return verdict.winner === 'local' ? this.doPush(p, report, since) : this.doPull(p, report, since);
      }
      case 'reject-local':
        if (p.local.kind === 'invalid') this.reject({ key: p.key, source: 'local', reason: p.local.reason });
        return 'done';
      case 'reject-store':
        if (p.remote.kind === 'invalid') this.reject({ key: p.key, source: 'store', reason: p.remote.reason });
        return 'done';
      case 'held':
        return 'done';
    }
  }

  private readonly dirtyFromStore = new Set<Key>();

  /** Runs planned actions; a CAS conflict or a concurrent local write re-plans that key (bounded). */
  private async executeAll(plans: Plan[], mode: SyncMode, report: ReconcileReport, since?: Map<Key, number>): Promise<void> {
    // Keys are independent: run them concurrently (bounded), so a cold start or a burst is not one
    // fsync-bound file after another. An outage stops new work and fails the pass.
    await forEachLimit(plans, EXECUTE_PARALLEL, (plan) => this.executeOne(plan, mode, report, since?.get(plan.key)));
  }

  /** Runs one plan; a CAS conflict or a concurrent local write re-plans that key (bounded). */
  private async executeOne(plan: Plan, mode: SyncMode, report: ReconcileReport, since?: number): Promise<void> {
    let p: Plan | undefined = plan;
    for (let attempt = 0; p; attempt++) {
      try {
        const r = await this.execute(p, mode, report, since);
        if (r === 'done') return;
      } catch (err) {
        if (err instanceof ConflictError) {
          this.log.info({ key: p.key }, `${errorMessage(err)}; re-reading and retrying`);
        } else if (isOutage(err)) {
          if (p.action === 'push' || p.action === 'delete-store' || p.action === 'conflict') this.state.markPending(p.key, errorMessage(err));
          throw err;
        } else if (err instanceof InvalidKeyError) {
          this.reject({ key: p.key, source: 'local', reason: err.reason });
          return;
        } else if (err instanceof ItemRejectedError) {
          // The store refused this one item (e.g. no permission on that object): the others go on.
          const source = p.action === 'pull' || p.action === 'delete-local' ? 'store' : 'local';
          if (source === 'local') this.state.markPending(p.key, errorMessage(err));
          this.reject({ key: p.key, source, reason: errorMessage(err) });
          return;
        } else {
          report.errors.push({ key: p.key, error: errorMessage(err) });
          this.log.error({ key: p.key, err: errorMessage(err) }, `sync ${p.key}: ${errorMessage(err)}`);
          return;
        }
      }
      if (attempt >= MAX_CAS_RETRIES) {
        report.errors.push({ key: p.key, error: 'kept changing while syncing; will retry' });
        this.dirty.set(p.key, Date.now());
        this.dirtyFromStore.add(p.key);
        return;
      }
      [p] = await this.planKeys([p.key], () => true);
      if (p) await this.guard([p], mode, this.lastStoreCount, report);
    }
  }

  // ---------------------------------------------------------------- passes

  private async seedConfig(plans: Plan[]): Promise<void> {
    if (!this.o.seedConfigPath) return;
    const cfg = plans.find((p) => p.key === CONFIG_KEY);
    if (cfg && (cfg.local.kind !== 'absent' || cfg.remote.kind !== 'absent')) return;
    let data: Uint8Array;
    try {
      data = await readFile(this.o.seedConfigPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const v = validateContent(CONFIG_KEY, data);
    if (!v.ok) {
      this.log.warn({ file: this.o.seedConfigPath }, `seed ${this.o.seedConfigPath}: ${v.reason}; not seeding the config`);
      return;
    }
    await this.o.mirror.write(CONFIG_KEY, data, v.hash);
    this.log.info({ key: CONFIG_KEY, from: this.o.seedConfigPath }, `seed ${CONFIG_KEY}: copied from ${this.o.seedConfigPath} (no config in store or mirror)`);
    const replanned = await this.planKey(CONFIG_KEY, { present: true, valid: true, hash: v.hash }, null);
    if (cfg) Object.assign(cfg, replanned);
    else plans.push(replanned);
  }

  /**
   * One full reconcile. `mode` limits the direction (`pull` for init containers, `push`).
   * Throws StoreError when the store is unreachable (nothing is deleted or half-done).
   */
  async reconcile(mode: SyncMode = 'sync'): Promise<ReconcileReport> {
    return this.exclusive(() => this.fullPass(mode));
  }

  private async fullPass(mode: SyncMode): Promise<ReconcileReport> {
    const report = emptyReport();
    try {
      const { plans, storeCount } = await this.planAll();
      if (mode !== 'push') await this.seedConfig(plans);
      await this.guard(plans, mode, storeCount, report);
      await this.executeAll(plans, mode, report);
      this.state.touchSync();
      this.o.observer?.lastSync(this.state.data.lastSyncAt!);
    } catch (err) {
      if (isOutage(err)) await this.queueLocalChanges(err);
      throw err;
    } finally {
      report.rejected = [...this.rejections.values()];
      await this.o.mirror.flush();
      await this.state.save();
      this.o.observer?.pending(this.state.pendingKeys().length);
    }
    return report;
  }

  private async keysPass(keys: Map<Key, number>, fromStore: ReadonlySet<Key>): Promise<void> {
    const report = emptyReport();
    try {
      const plans = await this.planKeys([...keys.keys()], (k) => fromStore.has(k));
      await this.guard(plans, 'sync', Math.max(this.lastStoreCount, this.state.baseKeys().length), report);
      await this.executeAll(plans, 'sync', report, keys);
    } catch (err) {
      if (isOutage(err)) await this.queueLocalChanges(err);
      throw err;
    } finally {
      await this.o.mirror.flush();
      await this.state.save();
      this.o.observer?.pending(this.state.pendingKeys().length);
    }
  }

  /**
   * The store is unreachable: every local change since the base (edit, new file, deletion) is recorded
   * as pending in the state file, so `status`, the metrics and a restarted credsync all know about it.
   */
  private async queueLocalChanges(err: unknown): Promise<void> {
    const { items } = await this.o.mirror.scan().catch(() => ({ items: new Map<Key, LocalState>() }));
    const why = errorMessage(err);
    for (const [key, st] of items) {
      if (st.present && st.valid && this.state.base(key)?.hash !== st.hash) this.state.markPending(key, why);
    }
    for (const key of this.state.baseKeys()) if (!items.has(key)) this.state.markPending(key, why);
    this.o.observer?.pending(this.state.pendingKeys().length);
    this.setStoreUp(false);
  }

  /** Serialises passes: a pass never overlaps another on this engine. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.running ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    this.running = prev.then(() => mine);
    return prev.then(fn).finally(() => {
      release();
    });
  }

  // ---------------------------------------------------------------- daemon

  /** Marks keys for a targeted pass. Local events and store events both land here. */
  private markDirty(keys: Key[], fromStore: boolean): void {
    const now = Date.now();
    for (const k of keys) {
      if (keyProblem(k)) continue;
      if (!this.dirty.has(k)) this.dirty.set(k, now);
      if (fromStore) this.dirtyFromStore.add(k);
    }
    this.kick();
  }

  private requestFull(): void {
    this.fullRequested = true;
    this.kick();
  }

  private pumping = false;

  /** Runs passes until nothing is dirty. Only one pump runs at a time. */
  private kick(): void {
    if (this.pumping || this.stopping || this.retryTimer) return;
    this.pumping = true;
    void this.exclusive(async () => {
      try {
        while (!this.stopping && (this.fullRequested || this.dirty.size)) {
          if (this.fullRequested) {
            this.fullRequested = false;
            this.dirty.clear();
            this.dirtyFromStore.clear();
            await this.fullPass('sync');
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
            this.dirty.clear();
            try {
              await this.keysPass(batch, fromStore);
            } catch (err) {
              for (const [k, t] of batch) if (!this.dirty.has(k)) this.dirty.set(k, t);
              for (const k of fromStore) this.dirtyFromStore.add(k);
              throw err;
            }
          }
          this.setStoreUp(true);
        }
      } catch (err) {
        this.onPassFailure(err);
      } finally {
        this.pumping = false;
      }
    });
  }

  private onPassFailure(err: unknown): void {
    if (err instanceof StoreConfigError) {
      // Not an outage that time will fix: say what to change, and retry slowly.
      this.setStoreUp(false);
      this.backoffMs = this.o.backoffMaxMs ?? 30_000;
      this.log.error({ store: this.o.store.id, fix: err.fix }, `sync ${this.o.store.id}: ${errorMessage(err)}; mirror kept as is, local changes queued; retrying in ${this.backoffMs} ms`);
    } else if (isOutage(err)) {
      this.setStoreUp(false);
      this.log.warn({ store: this.o.store.id, retryInMs: this.backoffMs, pending: this.state.pendingKeys().length }, `sync ${this.o.store.id}: store unreachable (${errorMessage(err)}); mirror kept as is, local changes queued; retrying in ${this.backoffMs} ms`);
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

  private storeWatchStarted = false;

  /** Subscribes to store changes once the store has answered; `onReady` (re)subscriptions ask for a full pass. */
  private async startStoreWatch(): Promise<void> {
    this.storeWatchStarted = true;
    if (!this.o.store.watch || this.stopping) return;
    const onChange = (c: Change): void => {
      const base = this.state.base(c.key);
      // Our own write coming back: judged by version (content-derived), not by timers.
      if (c.op === 'put' && c.version && base?.version === c.version) return;
      if (c.op === 'delete' && !base && !this.dirty.has(c.key)) return;
      this.markDirty([c.key], true);
    };
    try {
      const stop = await this.o.store.watch(onChange, {
        onReady: () => this.requestFull(),
        onError: (err) => {
          this.setStoreUp(false);
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

  /** Starts watching both sides; the first full reconcile runs at once (retried with backoff). */
  async start(): Promise<void> {
    if (this.started) return;
    // A configuration error (wrong keys, missing bucket, refused settings) ends the daemon at start-up
    // (exit 2) instead of becoming an endless outage loop. An unreachable store is retried as usual.
    try {
      await this.ensureStore();
    } catch (err) {
      if (err instanceof StoreConfigError) throw err;
      if (!isOutage(err)) throw err;
    }
    this.started = true;
    this.stopWatchers.push(
      await watchTree(this.o.mirror.tree, {
        debounceMs: this.o.debounceMs,
        onKeys: (keys) => this.markDirty(keys, false),
        onStructural: () => this.requestFull(),
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
    this.retryTimer = null;
    await Promise.allSettled(this.stopWatchers.map((s) => s()));
    this.stopWatchers = [];
    let timer: NodeJS.Timeout | undefined;
    const flush = this.exclusive(() => this.fullPass('push')).then(
      () => true,
      (err: unknown) => {
        this.log.warn({ err: errorMessage(err) }, `shutdown: final push failed (${errorMessage(err)}); pending changes stay queued in ${this.state.path}`);
        return false;
      },
    );
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    const ok = await Promise.race([flush, timeout]);
    clearTimeout(timer);
    if (!ok) this.log.warn({ timeoutMs }, `shutdown: flush incomplete after ${timeoutMs} ms; pending changes stay queued in ${this.state.path}`);
    return ok;
  }

  async close(): Promise<void> {
    await this.o.store.close();
  }

  /** Per-key comparison without acting: what `status` shows. Throws StoreError when unreachable. */
  async status(): Promise<StatusReport> {
    return this.exclusive(async () => {
      const { plans } = await this.planAll();
      const counts: Record<ItemState, number> = { 'in-sync': 0, 'local-only': 0, 'store-only': 0, differs: 0, rejected: 0 };
      const items: StatusReport['items'] = [];
      for (const p of plans) {
        let state: ItemState;
        let extra: { source?: 'local' | 'store'; reason?: string } = {};
        if (p.local.kind === 'invalid') {
          state = 'rejected';
          extra = { source: 'local', reason: p.local.reason };
        } else if (p.remote.kind === 'invalid') {
          state = 'rejected';
          extra = { source: 'store', reason: p.remote.reason };
        } else if (p.local.kind === 'valid' && p.remote.kind === 'valid') state = p.local.hash === p.remote.hash ? 'in-sync' : 'differs';
        else if (p.local.kind === 'valid') state = 'local-only';
        else if (p.remote.kind === 'valid') state = 'store-only';
        else continue;
        counts[state]++;
        items.push({ key: p.key, state, ...extra });
      }
      for (const r of this.rejections.values()) {
        if (items.some((i) => i.key === r.key)) continue;
        counts.rejected++;
        items.push({ key: r.key, state: 'rejected', source: r.source, reason: r.reason });
      }
      return {
        store: this.o.store.id,
        capabilities: this.o.store.capabilities,
        mirror: this.o.mirror.root,
        ready: this.ready,
        storeUp: this._storeUp,
        lastSyncAt: this.state.data.lastSyncAt ? new Date(this.state.data.lastSyncAt).toISOString() : null,
        counts,
        items,
        pending: Object.entries(this.state.data.pending).map(([key, e]) => ({ key, since: new Date(e.since).toISOString(), attempts: e.attempts, lastError: e.lastError })),
      };
    });
  }
}
