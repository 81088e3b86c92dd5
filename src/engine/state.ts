import { constants } from 'node:fs';
import { open, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWrite, FILE_MODE, fsyncDir } from '../fs/atomic.js';
import type { Key } from '../core/keys.js';

/** What this instance last saw in sync for a key: the three-way merge's base. */
export interface BaseEntry {
  readonly hash: string;
  readonly version: string;
  /**
   * The local file's stat signature when it was synced: a scan trusts `hash` for a file whose
   * signature is unchanged instead of reading it (see `Mirror.remembered`).
   */
  readonly sig?: string;
}

/** A local change not yet in the store (store unreachable or write failed). */
export interface PendingEntry {
  readonly since: number;
  readonly attempts: number;
  readonly lastError?: string;
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

export interface StateView {
  readonly lastSyncAt?: number;
  readonly pending: ReadonlyArray<readonly [Key, PendingEntry]>;
}

/** `state.json`: the snapshot the journal's lines of the same generation apply to. */
interface Snapshot {
  format: 1;
  /** The store this base belongs to: a base from another store is meaningless and is discarded. */
  store: string;
  /** Journal lines of another generation are never applied (they predate this snapshot). */
  generation: number;
  base: Record<Key, BaseEntry>;
  pending: Record<Key, PendingEntry>;
  lastSyncAt?: number;
  /** Push intents still open when the snapshot was written. */
  intents?: Array<PushIntent & { n: number }>;
}

/**
 * One journal line: `g` the snapshot generation it applies to, then what changed — base entries set
 * or dropped (null), pending entries set or cleared (null), intents recorded (`i`, with the store, so
 * a journal without a snapshot is never applied to another store) or resolved (`r`, by number), the
 * last full sync (`t`).
 */
interface JournalLine {
  g: number;
  b?: Record<Key, BaseEntry | null>;
  p?: Record<Key, PendingEntry | null>;
  i?: Array<PushIntent & { n: number; s: string }>;
  r?: number[];
  t?: number;
}

/** Where versions before the journal kept push intents. */
const LEGACY_INTENTS = 'intents.jsonl';

/** The journal is folded into a new snapshot once it is larger than this or than the snapshot. */
const JOURNAL_MIN_BOUND = 256 * 1024;

type OpenIntent = PushIntent & { readonly n: number };

/**
 * The base, the pending queue and the push intents of one mirror, in `<mirror>/.credsync/`:
 * `state.json`, a snapshot written atomically, and `journal.jsonl`, to which each save appends one
 * fsynced line with only what changed — so a change costs the same few hundred bytes whatever the
 * store's size. The snapshot is rewritten (generation + 1, then the journal truncated) when the
 * journal outgrows it or after a full reconcile that changed something; a crash between the two
 * leaves journal lines of the old generation, which are skipped on replay. A missing or unreadable
 * snapshot, or one that belongs to another store, loads as an empty base — which can only cause
 * pulls and pushes, never deletions.
 */
export class StateFile {
  readonly path: string;
  readonly journalPath: string;
  private readonly baseMap = new Map<Key, BaseEntry>();
  private readonly pendingMap = new Map<Key, PendingEntry>();
  private _lastSyncAt: number | undefined;
  private generation = 0;
  /** The snapshot must be rewritten at the next save (none yet, another store's, unreadable, or a torn journal). */
  private snapshotStale = false;
  /** The snapshot was unusable: the journal's lines (another base's) are not applied either. */
  private discardJournal = false;
  private snapshotBytes = 0;
  private journalBytes = 0;
  /** The journal holds key changes since the snapshot (a full reconcile then folds them in). */
  private journalHasChanges = false;
  /** Changes since the last save: key → new value (null: removed). */
  private readonly changedBase = new Map<Key, BaseEntry | null>();
  private readonly changedPending = new Map<Key, PendingEntry | null>();
  private syncChanged = false;
  private resolved: number[] = [];
  /** Intents whose push has not returned (in flight, failed without an answer, or loaded after a crash). */
  private readonly open = new Map<Key, OpenIntent[]>();
  private nextIntent = 1;
  /** Intents waiting for the next group append. */
  private queued: Array<OpenIntent> = [];
  private nextAppend: Promise<void> | null = null;
  /** Serialises every write of the journal and the snapshot. */
  private io: Promise<void> = Promise.resolve();
  private journalFileKnown = false;
  /** The journal, opened once for appending (O_DSYNC); closed by `close()`. */
  private journalFh: FileHandle | null = null;
  private legacyIntents = false;
  /** Bytes this process wrote to the snapshot and the journal (the `credsync_state_written_bytes_total` counter). */
  writtenBytes = 0;

  constructor(
    private readonly stateDir: string,
    readonly storeId: string,
    /** Journal size past which the snapshot is rewritten (at least the snapshot's own size). Tests lower it. */
    private readonly journalBound = JOURNAL_MIN_BOUND,
  ) {
    this.path = join(stateDir, 'state.json');
    this.journalPath = join(stateDir, 'journal.jsonl');
  }

  /**
   * Loads the snapshot and replays the journal. Returns a note when the snapshot was unusable and an
   * empty base is used instead. Writes nothing (a read-only `status` may load while a daemon runs).
   */
  async load(): Promise<string | null> {
    const note = await this.loadSnapshot();
    await this.replayJournal();
    await this.loadLegacyIntents();
    return note;
  }

  /** `intents.jsonl`, where earlier versions kept push intents: still open after an upgrade, folded into the next snapshot. */
  private async loadLegacyIntents(): Promise<void> {
    let raw: string;
    try {
      raw = await readFile(join(this.stateDir, LEGACY_INTENTS), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    this.legacyIntents = true;
    this.snapshotStale = true;
    for (const text of raw.split('\n')) {
      try {
        const i = JSON.parse(text) as Partial<PushIntent> & { store?: string };
        if (i.store === this.storeId && typeof i.key === 'string' && typeof i.hash === 'string') {
          this.addOpen({ key: i.key, hash: i.hash, expected: typeof i.expected === 'string' ? i.expected : null, at: typeof i.at === 'number' ? i.at : 0, n: this.nextIntent });
        }
      } catch {
        /* empty or torn: its push was never sent */
      }
    }
  }

  private async loadSnapshot(): Promise<string | null> {
    let raw: string;
    try {
      raw = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.snapshotStale = this.discardJournal = true;
      return null;
    }
    this.snapshotBytes = Buffer.byteLength(raw);
    try {
      const parsed = JSON.parse(raw) as Partial<Snapshot>;
      if (parsed.format !== 1 || typeof parsed.base !== 'object' || parsed.base === null) throw new Error('unknown format');
      if (parsed.store !== this.storeId) {
        this.snapshotStale = this.discardJournal = true;
        this.generation = typeof parsed.generation === 'number' ? parsed.generation : 0;
        return `state belongs to another store (${parsed.store}); starting with an empty base (no deletions)`;
      }
      this.generation = typeof parsed.generation === 'number' ? parsed.generation : 0;
      for (const [k, v] of Object.entries(parsed.base)) this.baseMap.set(k, v);
      for (const [k, v] of Object.entries(parsed.pending ?? {})) this.pendingMap.set(k, v);
      this._lastSyncAt = parsed.lastSyncAt;
      for (const i of parsed.intents ?? []) this.addOpen(i);
      return null;
    } catch (err) {
      this.snapshotStale = this.discardJournal = true;
      return `unreadable (${(err as Error).message}); starting with an empty base (no deletions)`;
    }
  }

  /** Applies the journal's lines of this snapshot's generation, in order; a torn last line (a crash mid-append) is ignored. */
  private async replayJournal(): Promise<void> {
    let raw: string;
    try {
      raw = await readFile(this.journalPath, 'utf8');
      this.journalFileKnown = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    this.journalBytes = Buffer.byteLength(raw);
    // A torn tail must not have the next line appended to it: fold everything into a new snapshot first.
    if (raw.length && !raw.endsWith('\n')) this.snapshotStale = true;
    for (const text of raw.split('\n')) {
      if (!text) continue;
      let line: JournalLine;
      try {
        line = JSON.parse(text) as JournalLine;
      } catch {
        continue; // torn by a crash: its fsync never returned, so nothing acted on it
      }
      if (this.discardJournal) {
        // The next snapshot's generation must be one no line left here carries.
        if (typeof line.g === 'number' && line.g > this.generation) this.generation = line.g;
        continue;
      }
      if (line.g !== this.generation) continue;
      this.applyLine(line);
    }
  }

  private applyLine(line: JournalLine): void {
    for (const i of line.i ?? []) {
      if (i.s === this.storeId && typeof i.key === 'string' && typeof i.hash === 'string') this.addOpen({ key: i.key, hash: i.hash, expected: i.expected ?? null, at: i.at ?? 0, n: i.n });
    }
    if (line.r) this.dropOpen(new Set(line.r));
    for (const [k, v] of Object.entries(line.b ?? {})) {
      if (v) this.baseMap.set(k, v);
      else this.baseMap.delete(k);
      this.journalHasChanges = true;
    }
    for (const [k, v] of Object.entries(line.p ?? {})) {
      if (v) this.pendingMap.set(k, v);
      else this.pendingMap.delete(k);
      this.journalHasChanges = true;
    }
    if (typeof line.t === 'number') this._lastSyncAt = line.t;
  }

  base(key: Key): BaseEntry | undefined {
    return this.baseMap.get(key);
  }

  setBase(key: Key, entry: BaseEntry): void {
    const cur = this.baseMap.get(key);
    if (cur && cur.hash === entry.hash && cur.version === entry.version && cur.sig === entry.sig) return;
    const e: BaseEntry = entry.sig ? { hash: entry.hash, version: entry.version, sig: entry.sig } : { hash: entry.hash, version: entry.version };
    this.baseMap.set(key, e);
    this.changedBase.set(key, e);
  }

  dropBase(key: Key): void {
    if (!this.baseMap.delete(key)) return;
    this.changedBase.set(key, null);
  }

  markPending(key: Key, error: string): void {
    const cur = this.pendingMap.get(key);
    const e = { since: cur?.since ?? Date.now(), attempts: (cur?.attempts ?? 0) + 1, lastError: error };
    this.pendingMap.set(key, e);
    this.changedPending.set(key, e);
  }

  clearPending(key: Key): void {
    if (!this.pendingMap.delete(key)) return;
    this.changedPending.set(key, null);
  }

  pendingKeys(): Key[] {
    return [...this.pendingMap.keys()];
  }

  /** What `status` shows of the state: the last full sync and the pending queue. */
  view(): StateView {
    return { lastSyncAt: this._lastSyncAt, pending: [...this.pendingMap.entries()] };
  }

  /** Kept as the map changes, not recomputed per pass. */
  get pendingCount(): number {
    return this.pendingMap.size;
  }

  baseKeys(): Key[] {
    return [...this.baseMap.keys()];
  }

  get baseCount(): number {
    return this.baseMap.size;
  }

  get lastSyncAt(): number | undefined {
    return this._lastSyncAt;
  }

  touchSync(at = Date.now()): void {
    this._lastSyncAt = at;
    this.syncChanged = true;
  }

  // ---------------------------------------------------------------- push intents (write-ahead)

  private addOpen(i: OpenIntent): void {
    if (i.n >= this.nextIntent) this.nextIntent = i.n + 1;
    const list = this.open.get(i.key);
    if (list?.some((x) => x.n === i.n)) return;
    if (list) list.push(i);
    else this.open.set(i.key, [i]);
  }

  private dropOpen(numbers: ReadonlySet<number>): void {
    for (const [key, list] of this.open) {
      const rest = list.filter((x) => !numbers.has(x.n));
      if (rest.length === list.length) continue;
      if (rest.length) this.open.set(key, rest);
      else this.open.delete(key);
    }
  }

  /**
   * Records durably that `key` is about to be pushed with content `hash`: resolves once the journal
   * line is fsynced. Concurrent calls share one append and one fsync (group commit), so a pass pushing
   * many keys at once costs a few fsyncs, not one per key. A failure rejects: the push must then not be sent.
   */
  recordIntent(key: Key, hash: string, expected: string | null): Promise<void> {
    const i: OpenIntent = { key, hash, expected, at: Date.now(), n: this.nextIntent++ };
    this.addOpen(i);
    this.queued.push(i);
    if (!this.nextAppend) {
      const run = this.serialIo(async () => {
        this.nextAppend = null;
        const batch = this.queued;
        this.queued = [];
        if (!batch.length) return;
        try {
          await this.append({ g: this.generation, i: batch.map((x) => ({ ...x, s: this.storeId })) });
        } catch (err) {
          this.dropOpen(new Set(batch.map((b) => b.n)));
          throw err;
        }
      });
      this.nextAppend = run;
    }
    return this.nextAppend;
  }

  /** Intents for `key` whose outcome is unknown (a push in flight, one that failed without an answer, or one a crash interrupted). */
  openIntents(key: Key): readonly PushIntent[] {
    return this.open.get(key) ?? [];
  }

  /** The push of `key` returned (stored, refused or in conflict), or its open intents were judged against the store: forgotten at the next save. */
  resolveIntents(key: Key): void {
    const list = this.open.get(key);
    if (!list) return;
    this.open.delete(key);
    for (const i of list) this.resolved.push(i.n);
  }

  // ---------------------------------------------------------------- durability

  /** Closes the journal's handle once pending writes are done. Idempotent; a later save opens it again. */
  close(): Promise<void> {
    return this.serialIo(() => this.closeJournal());
  }

  private async closeJournal(): Promise<void> {
    const fh = this.journalFh;
    this.journalFh = null;
    await fh?.close().catch(() => {});
  }

  private serialIo(fn: () => Promise<void>): Promise<void> {
    const run = this.io.then(fn);
    this.io = run.catch(() => {});
    return run;
  }

  /** Appends one line and fsyncs it; a snapshot due first is written first (a torn tail is never appended to). */
  private async append(line: JournalLine): Promise<void> {
    if (this.snapshotStale) {
      // The snapshot holds everything the line would have said (open intents included).
      await this.writeSnapshot();
      return;
    }
    // Stamped now, not when the changes were taken: a snapshot written meanwhile already holds them.
    line.g = this.generation;
    const text = JSON.stringify(line) + '\n';
    try {
      // O_DSYNC: the write returns once the line is on disk — one system call where write + fdatasync took two.
      this.journalFh ??= await open(this.journalPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_DSYNC, FILE_MODE);
      await this.journalFh.write(text);
    } catch (err) {
      // Part of the line may be on disk (a full disk): never append after it; the next save writes a snapshot.
      this.snapshotStale = true;
      await this.closeJournal();
      throw err;
    }
    if (!this.journalFileKnown) {
      await fsyncDir(this.stateDir);
      this.journalFileKnown = true;
    }
    const bytes = Buffer.byteLength(text);
    this.journalBytes += bytes;
    this.writtenBytes += bytes;
    if (line.b || line.p) this.journalHasChanges = true;
  }

  /**
   * Folds everything into a new snapshot (generation + 1), then empties the journal. A crash between
   * the two leaves lines of the old generation, which replay skips.
   */
  private async writeSnapshot(): Promise<void> {
    const gen = this.generation + 1;
    const snap: Snapshot = {
      format: 1,
      store: this.storeId,
      generation: gen,
      base: Object.fromEntries(this.baseMap),
      pending: Object.fromEntries(this.pendingMap),
      ...(this._lastSyncAt !== undefined ? { lastSyncAt: this._lastSyncAt } : {}),
      intents: [...this.open.values()].flat(),
    };
    const data = Buffer.from(JSON.stringify(snap));
    await atomicWrite(this.path, data);
    this.generation = gen;
    this.snapshotStale = false;
    this.snapshotBytes = data.length;
    this.writtenBytes += data.length;
    this.journalHasChanges = false;
    if (this.journalFh) {
      await this.journalFh.truncate(0);
      await this.journalFh.datasync();
    } else if (this.journalBytes > 0 || this.journalFileKnown) {
      const fh = await open(this.journalPath, 'r+').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : Promise.reject(err)));
      if (fh) {
        try {
          await fh.truncate(0);
          await fh.datasync();
        } finally {
          await fh.close();
        }
      }
    }
    this.journalBytes = 0;
    if (this.legacyIntents) {
      await unlink(join(this.stateDir, LEGACY_INTENTS)).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
      this.legacyIntents = false;
    }
  }

  /**
   * Makes every change since the last save durable: one journal line (fsynced), or a new snapshot when
   * the journal has outgrown its bound. Does nothing when nothing changed. On failure the changes stay
   * for the next save.
   */
  async save(): Promise<void> {
    const line = this.takeChanges();
    if (!line && !this.snapshotStale) return;
    try {
      await this.serialIo(async () => {
        if (line) await this.append(line);
        else await this.writeSnapshot();
        if (this.journalBytes > Math.max(this.journalBound, this.snapshotBytes)) await this.writeSnapshot();
      });
    } catch (err) {
      if (line) this.restoreChanges(line);
      throw err;
    }
  }

  /** After a full reconcile: fold the journal into a new snapshot when it holds key changes (restarts replay less). */
  async checkpoint(): Promise<void> {
    await this.save();
    if (!this.journalHasChanges) return;
    await this.serialIo(() => this.writeSnapshot());
  }

  private takeChanges(): JournalLine | null {
    if (!this.changedBase.size && !this.changedPending.size && !this.resolved.length && !this.syncChanged) return null;
    const line: JournalLine = { g: this.generation };
    if (this.changedBase.size) line.b = Object.fromEntries(this.changedBase);
    if (this.changedPending.size) line.p = Object.fromEntries(this.changedPending);
    if (this.resolved.length) line.r = this.resolved;
    if (this.syncChanged && this._lastSyncAt !== undefined) line.t = this._lastSyncAt;
    this.changedBase.clear();
    this.changedPending.clear();
    this.resolved = [];
    this.syncChanged = false;
    return line;
  }

  /** A failed save: what it carried is saved next time (newer changes of the same key win). */
  private restoreChanges(line: JournalLine): void {
    for (const [k, v] of Object.entries(line.b ?? {})) if (!this.changedBase.has(k)) this.changedBase.set(k, v);
    for (const [k, v] of Object.entries(line.p ?? {})) if (!this.changedPending.has(k)) this.changedPending.set(k, v);
    this.resolved.unshift(...(line.r ?? []));
    if (line.t !== undefined) this.syncChanged = true;
  }
}

