import type { Logger } from 'pino';
import { contentHash } from '../../core/canonical.js';
import { ConfigError, InvalidKeyError, StoreError } from '../../core/errors.js';
import { validateKey, type Key } from '../../core/keys.js';
import { redactUrl } from '../../core/redact.js';
import type { Change, DeleteOptions, Entry, Item, Listing, PutOptions, Store, StopWatching, WatchOptions } from '../../core/store.js';
import { BatchCommitter } from './batch.js';
import { GitClone } from './clone.js';
import { GitEnv, storeErrorOf } from './env.js';
import { startPolling } from './poller.js';
import type { StoreSpec } from '../spec.js';

/**
 * The Git settings of the store spec (`stores/spec.ts`: url — never with credentials in it —, username,
 * token passed per command and never written anywhere, branch, author, poll interval), plus what only
 * the store itself needs. `username` defaults to `git` here too.
 */
export interface GitStoreOptions extends GitSettings {
  /** The private working clone (the mirror's `.credsync/git/`). Never the mirror itself. */
  readonly workDir: string;
  /** How long the first write of a batch waits for others to join its commit (default 5 ms). */
  readonly batchWindowMs?: number;
  /** Push attempts per batch when the branch keeps moving (default 10). */
  readonly maxPushAttempts?: number;
  readonly log?: Logger;
  /** The environment git's own settings are taken from (proxies, CAs, GIT_SSH_COMMAND); default process.env. */
  readonly baseEnv?: NodeJS.ProcessEnv;
}

type GitSettings = Omit<Extract<StoreSpec, { kind: 'git' }>, 'kind' | 'username'> & { readonly username?: string };

const DEFAULT_POLL_MS = 2000;
const HASH_CACHE = 20_000;

/**
 * The Git store: CLIProxyAPI's repository layout (`config/config.yaml`, `auths/<id>`) with real history.
 * An item's version is its blob id at the fetched tip; writes are commits on top of it, pushed as plain
 * fast-forwards (the server's refusal of a non-fast-forward is the compare-and-swap). Changes by anyone
 * — another credsync, a human's commit, CLIProxyAPI's force-pushed orphan commit — are seen by polling
 * the remote tip and diffing trees.
 */
/** Credentials written into an http(s) URL are taken out of it: the URL ends up in .git/config. */
function withoutCredentials(o: GitStoreOptions): { url: string; username?: string; token?: string } {
  if (!/^https?:\/\//i.test(o.url)) return o;
  let u: URL;
  try {
    u = new URL(o.url);
  } catch {
    throw new ConfigError(`git store: ${redactUrl(o.url)} is not a valid URL`);
  }
  if (!u.username && !u.password) return o;
  const username = o.username || decodeURIComponent(u.username) || undefined;
  const token = o.token || decodeURIComponent(u.password) || undefined;
  u.username = '';
  u.password = '';
  return { url: u.toString(), username, token };
}

export function createGitStore(options: GitStoreOptions): Store {
  if (!options.workDir) throw new ConfigError('git store: no working directory for the clone (it lives in <mirror>/.credsync/git/)');
  const { url, username, token } = withoutCredentials(options);
  const genv = new GitEnv({ url, username, token, author: options.author, baseEnv: options.baseEnv });
  const log = options.log;
  const clone = new GitClone({ url, branch: options.branch || undefined, workDir: options.workDir, env: genv, log });
  const where = genv.where;
  const batch = new BatchCommitter(clone, {
    windowMs: options.batchWindowMs ?? 5,
    maxAttempts: options.maxPushAttempts ?? 10,
    backoffMs: 25,
    maxBackoffMs: 1000,
    log,
    where,
  });
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_MS;
  const watchers = new Set<StopWatching>();
  let closed = false;
  let warnedToken = false;

  /** Canonical hashes by blob id (a blob id fixes the content, so this never goes stale). */
  const hashes = new Map<string, string | null>();
  const hashOf = (key: Key, oid: string, data: Uint8Array): string | undefined => {
    let h = hashes.get(oid);
    if (h === undefined) {
      h = contentHash(key, data);
      if (hashes.size >= HASH_CACHE) hashes.clear();
      hashes.set(oid, h);
    }
    return h ?? undefined;
  };

  const fail = (op: string, err: unknown, key?: string): never => {
    if (err instanceof InvalidKeyError) throw err;
    throw storeErrorOf(err, { op, key, where, branch: clone.branch });
  };

  const ensureOpen = (): void => {
    if (closed) throw new StoreError('git', 'use', undefined, 'store is closed');
  };

  /** Items among `keys` at the freshly fetched tip. */
  const readItems = async (keys: readonly Key[]): Promise<Item[]> => {
    await clone.refresh();
    return clone.read(async (tip) => {
      if (!tip) return [];
      const listing = await clone.listing(tip);
      const wanted = keys.map((k) => listing.files.get(k)).filter((e) => e !== undefined);
      const blobs = await clone.blobs(wanted.map((e) => e.oid));
      return wanted.map((e) => {
        const data = blobs.get(e.oid)!;
        return { key: e.path, version: e.oid, data, hash: hashOf(e.path, e.oid, data) };
      });
    });
  };

  const store: Store = {
    name: 'git',
    capabilities: { cas: 'enforced', watch: 'poll', pollIntervalMs },
    id: redactUrl(url) + (options.branch ? `#${options.branch}` : ''),

    async init() {
      ensureOpen();
      if (genv.tokenUnused && !warnedToken) {
        warnedToken = true;
        log?.warn({ remote: where }, `git ${where}: GITSTORE_GIT_TOKEN is set but only http(s) URLs use it; ignoring it`);
      }
      try {
        await clone.init();
      } catch (err) {
        fail('init', err);
      }
    },

    async list(): Promise<Listing> {
      ensureOpen();
      try {
        await clone.refresh();
        return await clone.read(async (tip) => {
          if (!tip) return { entries: [], skipped: [] };
          const listing = await clone.listing(tip);
          const entries: Entry[] = [...listing.files.values()]
            .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
            .map((e) => {
              const h = hashes.get(e.oid);
              return h ? { key: e.path, version: e.oid, hash: h } : { key: e.path, version: e.oid };
            });
          return { entries, skipped: [...listing.skipped] };
        });
      } catch (err) {
        return fail('list', err);
      }
    },

    async get(key: Key): Promise<Item | null> {
      validateKey(key);
      ensureOpen();
      try {
        return (await readItems([key]))[0] ?? null;
      } catch (err) {
        return fail('get', err, key);
      }
    },

    async getMany(keys: Key[]): Promise<Item[]> {
      for (const k of keys) validateKey(k);
      ensureOpen();
      if (!keys.length) return [];
      try {
        return await readItems(keys);
      } catch (err) {
        return fail('get', err);
      }
    },

    async put(key: Key, data: Uint8Array, o: PutOptions = {}): Promise<Entry> {
      validateKey(key);
      ensureOpen();
      const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      try {
        const oid = (await batch.submit({ key, data: Buffer.from(bytes), ifVersion: o.ifVersion }))!;
        const hash = hashOf(key, oid, bytes);
        return hash ? { key, version: oid, hash } : { key, version: oid };
      } catch (err) {
        return fail('put', err, key);
      }
    },

    async delete(key: Key, o: DeleteOptions = {}): Promise<void> {
      validateKey(key);
      ensureOpen();
      try {
        await batch.submit({ key, data: null, ifVersion: o.ifVersion });
      } catch (err) {
        fail('delete', err, key);
      }
    },

    async watch(onChange: (c: Change) => void, w: WatchOptions): Promise<StopWatching> {
      ensureOpen();
      const stop = await startPolling(clone, {
        intervalMs: pollIntervalMs,
        onChange,
        onReady: w.onReady,
        onError: w.onError,
        log,
        normalise: (err) => storeErrorOf(err, { op: 'watch', where, branch: clone.branch }),
      });
      const wrapped: StopWatching = async () => {
        watchers.delete(wrapped);
        await stop();
      };
      watchers.add(wrapped);
      return wrapped;
    },

    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled([...watchers].map((s) => s()));
      await batch.drain();
      await clone.close();
    },
  };
  return store;
}
