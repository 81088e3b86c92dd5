import type { Key } from './keys.js';

export type { Key } from './keys.js';

/** One item as listed by a store. */
export interface Entry {
  readonly key: Key;
  /**
   * Opaque version used for compare-and-swap. Equal versions mean equal content.
   * Stores choose what is robust for them (content hash, ETag, blob id …).
   */
  readonly version: string;
  /**
   * Canonical content hash (mirror/canonical.ts `contentHash`) when the store knows it cheaply.
   * Set only for valid content: the engine trusts it instead of validating again.
   */
  readonly hash?: string;
}

export interface Item extends Entry {
  readonly data: Uint8Array;
  /**
   * Set when the store holds the item but cannot hand over its content (it cannot decrypt it, it
   * refuses to serve it): the engine treats the item as invalid on the store side with this reason —
   * never written to the mirror, never a deletion — and every other key keeps syncing.
   */
  readonly problem?: string;
}

/** A store object whose id is not a valid key: skipped and reported, never written to disk. */
export interface SkippedItem {
  readonly id: string;
  readonly reason: string;
}

export interface Listing {
  readonly entries: Entry[];
  readonly skipped: SkippedItem[];
}

export interface PutOptions {
  /** `undefined`: unconditional; `null`: must not exist; a string: current version must equal it. */
  readonly ifVersion?: string | null;
}

export interface DeleteOptions {
  /** `undefined`: unconditional; a string: current version must equal it (absent = success). */
  readonly ifVersion?: string;
}

export interface InitOptions {
  readonly readOnly?: boolean;
}

/** A change seen by a store watcher. `version` is set when the store knows it without a read. */
export interface Change {
  readonly key: Key;
  readonly op: 'put' | 'delete';
  readonly version?: string;
  readonly hash?: string;
}

export interface WatchOptions {
  /** Called after the first subscription and after every re-subscription (events may have been lost). */
  onReady(): void;
  /** Called when the subscription is lost; the watcher keeps retrying by itself. */
  onError?(err: Error): void;
}

export type StopWatching = () => Promise<void>;

/**
 * What a store can promise, declared once by each store and reported by `status` and `doctor`.
 * The engine's algorithm is the same for all; the capabilities say how strong its guarantees are.
 */
export interface StoreCapabilities {
  /**
   * `enforced`: the server itself refuses a write whose `ifVersion` is stale, so two concurrent
   * writers can never both win (PostgreSQL, S3 servers honouring `If-Match`, Git's fast-forward push,
   * the directory store's lock). `checked`: the store reads the version right before writing; a
   * writer landing between that read and the write is overwritten (S3 servers that ignore or
   * reject conditional requests). The race is documented, never hidden.
   */
  readonly cas: 'enforced' | 'checked';
  /**
   * `push`: changes are announced as they happen (LISTEN/NOTIFY, a file watcher). `poll`: the store
   * checks at an interval (`pollIntervalMs`). `none`: no watch; only periodic reconciles.
   */
  readonly watch: 'push' | 'poll' | 'none';
  /** For `poll`: how often the store looks (ms), so callers can size their waits. */
  readonly pollIntervalMs?: number;
}

/**
 * The one contract the engine depends on.
 *
 * - Not-found is `null` from `get` and success from `delete`.
 * - A failed precondition is a ConflictError; any other failure a StoreError.
 * - Keys are validated before any I/O (InvalidKeyError).
 * - Nothing runs in the background until `watch` is called.
 */
export interface Store {
  readonly name: string;
  /** May be refined by `init()` (an S3 store learns whether its server enforces conditional writes). */
  readonly capabilities: StoreCapabilities;
  /** A redacted description for logs and the state file (never contains secrets). */
  readonly id: string;
  /**
   * Connect; create schema / directories / prefix / bucket. Idempotent. With `readOnly` (`status`,
   * `--dry-run`) nothing is created anywhere: a store that does not exist yet reads as empty.
   */
  init(options?: InitOptions): Promise<void>;
  list(): Promise<Listing>;
  get(key: Key): Promise<Item | null>;
  /** Optional batch read: the items that exist among `keys` (missing ones are left out). */
  getMany?(keys: Key[]): Promise<Item[]>;
  /** Exact bytes in, exact bytes back from `get` (PostgreSQL may re-serialise JSON; hashes stay equal). */
  put(key: Key, data: Uint8Array, options?: PutOptions): Promise<Entry>;
  /** Idempotent: deleting a missing key succeeds (unless `ifVersion` names a present, different version). */
  delete(key: Key, options?: DeleteOptions): Promise<void>;
  /**
   * Present exactly when `capabilities.watch` is not `none`. Resolves once the first subscription
   * is attempted; `onReady` fires after the first successful subscription and after every
   * re-subscription (the engine answers it with a full reconcile).
   */
  watch?(onChange: (change: Change) => void, options: WatchOptions): Promise<StopWatching>;
  close(): Promise<void>;
}

/** What a store factory receives besides its own options. */
export interface StoreContext {
  readonly log?: import('pino').Logger;
  /** Quiet time for stores that watch files (the directory store). */
  readonly debounceMs?: number;
  /**
   * The engine's full-reconcile interval. A polling store that also lists on its own (S3) does so at
   * least this often, so a writer that never announces its changes is seen within one interval.
   */
  readonly reconcileIntervalMs?: number;
  /**
   * A private directory the store may keep working files in (the Git store's clone): the mirror's
   * `.credsync/<store kind>/`, 0700. Never the mirror itself, which belongs to the proxy.
   */
  readonly workDir?: string;
}

/** One check a store can run on its own deployment (`doctor`): ok / warn / fail, and the fix. */
export interface Diagnosis {
  readonly status: 'ok' | 'warn' | 'fail';
  readonly check: string;
  readonly detail: string;
  readonly fix?: string;
}
