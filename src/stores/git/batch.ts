import type { Logger } from 'pino';
import { ConflictError, ItemRejectedError, StoreError } from '../../core/errors.js';
import type { Key } from '../../core/keys.js';
import { isCorruption, type GitClone, type Listing } from './clone.js';

/**
 * Puts and deletes become commits. Calls arriving together (within `windowMs`, or while the previous
 * commit is being pushed) share ONE commit on top of the fetched tip. Each call keeps its own
 * compare-and-swap: its expected version is checked against the blob at the tip the commit is built
 * on. A rejected push (someone else moved the branch) is the compare-and-swap failing at the server:
 * fetch, check every call again (a key someone else changed is that caller's ConflictError; the others
 * are applied again on the new tip) and retry with jittered, bounded backoff. Never forced.
 */

export interface WriteOp {
  readonly key: Key;
  /** null: delete. */
  readonly data: Uint8Array | null;
  /** undefined: unconditional; null: must not exist; a blob id: must be that blob. */
  readonly ifVersion: string | null | undefined;
}

interface Pending extends WriteOp {
  oid?: string;
  done: boolean;
  resolve(oid: string | null): void;
  reject(err: unknown): void;
}

export interface BatchOptions {
  /** How long the first call of a batch waits for company (ms). */
  readonly windowMs: number;
  /** Push attempts per batch before the callers get a StoreError. */
  readonly maxAttempts: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly log?: Logger;
  readonly where: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `credsync: update auths/a.json, delete auths/b.json` (the first few in the subject, all in the body). */
export function commitMessage(changes: ReadonlyMap<string, string | null>): string {
  const items = [...changes].map(([path, oid]) => `${oid ? 'update' : 'delete'} ${path}`);
  const shown = 6;
  if (items.length <= shown) return `credsync: ${items.join(', ')}`;
  return `credsync: ${items.slice(0, shown).join(', ')} and ${items.length - shown} more\n\n${items.join('\n')}\n`;
}

export class BatchCommitter {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly flushes = new Set<Promise<void>>();

  constructor(
    private readonly clone: GitClone,
    private readonly o: BatchOptions,
  ) {}

  /** Resolves with the blob id written (null for a delete) once the commit holding it is pushed. */
  submit(op: WriteOp): Promise<string | null> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ...op, done: false, resolve, reject });
      if (!this.timer) this.timer = setTimeout(() => this.flush(), this.o.windowMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const run = this.clone
      .exclusive(() => this.flushLocked())
      .catch((err: unknown) => {
        // The clone could not be made ready: every call waiting now shares that failure.
        for (const op of this.queue.splice(0)) op.reject(err);
      });
    this.flushes.add(run);
    void run.finally(() => this.flushes.delete(run));
  }

  /** Pushes whatever is queued now and waits for every batch in flight. */
  async drain(): Promise<void> {
    if (this.timer) this.flush();
    while (this.flushes.size) await Promise.allSettled([...this.flushes]);
  }

  private async flushLocked(): Promise<void> {
    const ops = this.queue.splice(0);
    if (!ops.length) return;
    try {
      await this.apply(ops);
    } catch (err) {
      for (const op of ops) if (!op.done) op.reject(err);
    }
  }

  private settle(op: Pending, result: { oid: string | null } | { err: unknown }): void {
    op.done = true;
    if ('err' in result) op.reject(result.err);
    else op.resolve(result.oid);
  }

  private async apply(ops: Pending[]): Promise<void> {
    let recovered = false;
    // Whether the tip was fetched during this batch: a conflict against an older tip may only be our
    // clone lagging behind, so it is confirmed against a fresh fetch before anyone is told.
    let fresh = false;
    for (let attempt = 1; ; ) {
      const live = ops.filter((op) => !op.done);
      if (!live.length) return;
      const gen = this.clone.generation;
      try {
        // Written again on every attempt: a clone made again after corruption has none of them.
        for (const op of live) if (op.data) op.oid = await this.clone.writeBlob(op.data);
        const parent = this.clone.tip;
        const listing: Listing = parent ? await this.clone.listing(parent) : { files: new Map(), skipped: [], paths: new Set() };
        const { accepted, changes, conflicts, clashes } = this.evaluate(live, listing);
        if (conflicts.length && !fresh) {
          await this.clone.fetchLocked();
          fresh = true;
          continue;
        }
        for (const { op, actual } of conflicts) this.settle(op, { err: new ConflictError('git', op.data ? 'put' : 'delete', op.key, op.ifVersion, actual) });
        for (const op of clashes) this.settle(op, { err: new ItemRejectedError('git', 'put', op.key, 'a file and a directory of the same name would clash in the repository') });
        if (!changes.size) {
          for (const op of accepted) this.settle(op, { oid: op.data ? op.oid! : null });
          return;
        }
        const commit = await this.clone.commitLocked(parent, changes, commitMessage(changes));
        if ((await this.clone.pushLocked(commit)) === 'pushed') {
          this.clone.deriveListing(listing, commit, changes);
          for (const op of accepted) this.settle(op, { oid: op.data ? op.oid! : null });
          return;
        }
        if (attempt >= this.o.maxAttempts) {
          throw new StoreError('git', 'push', undefined, `push to ${this.o.where} rejected ${attempt} times in a row (the branch keeps moving); will retry`);
        }
        const wait = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** (attempt - 1)) * (0.5 + Math.random());
        this.o.log?.debug({ attempt, waitMs: Math.round(wait), keys: live.map((op) => op.key) }, `git push rejected (the remote moved); fetching and checking ${live.length} change(s) again`);
        attempt++;
        await sleep(wait);
        await this.clone.fetchLocked();
        fresh = true;
      } catch (err) {
        if (!recovered && isCorruption(err)) {
          recovered = true;
          await this.clone.recoverLocked(err, gen);
          fresh = true;
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * Checks each call against the tip in arrival order (a second call on the same key sees the first
   * one's result). Calls whose expected version does not hold are `conflicts`; the rest become `changes`.
   */
  private evaluate(live: Pending[], listing: Listing): { accepted: Pending[]; changes: Map<string, string | null>; conflicts: Array<{ op: Pending; actual: string | null }>; clashes: Pending[] } {
    const state = new Map<string, string | null>();
    const accepted: Pending[] = [];
    const conflicts: Array<{ op: Pending; actual: string | null }> = [];
    const clashes: Pending[] = [];
    const current = (key: string): string | null => (state.has(key) ? state.get(key)! : (listing.files.get(key)?.oid ?? null));
    for (const op of live) {
      const cur = current(op.key);
      // A conditional delete of something already gone succeeds (deletes are idempotent).
      if (op.ifVersion !== undefined && cur !== op.ifVersion && !(op.data === null && cur === null)) {
        conflicts.push({ op, actual: cur });
        continue;
      }
      if (op.data && this.clashes(op.key, listing, state)) {
        clashes.push(op);
        continue;
      }
      state.set(op.key, op.data ? op.oid! : null);
      accepted.push(op);
    }
    const changes = new Map<string, string | null>();
    for (const [key, oid] of state) if ((listing.files.get(key)?.oid ?? null) !== oid) changes.set(key, oid);
    return { accepted, changes, conflicts, clashes };
  }

  /** A file where a directory is (or the reverse) would make the index refuse the whole batch. */
  private clashes(key: string, listing: Listing, state: ReadonlyMap<string, string | null>): boolean {
    const present = (p: string): boolean => (state.has(p) ? state.get(p) !== null : listing.paths.has(p));
    const segs = key.split('/');
    for (let i = 1; i < segs.length; i++) if (present(segs.slice(0, i).join('/'))) return true;
    const below = `${key}/`;
    for (const p of listing.paths) if (p.startsWith(below) && present(p)) return true;
    for (const [p, oid] of state) if (oid && p.startsWith(below)) return true;
    return false;
  }
}
