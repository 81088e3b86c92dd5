import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { validateContent } from '../core/canonical.js';
import { errorMessage } from '../core/errors.js';
import { CONFIG_KEY, type Key } from '../core/keys.js';
import { forEachLimit } from '../core/limit.js';
import type { Item } from '../core/store.js';
import type { LocalState } from '../mirror/mirror.js';
import { Executor, isOutage } from './execute.js';
import { applyGuards, DeleteWindow } from './guard.js';
import { allKeys, isWork, keysToFetch, keysToRead, planAll, planKey, planPushOnBase, type Plan } from './plan.js';
import type { Rejections } from './rejections.js';
import type { StateFile } from './state.js';
import { emptyReport, type EngineOptions, type PassOptions, type ReconcileReport, type SyncMode } from './types.js';

const FETCH_BATCH = 500;
/** Items read, planned and executed together in a full pass (bounds its memory). */
const WINDOW = 500;
/** How long after a directory vanished or appeared local deletions wait (a rewrite of the mirror takes milliseconds). */
export const SETTLE_MS = 1500;
const FETCH_PARALLEL = 8;

/**
 * One pass of the three-way reconcile: gather snapshots (store listing or reads, mirror scan or
 * inspections, the base), plan (pure), guard, execute, save the base. Passes never overlap: every
 * entry point runs through `serial`.
 */
export class Reconciler {
  readonly executor: Executor;
  private readonly log: Logger;
  private readonly storeDeletes = new DeleteWindow();
  private readonly localDeletes = new DeleteWindow();
  private storeInitialised = false;
  private running: Promise<void> | null = null;
  private _storeUp = false;
  /** Items the store held at the last full listing (the delete guard's denominator between listings). */
  lastStoreCount = 0;
  /** Set by the daemon: log recoveries (one-shot commands stay quiet). */
  announceRecovery = false;
  private stateBytesReported = 0;
  /** Called when the store answers again after being down. */
  onStoreUp: () => void = () => {};
  /** Called after a pass in which a guard held something (the daemon re-checks later). */
  onHeld: () => void = () => {};
  /** When the mirror's directories last vanished or appeared (set by the daemon's watcher). */
  structuralAt = -Infinity;

  constructor(
    private readonly o: EngineOptions,
    readonly state: StateFile,
    readonly rejections: Rejections,
    giveUp: (key: Key) => void,
    retrySoon?: (key: Key) => void,
  ) {
    this.log = o.log;
    this.executor = new Executor({
      store: o.store,
      mirror: o.mirror,
      state,
      log: o.log,
      observer: o.observer,
      rejections,
      conflictPolicy: o.conflictPolicy,
      storeDeletes: this.storeDeletes,
      localDeletes: this.localDeletes,
      maxItemBytes: o.maxItemBytes,
      replan: async (key, mode, report) => {
        const [p] = await this.planKeys([key], () => true);
        if (p) await this.guard([p], mode, this.lastStoreCount, report);
        return p;
      },
      giveUp,
      retrySoon,
    });
  }

  get storeUp(): boolean {
    return this._storeUp;
  }

  setStoreUp(up: boolean): void {
    if (up === this._storeUp) return;
    this._storeUp = up;
    this.o.observer?.storeUp(up);
    if (up) {
      this.onStoreUp();
      if (this.announceRecovery) this.log.info({ store: this.o.store.id }, `store ${this.o.store.id}: reachable`);
    }
  }

  /** Serialises passes: a pass never overlaps another on this engine. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.running ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    this.running = prev.then(() => mine);
    return prev.then(fn).finally(() => release());
  }

  private async ensureStore(readOnly: boolean): Promise<void> {
    if (this.storeInitialised) return;
    await this.o.store.init({ readOnly });
    // A read-only init created nothing: a later writing pass initialises for real.
    this.storeInitialised = !readOnly;
    this.o.observer?.storeCapabilities?.(this.o.store.capabilities);
    this.setStoreUp(true);
  }

  /** Fetches items with `getMany` when the store has it, else with bounded parallel `get`s. */
  private async fetchMany(keys: Key[]): Promise<Map<Key, Item | null>> {
    const out = new Map<Key, Item | null>();
    if (!keys.length) return out;
    const store = this.o.store;
    if (store.getMany) {
      for (let i = 0; i < keys.length; i += FETCH_BATCH) {
        const chunk = keys.slice(i, i + FETCH_BATCH);
        const got = await store.getMany(chunk);
        for (const it of got) out.set(it.key, it);
        for (const k of chunk) if (!out.has(k)) out.set(k, null);
      }
      return out;
    }
    await forEachLimit(keys, FETCH_PARALLEL, async (k) => {
      out.set(k, await store.get(k));
    });
    return out;
  }

  /**
   * Plans every key — full store listing, full mirror scan, every key of the base — and hands the plans
   * over in windows, so a pass over 50,000 items never holds them all: first every key whose store side
   * is known without a read (from the listing or the base), then the others WINDOW at a time (read in one
   * batch, planned, handed over; their content is released before the next window is read).
   */
  async planWindows(readOnly: boolean, onWindow: (plans: Plan[], first: boolean) => Promise<void>): Promise<{ storeCount: number }> {
    await this.ensureStore(readOnly);
    const listing = await this.o.store.list();
    this.setStoreUp(true);
    // Keys the store or the base know are judged one by one below a directory that cannot be listed,
    // so nothing the scanner cannot see is ever taken for a deletion.
    const scan = await this.o.mirror.scan({ known: [...listing.entries.map((e) => e.key), ...this.state.baseKeys()] });
    const base = (k: Key): ReturnType<StateFile['base']> => this.state.base(k);
    for (const s of scan.skipped) this.rejections.add({ key: s.id, source: 'local', reason: s.reason });
    for (const u of scan.unreadable) if (!u.vanished) this.rejections.add({ key: u.prefix, source: 'local', reason: `cannot list this directory (${u.reason}); its files are left alone` });
    for (const s of listing.skipped) this.rejections.add({ key: s.id, source: 'store', reason: s.reason });
    this.lastStoreCount = listing.entries.length;
    const snapshot = {
      entries: listing.entries,
      entryMap: new Map(listing.entries.map((e) => [e.key, e])),
      locals: scan.items,
      baseKeys: this.state.baseKeys(),
      base,
      items: new Map<Key, Item | null>(),
      maxItemBytes: this.o.maxItemBytes,
    };
    const unknown = new Set(keysToFetch(listing.entries, base));
    // The config always goes in the first window (read on its own if needed): seeding decides on it.
    if (unknown.delete(CONFIG_KEY)) snapshot.items.set(CONFIG_KEY, (await this.fetchMany([CONFIG_KEY])).get(CONFIG_KEY) ?? null);
    await onWindow(planAll(snapshot, allKeys(snapshot).filter((k) => !unknown.has(k))), true);
    snapshot.items.clear();
    const rest = [...unknown].sort();
    // The next window is read while this one is written: the store and the disk work at the same time,
    // and at most two windows' content is held.
    const fetchWindow = (i: number): Promise<Map<Key, Item | null>> | null => (i < rest.length ? this.fetchMany(rest.slice(i, i + WINDOW)) : null);
    let next = fetchWindow(0);
    for (let i = 0; next; i += WINDOW) {
      const items = await next;
      next = fetchWindow(i + WINDOW);
      // An unawaited read that fails while this window is written must not be an unhandled rejection: it is awaited next turn.
      next?.catch(() => {});
      try {
        await onWindow(planAll({ ...snapshot, items }, rest.slice(i, i + WINDOW)), false);
      } catch (err) {
        await next?.catch(() => {});
        throw err;
      }
    }
    return { storeCount: listing.entries.length };
  }

  /** Every plan of a full pass, without item content (for `status`). */
  async planEverything(readOnly = false): Promise<{ plans: Plan[]; storeCount: number }> {
    const plans: Plan[] = [];
    const { storeCount } = await this.planWindows(readOnly, async (window) => {
      for (const p of window) plans.push({ ...p, storeItem: undefined });
    });
    return { plans, storeCount };
  }

  /** Plans the given keys from fresh inspections; the store is read only for keys that need it (see `keysToRead`). */
  async planKeys(keys: Key[], announced: (key: Key) => boolean, fresh: (key: Key) => boolean = () => true): Promise<Plan[]> {
    const locals = new Map<Key, LocalState>();
    const data = new Map<Key, Uint8Array>();
    await forEachLimit(keys, FETCH_PARALLEL * 4, async (key) => {
      const got = await this.o.mirror.inspect(key, fresh(key));
      locals.set(key, got.state);
      if (got.data) data.set(key, got.data);
    });
    // A key with a push whose outcome is unknown is judged against the store's real content.
    const settled = (k: Key): boolean => this.state.openIntents(k).length === 0;
    const { read, unchanged, pushOnBase } = keysToRead(keys, locals, (k) => this.state.base(k), announced, settled);
    for (const k of unchanged) this.rejections.clear(k);
    const plans = pushOnBase.map((key) => planPushOnBase(key, locals.get(key)!, this.state.base(key), data.get(key)));
    if (read.length === 0) return plans;
    const items = await this.fetchMany(read);
    this.setStoreUp(true);
    for (const key of read) {
      const item = items.get(key) ?? null;
      plans.push({ ...planKey(key, locals.get(key)!, { entry: item, item }, this.state.base(key), this.o.maxItemBytes), localData: data.get(key) });
    }
    return plans;
  }

  private guard(plans: Plan[], mode: SyncMode, storeCount: number, report: ReconcileReport): Promise<void> {
    return applyGuards(
      plans,
      {
        mode,
        limit: this.o.maxDelete,
        storeCount,
        baseCount: this.state.baseCount,
        countLocalAuths: () => this.o.mirror.tree.countAuthFiles(),
        storeDeletes: this.storeDeletes,
        localDeletes: this.localDeletes,
        mirrorRoot: this.o.mirror.root,
        storeId: this.o.store.id,
        log: this.log,
        settling: Date.now() - this.structuralAt < SETTLE_MS,
      },
      report,
    );
  }

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
    const replanned = planKey(CONFIG_KEY, { present: true, valid: true, hash: v.hash }, { entry: null }, this.state.base(CONFIG_KEY));
    if (cfg) Object.assign(cfg, replanned);
    else plans.push(replanned);
  }

  /**
   * One full reconcile in `mode`. Throws StoreError when the store is unreachable (nothing is deleted
   * or half-done; local changes are queued as pending).
   */
  async fullPass(mode: SyncMode, o: PassOptions = {}): Promise<ReconcileReport> {
    const report = emptyReport();
    if (o.dryRun) return this.dryRun(mode, report);
    try {
      let done = 0;
      const progress = o.progress ? (n: number, total: number) => o.progress!(done + n, Math.max(done + total, this.lastStoreCount)) : undefined;
      await this.planWindows(false, async (plans, first) => {
        if (first && mode !== 'push') await this.seedConfig(plans);
        await this.guard(plans, mode, storeCountBefore(plans, this.lastStoreCount), report);
        await this.executor.executeAll(plans, mode, report, undefined, progress);
        done += plans.filter(isWork).length;
      });
      this.state.touchSync();
      this.o.observer?.lastSync(this.state.lastSyncAt!);
    } catch (err) {
      if (isOutage(err)) await this.queueLocalChanges(err);
      throw err;
    } finally {
      report.rejected = this.rejections.values();
      await this.finishPass(report, true);
    }
    return report;
  }

  /** Plans and guards like a real pass, then reports instead of acting: nothing is written anywhere. */
  private async dryRun(mode: SyncMode, report: ReconcileReport): Promise<ReconcileReport> {
    report.dryRun = true;
    const { plans, storeCount } = await this.planEverything(true);
    await this.guard(plans, mode, storeCountBefore(plans, storeCount), report);
    for (const p of plans) {
      if (!isWork(p)) continue;
      report.planned.push({ key: p.key, action: p.action });
      if (p.action === 'pull') report.pulled.push(p.key);
      else if (p.action === 'push') report.pushed.push(p.key);
      else if (p.action === 'delete-local') report.deletedLocal.push(p.key);
      else if (p.action === 'delete-store') report.deletedStore.push(p.key);
    }
    report.rejected = this.rejections.values();
    return report;
  }

  /** A targeted pass over keys the watchers reported (`since`: when each was first seen, for latency metrics). */
  async keysPass(keys: ReadonlyMap<Key, number>, fromStore: ReadonlySet<Key>, tentative: ReadonlySet<Key> = new Set(), local?: ReadonlySet<Key>): Promise<void> {
    const report = emptyReport();
    try {
      // A key only the store announced trusts the mirror's stat cache for its local side (an unchanged
      // file is not read again); a local event always reads the file. The guarded write re-checks either way.
      const fresh = (k: Key): boolean => !local || !fromStore.has(k) || local.has(k);
      // A file read early (just renamed into place) that is not valid yet is left for its quiet-time report.
      const plans = (await this.planKeys([...keys.keys()], (k) => fromStore.has(k), fresh)).filter((p) => !(tentative.has(p.key) && p.action === 'reject-local'));
      await this.guard(plans, 'sync', Math.max(this.lastStoreCount, this.state.baseCount), report);
      await this.executor.executeAll(plans, 'sync', report, keys);
    } catch (err) {
      if (isOutage(err)) await this.queueLocalChanges(err);
      throw err;
    } finally {
      await this.finishPass(report);
    }
  }

  /**
   * Makes the pass durable (directory fsyncs, the base: a journal line, or after a full pass a new
   * snapshot when the journal holds changes) and says what it did in one line.
   */
  private async finishPass(report: ReconcileReport, full = false): Promise<void> {
    await this.o.mirror.flush();
    try {
      await (full ? this.state.checkpoint() : this.state.save());
    } finally {
      this.reportStateBytes();
    }
    this.o.observer?.pending(this.state.pendingCount);
    // Deletions a guard held (or that wait for the mirror to settle) are decided again once the
    // guard's window has passed, not only at the next periodic reconcile.
    if (report.held.some((h) => h.guard || /settles/.test(h.reason))) this.onHeld();
    const line = passLine(report);
    if (line) this.log.info({ pulled: report.pulled.length, pushed: report.pushed.length, deletedLocal: report.deletedLocal.length, deletedStore: report.deletedStore.length, conflicts: report.conflicts.length }, line);
  }

  private reportStateBytes(): void {
    const now = this.state.writtenBytes;
    if (now > this.stateBytesReported) this.o.observer?.stateWritten?.(now - this.stateBytesReported);
    this.stateBytesReported = now;
  }

  /**
   * The store is unreachable: every local change since the base (edit, new file, deletion) is recorded
   * as pending in the state file, so `status`, the metrics and a restarted credsync all know about it.
   */
  private async queueLocalChanges(err: unknown): Promise<void> {
    const why = errorMessage(err);
    let items: Map<Key, LocalState>;
    try {
      items = (await this.o.mirror.scan({ known: this.state.baseKeys() })).items;
    } catch {
      // A mirror that cannot be scanned is not an empty one: queue nothing rather than every base key as a deletion.
      this.setStoreUp(false);
      return;
    }
    for (const [key, st] of items) {
      if (st.present && st.valid && this.state.base(key)?.hash !== st.hash) this.state.markPending(key, why);
    }
    for (const key of this.state.baseKeys()) if (!items.has(key)) this.state.markPending(key, why);
    this.o.observer?.pending(this.state.pendingCount);
    this.setStoreUp(false);
  }
}

/** One line for a pass that did something, naming the first keys of each kind; null when it did nothing. */
export function passLine(r: ReconcileReport): string | null {
  const part = (label: string, keys: readonly string[]): string | null =>
    keys.length ? `${label} ${keys.length} (${keys.slice(0, 3).join(', ')}${keys.length > 3 ? ', …' : ''})` : null;
  const parts = [
    part('pulled', r.pulled),
    part('pushed', r.pushed),
    part('removed from mirror', r.deletedLocal),
    part('removed from store', r.deletedStore),
    part('conflicts', r.conflicts.map((c) => c.key)),
  ].filter((x): x is string => x !== null);
  return parts.length ? `sync: ${parts.join('; ')}` : null;
}

/** What the store held before the deletions a full listing shows: the listing plus the items it lost since the base. */
function storeCountBefore(plans: readonly Plan[], listed: number): number {
  return listed + plans.filter((p) => p.action === 'delete-local').length;
}
