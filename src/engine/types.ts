import type { Logger } from 'pino';
import type { Key, KeyKind } from '../core/keys.js';
import type { Store, StoreCapabilities } from '../core/store.js';
import type { Mirror } from '../mirror/mirror.js';
import type { Action } from './decide.js';
import type { ConflictPolicy } from './conflict.js';
import type { DeleteLimit } from './guard.js';

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
  /** Bytes just written to the mirror's state (snapshot and journal). */
  stateWritten?(bytes: number): void;
}

/** The direction a pass may act in: `pull` for init containers, `push` for the shutdown flush. */
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
  /** Largest item accepted from either side (default 1 MiB). */
  readonly maxItemBytes?: number;
  /**
   * Called when the daemon meets a configuration error (wrong credentials, missing database…)
   * before its first reconcile: it stops; `run` exits 2 with the fix.
   */
  readonly onFatal?: (err: Error) => void;
}

export interface PassOptions {
  /** Plan and report, change nothing anywhere (store, mirror, state file). */
  readonly dryRun?: boolean;
  /** Called as planned actions complete (a progress bar for long one-shot passes). */
  readonly progress?: (done: number, total: number) => void;
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
  /** Actions not taken: the mode forbids them (`guard: false`), or a guard refused them (`guard: true`). */
  held: { key: Key; action: Action; reason: string; guard: boolean }[];
  /** With `dryRun`: what would be done, per key. */
  planned: { key: Key; action: Action }[];
  dryRun: boolean;
  errors: { key: Key; error: string }[];
}

export const emptyReport = (): ReconcileReport => ({
  pulled: [],
  pushed: [],
  deletedLocal: [],
  deletedStore: [],
  conflicts: [],
  rejected: [],
  held: [],
  errors: [],
  planned: [],
  dryRun: false,
});

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
  items: { key: string; state: ItemState; source?: 'local' | 'store'; reason?: string; localHash?: string; storeVersion?: string }[];
  pending: { key: Key; since: string; attempts: number; lastError?: string }[];
}
