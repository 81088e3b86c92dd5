import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EngineObserver } from '../engine/engine.js';
import type { KeyKind } from '../core/keys.js';
import type { StoreCapabilities } from '../core/store.js';

/**
 * Prometheus series, prefix `credsync_`. Labels are low-cardinality enums (kind, direction, source):
 * never a key, a file name or any content.
 */
export class Metrics implements EngineObserver {
  readonly registry = new Registry();
  private readonly pushes = new Counter({ name: 'credsync_pushes_total', help: 'Items written to the store', labelNames: ['kind'], registers: [this.registry] });
  private readonly pulls = new Counter({ name: 'credsync_pulls_total', help: 'Items written to the mirror from the store', labelNames: ['kind'], registers: [this.registry] });
  private readonly deletes = new Counter({ name: 'credsync_deletes_total', help: 'Deletions propagated', labelNames: ['side', 'kind'], registers: [this.registry] });
  private readonly conflicts = new Counter({ name: 'credsync_conflicts_total', help: 'Conflicts resolved by the policy (loser kept)', labelNames: ['kind'], registers: [this.registry] });
  private readonly rejections = new Counter({ name: 'credsync_rejections_total', help: 'Invalid files or store items refused', labelNames: ['source', 'kind'], registers: [this.registry] });
  private readonly rejectedFiles = new Gauge({ name: 'credsync_rejected_files', help: 'Files or store items currently refused', registers: [this.registry] });
  private readonly pendingGauge = new Gauge({ name: 'credsync_pending_pushes', help: 'Local changes queued while the store is unreachable', registers: [this.registry] });
  private readonly up = new Gauge({ name: 'credsync_store_up', help: '1 when the store answered the last operation', registers: [this.registry] });
  private readonly casEnforced = new Gauge({
    name: 'credsync_store_cas_enforced',
    help: '1 when the store itself refuses stale writes (compare-and-swap enforced), 0 when credsync checks then writes (a narrow race remains)',
    registers: [this.registry],
  });
  private readonly stateBytes = new Counter({
    name: 'credsync_state_written_bytes_total',
    help: 'Bytes written to the mirror state (journal lines and snapshots): a change costs the same whatever the store size',
    registers: [this.registry],
  });
  private readonly lastSyncGauge = new Gauge({ name: 'credsync_last_sync_timestamp_seconds', help: 'Unix time of the last successful full reconcile', registers: [this.registry] });
  private readonly latency = new Histogram({
    name: 'credsync_propagation_latency_seconds',
    help: 'From a change being noticed to it being applied on the other side',
    labelNames: ['direction'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor() {
    // 1 s event-loop sampling: the default 10 ms wakes an idle daemon 100 times a second.
    collectDefaultMetrics({ register: this.registry, prefix: 'credsync_', eventLoopMonitoringPrecision: 1000 });
    this.up.set(0);
    this.pendingGauge.set(0);
    this.rejectedFiles.set(0);
  }

  synced(action: 'push' | 'pull' | 'delete-store' | 'delete-local', kind: KeyKind): void {
    if (action === 'push') this.pushes.inc({ kind });
    else if (action === 'pull') this.pulls.inc({ kind });
    else this.deletes.inc({ side: action === 'delete-store' ? 'store' : 'local', kind });
  }
  conflict(kind: KeyKind): void {
    this.conflicts.inc({ kind });
  }
  rejected(source: 'local' | 'store', kind: KeyKind): void {
    this.rejections.inc({ source, kind });
  }
  rejectedNow(count: number): void {
    this.rejectedFiles.set(count);
  }
  storeUp(up: boolean): void {
    this.up.set(up ? 1 : 0);
  }
  pending(count: number): void {
    this.pendingGauge.set(count);
  }
  lastSync(at: number): void {
    this.lastSyncGauge.set(at / 1000);
  }
  storeCapabilities(c: StoreCapabilities): void {
    this.casEnforced.set(c.cas === 'enforced' ? 1 : 0);
  }
  stateWritten(bytes: number): void {
    this.stateBytes.inc(bytes);
  }
  propagation(direction: 'push' | 'pull', seconds: number): void {
    this.latency.observe({ direction }, seconds);
  }
}
