import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadEnv } from '../config/env.js';
import { parseStoreUrl, describeStore, type StoreSpec } from '../config/store-spec.js';
import { ConfigError } from '../core/errors.js';
import type { Key } from '../core/keys.js';
import { forEachLimit } from '../core/limit.js';
import type { Item, Store } from '../core/store.js';
import { openStore } from '../stores/registry.js';
import type { EncryptionSettings } from '../stores/registry.js';

/**
 * What the operator commands (migrate, backup, restore, prune, doctor) share: opening a store named
 * by a URL (or the environment's selection), reading in bounded batches, and the exit codes.
 */

/** Exit codes of every command (the CLI maps error classes onto them; README and --help list them). */
export const EXIT_CODES = { ok: 0, failure: 1, usage: 2, verification: 3, guard: 4 } as const;

/** Items read, written and verified per batch: memory stays bounded whatever the store holds. */
export const BATCH_SIZE = 256;
/** Parallel single-item reads when a store has no `getMany`; parallel writes. */
export const READ_PARALLEL = 16;
export const WRITE_PARALLEL = 8;

/** A store opened for a one-shot command, with its private working directory. */
export interface OpenedStore {
  readonly store: Store;
  readonly spec: StoreSpec;
  /** Redacted description (describeStore). */
  readonly label: string;
  close(): Promise<void>;
}

/** Parses `--from`/`--to` style store URLs (`file:///…`, `postgres://…`, `s3://…`, `git+…`). */
export function specOfUrl(raw: string, cwd = process.cwd()): StoreSpec {
  return parseStoreUrl(raw, loadEnv(cwd), cwd);
}

/**
 * Opens and initialises a store for a one-shot command. Its working directory (the Git store's
 * clone) is a private temp directory (0700) removed on close: one-shot commands never touch a mirror's
 * `.credsync/` for stores they were merely pointed at. With `encryption`, the store is read and written
 * through the encryption wrapper; without, its bytes as they are.
 */
export async function openSide(spec: StoreSpec, log?: Logger, encryption?: EncryptionSettings): Promise<OpenedStore> {
  const workDir = await mkdtemp(join(tmpdir(), `credsync-${spec.kind}-`));
  let store: Store | undefined;
  const close = async (): Promise<void> => {
    try {
      await store?.close();
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  };
  try {
    store = await openStore(spec, { log, workDir }, encryption);
    await store.init();
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
  return { store, spec, label: describeStore(spec), close };
}

/** True when two specs name the same place (migrating a store onto itself is a usage error). */
export function sameStore(a: StoreSpec, b: StoreSpec): boolean {
  return describeStore(a) === describeStore(b) && JSON.stringify(a) === JSON.stringify(b);
}

/** The items among `keys` that exist: `getMany` when the store has it, else bounded parallel `get`. */
export async function readBatch(store: Store, keys: readonly Key[]): Promise<Map<Key, Item>> {
  const found = new Map<Key, Item>();
  if (keys.length === 0) return found;
  if (store.getMany) {
    for (const it of await store.getMany([...keys])) found.set(it.key, it);
    return found;
  }
  await forEachLimit(keys, READ_PARALLEL, async (k) => {
    const it = await store.get(k);
    if (it) found.set(k, it);
  });
  return found;
}

export function chunks<T>(items: readonly T[], size = BATCH_SIZE): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * `--older-than` and similar ages: `90s`, `30m`, `12h`, `7d`, `2w`, `0`; a bare number is seconds.
 */
export function parseAge(name: string, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/.exec(raw.trim());
  if (!m) throw new ConfigError(`${name} ${raw}: expected a duration like 90s, 30m, 12h, 7d or 2w`);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[(m[2] ?? 's') as 'ms'];
  return Math.round(Number(m[1]) * mult);
}

export function since(start: number): number {
  return Date.now() - start;
}
