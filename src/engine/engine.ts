import { Daemon } from './daemon.js';
import { Reconciler } from './reconciler.js';
import { Rejections } from './rejections.js';
import { StateFile } from './state.js';
import { buildStatus } from './status.js';
import type { EngineOptions, PassOptions, ReconcileReport, StatusReport, SyncMode } from './types.js';

export type { EngineObserver, EngineOptions, ItemState, PassOptions, ReconcileReport, Rejection, StatusReport, SyncMode } from './types.js';
export { passLine } from './reconciler.js';

/**
 * The sync engine's facade, what commands and the HTTP layer use: three-way reconcile of mirror (L)
 * against store (R) with the remembered base (B). Only the Store interface is known here.
 * One-shot commands: `open()`, `reconcile(mode)` or `status()`, `close()`. The daemon: `open()`,
 * `start()`, `stop()`, `close()`. Passes run one at a time.
 */
export class Engine {
  readonly state: StateFile;
  private readonly reconciler: Reconciler;
  private readonly daemon: Daemon;

  constructor(private readonly o: EngineOptions) {
    this.state = new StateFile(o.mirror.stateDir, o.store.id);
    // A file unchanged since its last sync (same stat signature) is not read again by a scan, even after a restart.
    o.mirror.remembered = (key) => {
      const b = this.state.base(key);
      return b?.sig ? { sig: b.sig, hash: b.hash } : undefined;
    };
    const rejections = new Rejections(o.log, o.observer);
    this.reconciler = new Reconciler(
      o,
      this.state,
      rejections,
      (key) => this.daemon.retryLater(key),
      (key) => this.daemon.retrySoon(key),
    );
    this.daemon = new Daemon(o, this.reconciler);
  }

  /** Initial reconcile done and store reachable. */
  get ready(): boolean {
    return this.daemon.initialised && this.reconciler.storeUp;
  }

  get storeUp(): boolean {
    return this.reconciler.storeUp;
  }

  /**
   * Prepares the mirror (its `config/` and `auths/` exist, 0700) and loads the base. Does not touch the
   * store (it may be down). `readOnly` (status, dry runs) creates nothing.
   */
  async open(o: { readOnly?: boolean } = {}): Promise<void> {
    if (!o.readOnly) await this.o.mirror.init();
    const note = await this.state.load();
    if (note) this.o.log.warn({ file: this.state.path }, `state ${this.state.path}: ${note}`);
    this.o.observer?.pending(this.state.pendingCount);
    if (this.state.lastSyncAt) this.o.observer?.lastSync(this.state.lastSyncAt);
  }

  /** One full reconcile in `mode`. Throws StoreError when the store is unreachable (nothing half-done). */
  reconcile(mode: SyncMode = 'sync', o: PassOptions = {}): Promise<ReconcileReport> {
    return this.reconciler.serial(() => this.reconciler.fullPass(mode, o));
  }

  /**
   * Per-key comparison without acting: what `status` shows. With `readOnly` nothing is created in the
   * store or the mirror. Throws StoreError when unreachable (see `offlineStatus`).
   */
  status(o: { readOnly?: boolean } = {}): Promise<StatusReport> {
    return this.reconciler.serial(async () => {
      const { plans } = await this.reconciler.planEverything(o.readOnly ?? false);
      return buildStatus(plans, this.reconciler.rejections.values(), {
        store: this.o.store.id,
        capabilities: this.o.store.capabilities,
        mirror: this.o.mirror.root,
        ready: this.ready,
        storeUp: this.reconciler.storeUp,
        state: this.state.view(),
      });
    });
  }

  /** Starts the daemon: watches both sides; the first full reconcile runs at once. */
  start(): Promise<void> {
    return this.daemon.start();
  }

  /** Stops watching and flushes pending pushes (bounded). Resolves true when everything was flushed. */
  stop(timeoutMs: number): Promise<boolean> {
    return this.daemon.stop(timeoutMs);
  }

  async close(): Promise<void> {
    await this.state.close();
    await this.o.store.close();
  }
}
