import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWrite } from '../fs/atomic.js';
import type { Key } from '../core/keys.js';

/** What this instance last saw in sync for a key: the three-way merge's base. */
export interface BaseEntry {
  readonly hash: string;
  readonly version: string;
}

/** A local change not yet in the store (store unreachable or write failed). */
export interface PendingEntry {
  readonly since: number;
  readonly attempts: number;
  readonly lastError?: string;
}

export interface StateData {
  format: 1;
  /** The store this base belongs to: a base from another store is meaningless and is discarded. */
  store: string;
  base: Record<Key, BaseEntry>;
  pending: Record<Key, PendingEntry>;
  lastSyncAt?: number;
}

const emptyState = (store: string): StateData => ({ format: 1, store, base: {}, pending: {} });

/**
 * `<mirror>/.credsync/state.json`, written atomically. A missing or unreadable file, or one that
 * belongs to another store, loads as an empty base — which can only cause pulls and pushes, never deletions.
 */
export class StateFile {
  readonly path: string;
  data: StateData;
  private dirty = false;

  constructor(stateDir: string, private readonly storeId: string) {
    this.path = join(stateDir, 'state.json');
    this.data = emptyState(storeId);
  }

  /** Returns a note when the file was unusable and an empty base is used instead. */
  async load(): Promise<string | null> {
    let raw: string;
    try {
      raw = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      const parsed = JSON.parse(raw) as Partial<StateData>;
      if (parsed.format !== 1 || typeof parsed.base !== 'object' || parsed.base === null) throw new Error('unknown format');
      if (parsed.store !== this.storeId) {
        this.data = emptyState(this.storeId);
        this.dirty = true;
        return `state belongs to another store (${parsed.store}); starting with an empty base (no deletions)`;
      }
      this.data = { format: 1, store: this.storeId, base: parsed.base, pending: parsed.pending ?? {}, lastSyncAt: parsed.lastSyncAt };
      return null;
    } catch (err) {
      this.data = emptyState(this.storeId);
      this.dirty = true;
      return `unreadable (${(err as Error).message}); starting with an empty base (no deletions)`;
    }
  }

  base(key: Key): BaseEntry | undefined {
    return Object.hasOwn(this.data.base, key) ? this.data.base[key] : undefined;
  }

  setBase(key: Key, entry: BaseEntry): void {
    const cur = this.base(key);
    if (cur && cur.hash === entry.hash && cur.version === entry.version) return;
    this.data.base[key] = { hash: entry.hash, version: entry.version };
    this.dirty = true;
  }

  dropBase(key: Key): void {
    if (!Object.hasOwn(this.data.base, key)) return;
    delete this.data.base[key];
    this.dirty = true;
  }

  markPending(key: Key, error: string): void {
    const cur = this.data.pending[key];
    this.data.pending[key] = { since: cur?.since ?? Date.now(), attempts: (cur?.attempts ?? 0) + 1, lastError: error };
    this.dirty = true;
  }

  clearPending(key: Key): void {
    if (!Object.hasOwn(this.data.pending, key)) return;
    delete this.data.pending[key];
    this.dirty = true;
  }

  pendingKeys(): Key[] {
    return Object.keys(this.data.pending);
  }

  baseKeys(): Key[] {
    return Object.keys(this.data.base);
  }

  touchSync(at = Date.now()): void {
    this.data.lastSyncAt = at;
    this.dirty = true;
  }

  /** Writes the file when something changed. Idempotent. */
  async save(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    try {
      await atomicWrite(this.path, Buffer.from(JSON.stringify(this.data)));
    } catch (err) {
      this.dirty = true;
      throw err;
    }
  }
}
