import { mkdir, readFile, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { StoreConfigError, StoreError, errorMessage } from '../../core/errors.js';
import { CONFIG_KEY, keyProblem, type Key } from '../../core/keys.js';
import type { Change, SkippedItem } from '../../core/store.js';
import { GitFailure, storeErrorOf, type GitEnv } from './env.js';
import { missingInBatchCheck, parseCatFileBatch, parseDiffTree, parseLsTree, writeLooseBlob, ZERO_OID, type TreeEntry } from './objects.js';
import { GitRunner, type RunOptions } from './runner.js';

/**
 * The store's private working clone under `<mirror>/.credsync/git/`. It is a cache of the remote, never
 * the source of truth: commits are built with plumbing against a temporary index on top of the fetched
 * tip, the work tree is only ever reset to that tip (a file missing there is restored, never committed
 * as a deletion), and a clone that is missing or corrupt is moved aside and made again from the remote.
 *
 * Methods ending in `Locked` run under `lock` (fetch, commit, push, recovery and work-tree updates are
 * one at a time); reads of immutable objects run outside it.
 */

export interface CloneOptions {
  readonly url: string;
  /** Empty: the remote's default branch. */
  readonly branch?: string;
  readonly workDir: string;
  readonly env: GitEnv;
  readonly log?: Logger;
}

/** The tip's items: regular files under the two managed paths, by key. */
export interface Listing {
  readonly files: ReadonlyMap<Key, TreeEntry>;
  readonly skipped: readonly SkippedItem[];
  /** Every path under `auths/` and `config/config.yaml` (including ignored ones), for file/directory clashes. */
  readonly paths: ReadonlySet<string>;
}

export type PushOutcome = 'pushed' | 'rejected';

const MANAGED_PATHSPEC = [CONFIG_KEY, 'auths/'];
const KEEP_BROKEN = 3;
const GC_EVERY_PUSHES = 50;
const GC_EVERY_MS = 10 * 60_000;
const WORKTREE_SYNC_QUIET_MS = 300;
const WORKTREE_SYNC_MAX_DELAY_MS = 5000;
const LISTING_CACHE = 8;

/** Runs async functions one at a time, in call order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => {});
    return result;
  }
}

export function isCorruption(err: unknown): boolean {
  return err instanceof GitFailure && err.kind === 'corrupt';
}

interface RemoteRefs {
  /** Branch HEAD points to (from `ls-remote --symref`), if the server says. */
  readonly head?: string;
  readonly refs: ReadonlyMap<string, string>;
}

function parseLsRemote(out: string): RemoteRefs {
  let head: string | undefined;
  const refs = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [left, name] = line.split('\t');
    if (!left || !name) continue;
    const sym = /^ref: refs\/heads\/(.+)$/.exec(left);
    if (sym) {
      if (name === 'HEAD') head = sym[1];
      continue;
    }
    if (/^[0-9a-f]{40,64}$/.test(left) && name !== 'HEAD') refs.set(name, left);
  }
  return { head, refs };
}

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

export class GitClone {
  readonly git: GitRunner;
  readonly gitDir: string;
  private readonly lock = new Mutex();
  private branchName: string | undefined;
  private ready = false;
  /** The fetched remote tip (refs/remotes/origin/<branch>); null before anything was fetched. */
  private current: string | null = null;
  /** Bumped every time the clone is made again: a reader that failed in an older generation just retries. */
  private gen = 0;
  private queuedFetch: Promise<void> | null = null;
  private readonly listings = new Map<string, Listing>();
  private worktreeTimer: NodeJS.Timeout | null = null;
  private pushesSinceGc = 0;
  private lastGc = 0;
  private shallowNext = false;
  private closed = false;
  private worktreeWarning = '';
  /** The commit whose tree the staging index holds (null: unknown, load it again). */
  private stagedAt: string | null = null;
  private worktreeDue = 0;

  constructor(private readonly o: CloneOptions) {
    this.gitDir = join(o.workDir, '.git');
    this.git = new GitRunner(o.env, this.gitDir, o.workDir);
  }

  get branch(): string {
    return this.branchName ?? this.o.branch ?? '?';
  }

  get tip(): string | null {
    return this.current;
  }

  get generation(): number {
    return this.gen;
  }

  /** The clone has been made (or checked) and the branch fetched. */
  get isReady(): boolean {
    return this.ready;
  }

  private get trackingRef(): string {
    return `refs/remotes/origin/${this.branch}`;
  }

  private fail(op: string, err: unknown, key?: string): StoreError {
    return storeErrorOf(err, { op, key, where: this.o.env.where, branch: this.branch });
  }

  // ------------------------------------------------------------------ public entry points

  /** Makes sure the clone exists, is healthy and has fetched the branch (initialising an empty remote). */
  init(): Promise<void> {
    return this.lock.run(() => this.ensureLocked());
  }

  /**
   * Fetches the branch. Calls arriving while a fetch waits for the lock share it (it starts after them,
   * so each caller sees every write that completed before its call).
   */
  refresh(): Promise<void> {
    if (this.queuedFetch) return this.queuedFetch;
    const p: Promise<void> = this.lock.run(async () => {
      if (this.queuedFetch === p) this.queuedFetch = null;
      await this.ensureLocked();
      await this.guardLocked('fetch', () => this.fetchLocked());
    });
    this.queuedFetch = p;
    p.catch(() => {
      if (this.queuedFetch === p) this.queuedFetch = null;
    });
    return p;
  }

  /** Runs `fn` under the clone's lock (after making sure the clone is there). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(async () => {
      await this.ensureLocked();
      return fn();
    });
  }

  /**
   * Reads at the current tip outside the lock. A read that meets a corrupt clone has it repaired (once)
   * and runs again.
   */
  async read<T>(fn: (tip: string | null) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const gen = this.gen;
      try {
        return await fn(this.current);
      } catch (err) {
        if (attempt === 0 && isCorruption(err)) {
          await this.lock.run(() => this.recoverLocked(err, gen));
          continue;
        }
        throw err;
      }
    }
  }

  /** Runs `fn` (already under the lock); a corrupt clone is repaired once and `fn` runs again. */
  async guardLocked<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!isCorruption(err)) throw err;
      await this.recoverLocked(err, this.gen);
      try {
        return await fn();
      } catch (again) {
        throw this.fail(op, again);
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.worktreeTimer) clearTimeout(this.worktreeTimer);
    this.worktreeTimer = null;
    await this.lock.run(async () => {});
  }

  // ------------------------------------------------------------------ remote

  /** `git ls-remote --symref <url>`: every ref and where HEAD points. */
  private async lsRemoteAll(): Promise<RemoteRefs> {
    try {
      return parseLsRemote(await this.git.run(['ls-remote', '--symref', this.o.url], { at: 'outside' }));
    } catch (err) {
      throw this.fail('connect', err);
    }
  }

  /** The remote branch's tip (`git ls-remote <url> refs/heads/<branch>`), null when the branch is missing. */
  async remoteTip(): Promise<string | null> {
    const ref = `refs/heads/${this.branch}`;
    try {
      const { refs } = parseLsRemote(await this.git.run(['ls-remote', this.o.url, ref], { at: 'outside', timeoutMs: 60_000 }));
      return refs.get(ref) ?? null;
    } catch (err) {
      throw this.fail('poll', err);
    }
  }

  /** The branch a remote without refs will get: the remote's unborn HEAD (what `git clone` would check out), else main. */
  private async unbornHead(): Promise<string> {
    const probe = `${this.o.workDir}.probe-${process.pid}`;
    await mkdir(dirname(probe), { recursive: true, mode: 0o700 });
    await rm(probe, { recursive: true, force: true });
    try {
      await this.git.run(['clone', '-q', '--bare', this.o.url, probe], { at: 'init', cwd: dirname(this.o.workDir) });
      const head = (await this.git.run(['symbolic-ref', 'HEAD'], { at: { gitDir: probe } })).trim();
      return head.replace(/^refs\/heads\//, '') || 'main';
    } catch {
      return 'main';
    } finally {
      await rm(probe, { recursive: true, force: true });
    }
  }

  private async resolveBranch(remote: RemoteRefs): Promise<string> {
    if (this.o.branch) return this.o.branch;
    if (remote.head) return remote.head;
    if (remote.refs.size === 0) return this.unbornHead();
    for (const b of ['main', 'master']) if (remote.refs.has(`refs/heads/${b}`)) return b;
    throw new StoreConfigError('git', 'connect', `cannot tell the default branch of ${this.o.env.where} (its HEAD points nowhere)`, 'set GITSTORE_GIT_BRANCH');
  }

  // ------------------------------------------------------------------ the clone itself

  private async ensureLocked(): Promise<void> {
    if (this.closed) throw new StoreError('git', 'use', undefined, 'store is closed');
    if (this.ready) return;
    const remote = await this.lsRemoteAll();
    this.branchName = await this.resolveBranch(remote);
    const remoteTip = remote.refs.get(`refs/heads/${this.branch}`);
    if (!remoteTip && remote.refs.size > 0) {
      const heads = [...remote.refs.keys()].filter((r) => r.startsWith('refs/heads/')).map((r) => r.slice(11));
      throw new StoreConfigError(
        'git',
        'connect',
        `branch ${this.branch} does not exist at ${this.o.env.where} (it has ${heads.slice(0, 5).join(', ') || 'no branches'}${heads.length > 5 ? ', …' : ''})`,
        'check GITSTORE_GIT_BRANCH (empty = the remote\'s default branch), or create the branch',
      );
    }
    for (let attempt = 0; ; attempt++) {
      try {
        await this.openOrCreate();
        if (remoteTip) await this.fetchLocked();
        else await this.initialiseLocked();
        await this.verifyLocked();
        break;
      } catch (err) {
        if (attempt === 0 && isCorruption(err)) {
          await this.moveAside(errorMessage(err));
          continue;
        }
        throw this.fail('init', err);
      }
    }
    this.ready = true;
  }

  private async openOrCreate(): Promise<void> {
    const { workDir } = this.o;
    if (await exists(join(this.gitDir, 'HEAD'))) {
      const url = (await this.git.run(['config', '--get', 'remote.origin.url']).catch(() => '')).trim();
      if (url === this.o.url) {
        await this.configureBranch();
        return;
      }
      this.o.log?.info({ workDir }, `git clone ${workDir}: points at another remote; cloning ${this.o.env.where} afresh`);
      await rm(workDir, { recursive: true, force: true });
    } else if (await exists(workDir)) {
      const names = await readdir(workDir).catch(() => [] as string[]);
      if (names.length) await this.moveAside('no .git in the clone');
      else await rm(workDir, { recursive: true, force: true });
    }
    await this.createClone();
  }

  /** A new clone (empty: the first fetch fills it) made in a temporary directory and renamed into place. */
  private async createClone(): Promise<void> {
    const { workDir } = this.o;
    const parent = dirname(workDir);
    await mkdir(parent, { recursive: true, mode: 0o700 });
    for (const name of await readdir(parent)) {
      if (name.startsWith(`${basename(workDir)}.tmp-`)) await rm(join(parent, name), { recursive: true, force: true });
    }
    const tmp = `${workDir}.tmp-${process.pid}-${Date.now()}`;
    await mkdir(tmp, { mode: 0o700 });
    const at = { gitDir: join(tmp, '.git'), workTree: tmp };
    await this.git.run(['init', '-q', `--initial-branch=${this.branch}`, tmp], { at: 'init', cwd: parent, auth: false });
    await this.git.run(['config', 'remote.origin.url', this.o.url], { at, auth: false });
    await this.git.run(['config', 'remote.origin.fetch', `+refs/heads/${this.branch}:${this.trackingRef}`], { at, auth: false });
    await rename(tmp, workDir);
    this.shallowNext = true;
    this.current = null;
    this.listings.clear();
    this.o.log?.info({ workDir, remote: this.o.env.where, branch: this.branch }, `git clone ${workDir}: cloning ${this.o.env.where} (branch ${this.branch})`);
  }

  /** Points the existing clone at the resolved branch (it may have changed with the remote's default). */
  private async configureBranch(): Promise<void> {
    const want = `+refs/heads/${this.branch}:${this.trackingRef}`;
    const have = (await this.git.run(['config', '--get', 'remote.origin.fetch'], { auth: false }).catch(() => '')).trim();
    if (have !== want) await this.git.run(['config', 'remote.origin.fetch', want], { auth: false });
    const head = (await this.git.run(['symbolic-ref', '-q', 'HEAD'], { auth: false }).catch(() => '')).trim();
    if (head !== `refs/heads/${this.branch}`) await this.git.run(['symbolic-ref', 'HEAD', `refs/heads/${this.branch}`], { auth: false });
    this.current = await this.readRef(this.trackingRef);
  }

  /** Moves a broken clone out of the way (`<workDir>.broken-<time>`, the last few kept) and says so. */
  private async moveAside(reason: string): Promise<void> {
    const { workDir } = this.o;
    const parent = dirname(workDir);
    const dest = `${workDir}.broken-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    if (await exists(workDir)) {
      await rename(workDir, dest);
      this.o.log?.warn({ workDir, movedTo: dest, reason }, `git clone ${workDir} is corrupt (${reason}); moved aside to ${dest}; cloning ${this.o.env.where} again`);
    }
    const old = (await readdir(parent)).filter((n) => n.startsWith(`${basename(workDir)}.broken-`)).sort();
    for (const n of old.slice(0, Math.max(0, old.length - KEEP_BROKEN))) await rm(join(parent, n), { recursive: true, force: true });
    this.gen++;
    this.current = null;
    this.stagedAt = null;
    this.listings.clear();
  }

  /** A corrupt clone found during an operation: moved aside and made again (unless that already happened). */
  async recoverLocked(err: unknown, gen: number): Promise<void> {
    if (gen !== this.gen) return;
    this.ready = false;
    await this.moveAside(errorMessage(err));
    await this.ensureLocked();
  }

  /** Every pack has its index and the reverse (a pack lost from the disk is the classic corruption). */
  private async checkPacks(): Promise<void> {
    const dir = join(this.gitDir, 'objects', 'pack');
    const names = new Set(await readdir(dir).catch(() => [] as string[]));
    for (const n of names) {
      const [base, ext] = [n.replace(/\.(idx|pack)$/, ''), /\.(idx|pack)$/.exec(n)?.[1]];
      if (!ext) continue;
      const other = `${base}.${ext === 'idx' ? 'pack' : 'idx'}`;
      if (!names.has(other)) throw new GitFailure('verify', null, `fatal: packfile ${join(dir, other)} not found (its ${ext} is there)`);
    }
  }

  /** The packs are whole, the tip's trees and blobs are all readable, and the work tree matches it. */
  private async verifyLocked(): Promise<void> {
    await this.checkPacks();
    if (!this.current) return;
    const listing = await this.listing(this.current);
    const oids = [...new Set([...listing.files.values()].map((e) => e.oid))];
    if (oids.length) {
      const missing = missingInBatchCheck(await this.git.run(['cat-file', '--batch-check'], { input: oids.join('\n') + '\n', auth: false }));
      if (missing.length) throw new GitFailure('cat-file', null, `fatal: missing blob ${missing[0]} (${missing.length} objects missing)`);
    }
    await this.syncWorktreeLocked();
  }

  /**
   * Reads a ref without touching objects; null when it does not exist. The loose ref file or
   * packed-refs is read directly (a fetch is followed by this on every poll that moved); anything
   * unusual (a symbolic ref, another ref store) is left to `git rev-parse`.
   */
  private async readRef(ref: string): Promise<string | null> {
    const loose = await readFile(join(this.gitDir, ref), 'utf8').catch(() => null);
    if (loose !== null && /^[0-9a-f]{40}(?:[0-9a-f]{24})?\n?$/.test(loose)) return loose.trim();
    if (loose === null && !(await exists(join(this.gitDir, 'reftable')))) {
      const packed = await readFile(join(this.gitDir, 'packed-refs'), 'utf8').catch(() => '');
      const line = packed.split('\n').find((l) => l.endsWith(` ${ref}`) && /^[0-9a-f]{40}/.test(l));
      if (line) return line.slice(0, line.indexOf(' '));
      if (!packed.includes(ref)) return null;
    }
    try {
      return (await this.git.run(['rev-parse', '-q', '--verify', ref], { auth: false })).trim() || null;
    } catch (err) {
      if (err instanceof GitFailure && err.exitCode === 1) return null;
      throw err;
    }
  }

  private setTip(tip: string | null): void {
    if (tip === this.current) return;
    this.current = tip;
    this.scheduleWorktreeSync();
  }

  // ------------------------------------------------------------------ fetch

  /** Fetches the branch into refs/remotes/origin/<branch> (non-fast-forward updates accepted: a rewritten remote is still the truth). */
  async fetchLocked(): Promise<void> {
    // --no-show-forced-updates: a rewritten remote is the truth either way; skip git's history walk to say so.
    const args = ['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--no-auto-gc', '--no-show-forced-updates', '--no-recurse-submodules'];
    // A new clone starts from the tip only: history is the remote's, and a cold start stays fast.
    if (this.shallowNext) args.push('--depth=1');
    args.push('origin', `+refs/heads/${this.branch}:${this.trackingRef}`);
    try {
      await this.git.run(args);
    } catch (err) {
      if (err instanceof GitFailure && err.kind === 'missing-ref') {
        const remote = await this.lsRemoteAll();
        if (remote.refs.size === 0) {
          this.o.log?.warn({ remote: this.o.env.where }, `git ${this.o.env.where}: the remote is empty now; initialising it again`);
          await this.initialiseLocked();
          return;
        }
      }
      throw isCorruption(err) ? err : this.fail('fetch', err);
    }
    this.shallowNext = false;
    this.setTip(await this.readRef(this.trackingRef));
  }

  // ------------------------------------------------------------------ reading trees and blobs

  /** The managed part of a commit's tree (cached per commit). */
  async listing(commit: string): Promise<Listing> {
    const hit = this.listings.get(commit);
    if (hit) return hit;
    const out = await this.git.run(['ls-tree', '-r', '-z', '--full-tree', commit, '--', ...MANAGED_PATHSPEC], { auth: false });
    const listing = listingOf(parseLsTree(out));
    this.remember(commit, listing);
    return listing;
  }

  private remember(commit: string, listing: Listing): void {
    this.listings.set(commit, listing);
    while (this.listings.size > LISTING_CACHE) this.listings.delete(this.listings.keys().next().value!);
  }

  /** Blob contents by id; a listed blob that cannot be read means a corrupt clone. */
  async blobs(oids: readonly string[]): Promise<Map<string, Buffer>> {
    const unique = [...new Set(oids)];
    if (!unique.length) return new Map();
    const out = await this.git.catFile(['--batch'], { input: unique.join('\n') + '\n', auth: false });
    const found = parseCatFileBatch(out, unique);
    const missing = unique.filter((o) => !found.has(o));
    if (missing.length) throw new GitFailure('cat-file', null, `fatal: missing blob ${missing[0]}`);
    return found;
  }

  /**
   * What changed under the managed paths from `from` to `to`, by tree (so a rewritten history with the
   * same content is no change). Null when `from` is not in the clone (then only a full reconcile can tell).
   */
  async changesBetween(from: string | null, to: string): Promise<Change[] | null> {
    if (from === to) return [];
    if (from === null) return null;
    let out: string;
    try {
      out = await this.git.run(['diff-tree', '-r', '-z', '--raw', '--no-renames', from, to, '--', ...MANAGED_PATHSPEC], { auth: false });
    } catch (err) {
      // `from` is not in this clone (made again since): let a full reconcile tell.
      if (err instanceof GitFailure) return null;
      throw err;
    }
    const changes: Change[] = [];
    for (const c of parseDiffTree(out)) {
      if (pathVerdict(c.path) !== 'ok') continue;
      const gone = c.status === 'D' || pathVerdict(c.path, c.newMode) !== 'ok';
      changes.push(gone ? { key: c.path, op: 'delete' } : { key: c.path, op: 'put', version: c.newOid });
    }
    return changes;
  }

  // ------------------------------------------------------------------ writing

  async writeBlob(data: Uint8Array): Promise<string> {
    return writeLooseBlob(this.gitDir, data);
  }

  /**
   * One commit on top of `parent` (null: the first commit of an empty remote) applying `changes`
   * (path → blob id, or null to delete), built against the store's own staging index (never the
   * clone's): it is loaded from `parent` unless it already holds that tree (our previous commit, the
   * usual case in a burst). Refuses a commit whose tree differs from the parent's anywhere but the named paths.
   */
  async commitLocked(parent: string | null, changes: ReadonlyMap<string, string | null>, message: string): Promise<string> {
    const index = join(this.gitDir, 'credsync-index');
    const opts: RunOptions = { indexFile: index, auth: false };
    try {
      if (!parent || this.stagedAt !== parent) {
        this.stagedAt = null;
        await unlink(index).catch(() => {});
        if (parent) await this.git.run(['read-tree', parent], opts);
      }
      this.stagedAt = null;
      const records = [...changes].map(([path, oid]) => (oid ? `100644 ${oid}\t${path}` : `0 ${ZERO_OID}\t${path}`));
      await this.git.run(['update-index', '-z', '--index-info'], { ...opts, input: records.join('\0') + '\0' });
      const tree = (await this.git.run(['write-tree'], opts)).trim();
      const commit = (await this.git.run(['commit-tree', tree, ...(parent ? ['-p', parent] : []), '-m', message], opts)).trim();
      await this.checkTouches(parent, commit, changes);
      this.stagedAt = commit;
      return commit;
    } catch (err) {
      await unlink(index).catch(() => {});
      throw err;
    }
  }

  /** Compares the trees: a commit touching any path the batch did not name is never pushed. */
  private async checkTouches(parent: string | null, commit: string, changes: ReadonlyMap<string, string | null>): Promise<void> {
    const out = parent
      ? await this.git.run(['diff-tree', '-r', '-z', '--no-renames', '--name-only', parent, commit], { auth: false })
      : await this.git.run(['ls-tree', '-r', '-z', '--name-only', '--full-tree', commit], { auth: false });
    const touched = out.split('\0').filter(Boolean);
    const stray = touched.filter((p) => !changes.has(p));
    if (stray.length) {
      const msg = `refusing commit ${commit.slice(0, 12)}: its tree changes ${stray.length} path(s) the batch did not name (${stray.slice(0, 5).join(', ')})`;
      this.o.log?.error({ commit, stray: stray.slice(0, 20) }, `git ${this.o.env.where}: ${msg}`);
      throw new StoreError('git', 'commit', undefined, msg);
    }
  }

  /** Plain push of `commit` to the branch: a fast-forward or nothing. Never forced. */
  async pushLocked(commit: string): Promise<PushOutcome> {
    const dst = `refs/heads/${this.branch}`;
    try {
      const out = await this.git.run(['push', '--porcelain', '--no-verify', 'origin', `${commit}:${dst}`]);
      if (/^!\t/m.test(out)) return 'rejected';
    } catch (err) {
      if (!(err instanceof GitFailure)) throw err;
      const line = err.output.split('\n').find((l) => l.startsWith('!\t'));
      // [rejected]: not a fast-forward. A ref lock lost to a concurrent push is the same race.
      if (line && (/\[rejected\]/.test(line) || /\[remote rejected\].*(cannot lock ref|failed to update ref|but expected|incorrect old value)/.test(line))) return 'rejected';
      if (line && /\[remote rejected\]/.test(line)) {
        const why = /\[remote rejected\]\s*\(?([^)]*)\)?/.exec(line)?.[1] ?? 'refused';
        throw new StoreError('git', 'push', undefined, `${this.o.env.where} refused the push to ${this.branch}: ${why} (a protected branch or a server hook? credsync only fast-forwards)`);
      }
      throw this.fail('push', err);
    }
    this.setTip(commit);
    this.pushesSinceGc++;
    this.maybeGc();
    return 'pushed';
  }

  /** Remembers the listing of a commit we built (its parent's plus the changes), sparing an ls-tree. */
  deriveListing(parentListing: Listing, commit: string, changes: ReadonlyMap<string, string | null>): void {
    const files = new Map(parentListing.files);
    const paths = new Set(parentListing.paths);
    for (const [path, oid] of changes) {
      if (oid) {
        files.set(path, { mode: '100644', type: 'blob', oid, path });
        paths.add(path);
      } else {
        files.delete(path);
        paths.delete(path);
      }
    }
    this.remember(commit, { files, skipped: parentListing.skipped, paths });
  }

  /**
   * `git gc --auto`, only after a successful push, and not after every one. Queued on the lock right
   * behind the push, so the writers waiting for that push are answered first.
   */
  private maybeGc(): void {
    if (this.pushesSinceGc < GC_EVERY_PUSHES && Date.now() - this.lastGc < GC_EVERY_MS) return;
    this.pushesSinceGc = 0;
    this.lastGc = Date.now();
    void this.lock.run(async () => {
      if (this.closed) return;
      try {
        await this.git.run(['gc', '--auto', '--quiet'], { auth: false, timeoutMs: 600_000 });
      } catch (err) {
        this.o.log?.warn({ err: errorMessage(err) }, `git gc --auto in ${this.o.workDir}: ${errorMessage(err)}`);
      }
    });
  }

  /** First commit of an empty remote: CLIProxyAPI's layout (`auths/.gitkeep`, `config/.gitkeep`), pushed plainly. */
  private async initialiseLocked(): Promise<void> {
    const empty = await this.writeBlob(new Uint8Array());
    const layout = new Map([
      ['auths/.gitkeep', empty],
      ['config/.gitkeep', empty],
    ]);
    const commit = await this.commitLocked(null, layout, 'credsync: initialise the store layout (auths/.gitkeep, config/.gitkeep)');
    if ((await this.pushLocked(commit)) === 'pushed') {
      this.shallowNext = false;
      this.o.log?.info({ remote: this.o.env.where, branch: this.branch, commit }, `git ${this.o.env.where}: empty remote initialised with auths/.gitkeep and config/.gitkeep on ${this.branch}`);
      return;
    }
    // Someone else initialised it first: take theirs.
    await this.fetchLocked();
  }

  // ------------------------------------------------------------------ work tree

  /**
   * Resets the work tree to the fetched tip once the tip has been quiet for a moment (a burst of pushes
   * shares one reset and never waits behind one), and at least every few seconds during a long burst.
   */
  private scheduleWorktreeSync(): void {
    if (this.closed) return;
    const now = Date.now();
    if (this.worktreeTimer) {
      if (now >= this.worktreeDue) return;
      clearTimeout(this.worktreeTimer);
    } else {
      this.worktreeDue = now + WORKTREE_SYNC_MAX_DELAY_MS;
    }
    this.worktreeTimer = setTimeout(() => {
      this.worktreeTimer = null;
      void this.lock
        .run(() => this.guardLocked('checkout', () => this.syncWorktreeLocked()))
        .catch((err: unknown) => this.o.log?.warn({ err: errorMessage(err) }, `git clone ${this.o.workDir}: work tree update failed: ${errorMessage(err)}`));
    }, Math.min(WORKTREE_SYNC_QUIET_MS, Math.max(0, this.worktreeDue - now)));
    this.worktreeTimer.unref();
  }

  /**
   * The work tree (and the clone's own index and branch) become exactly the fetched tip; missing files
   * come back. It is a view for people, never read back: a file the file system cannot hold (a name too
   * long) is a warning; only a corrupt clone is an error.
   */
  private async syncWorktreeLocked(): Promise<void> {
    if (!this.current || this.closed) return;
    try {
      await this.git.run(['reset', '-q', '--hard', this.current], { auth: false });
    } catch (err) {
      if (isCorruption(err)) throw err;
      if (errorMessage(err) === this.worktreeWarning) return;
      this.worktreeWarning = errorMessage(err);
      this.o.log?.warn({ workDir: this.o.workDir, err: errorMessage(err) }, `git clone ${this.o.workDir}: work tree not fully updated (${errorMessage(err)}); the store is unaffected`);
    }
  }
}

/**
 * How a path under the managed folders is treated: `ok` (an item), `ignore` (dot files such as .gitkeep,
 * non-JSON files under auths/, anything outside the two folders — like the mirror's scan), or the reason
 * it is reported and skipped.
 */
export function pathVerdict(path: string, mode = '100644'): 'ok' | 'ignore' | { reason: string } {
  if (path !== CONFIG_KEY) {
    if (!path.startsWith('auths/')) return 'ignore';
    const segments = path.split('/');
    if (segments.slice(1).some((s) => s.startsWith('.')) || !segments[segments.length - 1]!.endsWith('.json')) return 'ignore';
  }
  if (path.includes('\uFFFD')) return { reason: 'file name is not valid UTF-8' };
  const problem = keyProblem(path);
  if (problem) return { reason: problem };
  if (mode !== '100644' && mode !== '100755') return { reason: mode === '120000' ? 'a symlink in the repository, not a file' : 'not a regular file in the repository' };
  return 'ok';
}

/** Regular files under the managed paths by key; the rest reported (bad ids, links) or ignored. */
function listingOf(entries: readonly TreeEntry[]): Listing {
  const files = new Map<Key, TreeEntry>();
  const skipped: SkippedItem[] = [];
  const paths = new Set<string>();
  for (const e of entries) {
    if (e.path !== CONFIG_KEY && !e.path.startsWith('auths/')) continue;
    paths.add(e.path);
    const verdict = pathVerdict(e.path, e.type === 'blob' ? e.mode : '160000');
    if (verdict === 'ok') files.set(e.path, e);
    else if (verdict !== 'ignore') skipped.push({ id: e.path, reason: verdict.reason });
  }
  return { files, skipped, paths };
}
