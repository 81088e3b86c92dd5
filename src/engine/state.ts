import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWrite, FILE_MODE, fsyncDir } from '../fs/atomic.js';
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

/**
 * A push about to be sent: written durably (fsynced) before the store write, so that after a crash
 * between the push and saving the base, a restart recognises the store's copy as its own push (its
 * content hash is the one pushed) instead of taking it for someone else's change.
 */
export interface PushIntent {
  readonly key: Key;
  /** Canonical content hash of what is pushed. */
  readonly hash: string;
  /** The CAS precondition sent (null: must not exist). For diagnosis. */
  readonly expected: string | null;
  readonly at: number;
}

const emptyState = (store: string): StateData => ({ format: 1, store, base: {}, pending: {} });

/**
 * `<mirror>/.credsync/state.json`, written atomically. A missing or unreadable file, or one that
 * belongs to another store, loads as an empty base — which can only cause pulls and pushes, never deletions.
 */
export class StateFile {
  readonly path: string;
  /** `<mirror>/.credsync/intents.jsonl`: one JSON line per push intent whose outcome is not in the saved base. */
  readonly intentsPath: string;
  data: StateData;
  private dirty = false;
  /** Intents whose push has not returned (in flight, failed without an answer, or loaded after a crash). */
  private readonly open = new Map<Key, PushIntent[]>();
  /** Intents waiting for the next group append. */
  private queued: PushIntent[] = [];
  private nextAppend: Promise<void> | null = null;
  /** Serialises every write of the intents file. */
  private intentIo: Promise<void> = Promise.resolve();
  /** The intents file holds lines for intents that are no longer open: rewrite it after the base is saved. */
  private intentsStale = false;
  private intentsFileKnown = false;

  constructor(
    private readonly stateDir: string,
    private readonly storeId: string,
  ) {
    this.path = join(stateDir, 'state.json');
    this.intentsPath = join(stateDir, 'intents.jsonl');
    this.data = emptyState(storeId);
  }

  /** Returns a note when the file was unusable and an empty base is used instead. */
  async load(): Promise<string | null> {
    const note = await this.loadBase();
    await this.loadIntents();
    return note;
  }

  /** Reads the intents a previous run left (a torn last line is ignored). A state file without intents loads as before. */
  private async loadIntents(): Promise<void> {
    let raw: string;
    try {
      raw = await readFile(this.intentsPath, 'utf8');
      this.intentsFileKnown = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const line of raw.split('\n')) {
      if (!line.trim()) continue;
      try {
        const i = JSON.parse(line) as Partial<PushIntent> & { store?: string };
        if (i.store !== this.storeId || typeof i.key !== 'string' || typeof i.hash !== 'string') continue;
        this.addOpen({ key: i.key, hash: i.hash, expected: typeof i.expected === 'string' ? i.expected : null, at: typeof i.at === 'number' ? i.at : 0 });
      } catch {
        /* a line torn by a crash: its push was never sent */
      }
    }
  }

  private async loadBase(): Promise<string | null> {
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

  // ---------------------------------------------------------------- push intents (write-ahead)

  private addOpen(i: PushIntent): void {
    const list = this.open.get(i.key);
    if (list) list.push(i);
    else this.open.set(i.key, [i]);
  }

  /**
   * Records durably that `key` is about to be pushed with content `hash`: resolves once the line is
   * fsynced. Concurrent calls share one append and one fsync (group commit), so a pass pushing many keys
   * at once costs a few fsyncs, not one per key. A failure rejects: the push must then not be sent.
   */
  recordIntent(key: Key, hash: string, expected: string | null): Promise<void> {
    const i: PushIntent = { key, hash, expected, at: Date.now() };
    this.addOpen(i);
    this.queued.push(i);
    if (!this.nextAppend) {
      const run = this.intentIo.then(async () => {
        this.nextAppend = null;
        const batch = this.queued;
        this.queued = [];
        if (!batch.length) return;
        try {
          await this.appendIntents(batch);
        } catch (err) {
          for (const b of batch) this.dropOpen(b);
          throw err;
        }
      });
      this.nextAppend = run;
      this.intentIo = run.catch(() => {});
    }
    return this.nextAppend;
  }

  private async appendIntents(batch: readonly PushIntent[]): Promise<void> {
    const fh = await open(this.intentsPath, 'a', FILE_MODE);
    try {
      await fh.write(batch.map((i) => JSON.stringify({ store: this.storeId, ...i }) + '\n').join(''));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    if (!this.intentsFileKnown) {
      await fsyncDir(this.stateDir);
      this.intentsFileKnown = true;
    }
  }

  private dropOpen(i: PushIntent): void {
    const list = this.open.get(i.key);
    if (!list) return;
    const rest = list.filter((x) => x !== i);
    if (rest.length) this.open.set(i.key, rest);
    else this.open.delete(i.key);
  }

  /** Intents for `key` whose outcome is unknown (a push in flight, one that failed without an answer, or one a crash interrupted). */
  openIntents(key: Key): readonly PushIntent[] {
    return this.open.get(key) ?? [];
  }

  /** The push of `key` returned (stored, refused or in conflict), or its open intents were judged against the store: forget them once the base is saved. */
  resolveIntents(key: Key): void {
    if (!this.open.delete(key)) return;
    this.intentsStale = true;
  }

  /** Writes the file when something changed, then drops the intents it made obsolete. Idempotent. */
  async save(): Promise<void> {
    if (this.dirty) {
      this.dirty = false;
      try {
        await atomicWrite(this.path, Buffer.from(JSON.stringify(this.data)));
      } catch (err) {
        this.dirty = true;
        throw err;
      }
    }
    if (this.intentsStale) await this.rewriteIntents();
  }

  /** The base is durable: the intents file keeps only the intents still open (usually none). */
  private rewriteIntents(): Promise<void> {
    const run = this.intentIo.then(async () => {
      this.intentsStale = false;
      const still = [...this.open.values()].flat();
      try {
        if (still.length === 0) {
          // The usual case: every push of the pass is in the saved base. One truncate and one fsync.
          // (Were the truncate lost in a crash, an old intent would only re-assert a base the store confirms.)
          const fh = await open(this.intentsPath, 'r+').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : Promise.reject(err)));
          if (fh) {
            try {
              await fh.truncate(0);
              await fh.datasync();
            } finally {
              await fh.close();
            }
          }
        } else {
          await atomicWrite(this.intentsPath, Buffer.from(still.map((i) => JSON.stringify({ store: this.storeId, ...i }) + '\n').join('')));
          this.intentsFileKnown = true;
        }
      } catch (err) {
        this.intentsStale = true;
        throw err;
      }
    });
    this.intentIo = run.catch(() => {});
    return run;
  }
}
