import { mkdir, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { FileTree } from '../fs/tree.js';
import { forEachLimit } from '../core/limit.js';
import { watchTree } from '../fs/watcher.js';
import { contentHash } from '../core/canonical.js';
import { ConflictError, InvalidKeyError, ItemRejectedError, StoreError, errorMessage } from '../core/errors.js';
import { FileRefusedError } from '../fs/atomic.js';
import { validateKey, type Key } from '../core/keys.js';
import type { Change, DeleteOptions, Entry, InitOptions, Item, Listing, PutOptions, SkippedItem, Store, StopWatching, WatchOptions } from '../core/store.js';

export interface DirStoreOptions {
  /** The store directory (created 0700 if missing). Layout: `config/config.yaml`, `auths/<id>`. */
  readonly path: string;
  /** Debounce for the watcher, in ms. */
  readonly debounceMs?: number;
  readonly log?: Logger;
}

const LOCK_STALE_MS = 5_000;
const LOCK_WAIT_MS = 10_000;

/** Version of raw bytes: equal bytes ⇔ equal version, so a CAS never misses a change. */
function versionOf(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 32);
}

/**
 * A plain directory as the shared store (e.g. an NFS volume, or two daemons on one host).
 * Writes are atomic renames; compare-and-swap holds a short cross-process lock (an exclusive
 * `mkdir` of `.credsync-lock`, taken over when older than 5 s so a crashed holder cannot wedge it).
 */
export function createDirStore(options: DirStoreOptions): Store {
  const tree = new FileTree(options.path);
  const lockDir = join(options.path, '.credsync-lock');
  const fail = (op: string, key: Key | undefined, err: unknown): never => {
    if (err instanceof StoreError || err instanceof InvalidKeyError) throw err;
    throw new StoreError('dir', op, key, errorMessage(err), { cause: err });
  };

  async function withLock<T>(key: Key, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        await mkdir(lockDir, { mode: 0o700 });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const st = await stat(lockDir).catch(() => null);
        if (st && Date.now() - st.mtimeMs > LOCK_STALE_MS) {
          await rmdir(lockDir).catch(() => {});
          continue;
        }
        if (Date.now() > deadline) throw new StoreError('dir', 'lock', key, `${lockDir} held for more than ${LOCK_WAIT_MS} ms`);
        await new Promise((r) => setTimeout(r, 1 + Math.random() * 4));
      }
    }
    try {
      return await fn();
    } finally {
      await rmdir(lockDir).catch(() => {});
    }
  }

  const store: Store = {
    name: 'dir',
    // The cross-process lock makes the directory itself refuse a stale write (among credsync writers).
    capabilities: { cas: 'enforced', watch: 'push' },
    id: `file://${options.path}`,

    async init(o?: InitOptions) {
      if (o?.readOnly) return; // a missing directory lists as empty
      try {
        await tree.init();
      } catch (err) {
        fail('init', undefined, err);
      }
    },

    async list(): Promise<Listing> {
      try {
        const { files, skipped } = await tree.scan();
        const found = new Map<Key, Entry>();
        const refused: SkippedItem[] = [];
        await forEachLimit(files, 32, async (f) => {
          let data: Uint8Array | null;
          try {
            data = await tree.readScanned(f);
          } catch (err) {
            // One file that is not a regular file (a FIFO …) is that item's problem, not the store's.
            if (!(err instanceof FileRefusedError)) throw err;
            refused.push({ id: f.key, reason: err.reason });
            return;
          }
          if (data) found.set(f.key, { key: f.key, version: versionOf(data), hash: contentHash(f.key, data) ?? undefined });
        });
        const entries = files.map((f) => found.get(f.key)).filter((e): e is Entry => e !== undefined);
        return { entries, skipped: [...skipped, ...refused] };
      } catch (err) {
        return fail('list', undefined, err);
      }
    },

    async get(key: Key): Promise<Item | null> {
      validateKey(key);
      try {
        const data = await tree.read(key);
        if (!data) return null;
        return { key, version: versionOf(data), data, hash: contentHash(key, data) ?? undefined };
      } catch (err) {
        if (err instanceof FileRefusedError) throw new ItemRejectedError('dir', 'get', key, err.reason, { cause: err });
        return fail('get', key, err);
      }
    },

    async put(key: Key, data: Uint8Array, o: PutOptions = {}): Promise<Entry> {
      validateKey(key);
      const write = async (): Promise<Entry> => {
        if (o.ifVersion !== undefined) {
          const cur = await tree.read(key);
          const actual = cur ? versionOf(cur) : null;
          if (actual !== o.ifVersion) throw new ConflictError('dir', 'put', key, o.ifVersion, actual);
        }
        await tree.write(key, data);
        return { key, version: versionOf(data), hash: contentHash(key, data) ?? undefined };
      };
      try {
        return await withLock(key, write);
      } catch (err) {
        return fail('put', key, err);
      }
    },

    async delete(key: Key, o: DeleteOptions = {}): Promise<void> {
      validateKey(key);
      try {
        await withLock(key, async () => {
          if (o.ifVersion !== undefined) {
            const cur = await tree.read(key);
            if (!cur) return;
            const actual = versionOf(cur);
            if (actual !== o.ifVersion) throw new ConflictError('dir', 'delete', key, o.ifVersion, actual);
          }
          await tree.remove(key);
        });
      } catch (err) {
        fail('delete', key, err);
      }
    },

    async watch(onChange: (c: Change) => void, w: WatchOptions): Promise<StopWatching> {
      const emit = async (keys: Key[]): Promise<void> => {
        for (const key of keys) {
          const st = await tree.statOf(key).catch(() => null);
          onChange({ key, op: st ? 'put' : 'delete' });
        }
      };
      try {
        return await watchTree(tree, {
          debounceMs: options.debounceMs ?? 20,
          onKeys: (keys) => void emit(keys),
          // A directory vanished or appeared: events may be missing, so ask for a full reconcile.
          onStructural: () => w.onReady(),
          onReady: () => w.onReady(),
          onError: (err) => w.onError?.(err),
        });
      } catch (err) {
        return fail('watch', undefined, err);
      }
    },

    async close() {},
  };
  return store;
}
