import type { Logger } from 'pino';
import { contentHash } from '../../core/canonical.js';
import { ItemRejectedError } from '../../core/errors.js';
import { validateKey, type Key } from '../../core/keys.js';
import type { Change, DeleteOptions, Entry, InitOptions, Item, Listing, PutOptions, StopWatching, Store, StoreCapabilities, WatchOptions } from '../../core/store.js';
import { inspect, seal, unseal, type SealKey } from './envelope.js';

export { ENVELOPE_ALG, ENVELOPE_FORMAT, KEY_BYTES, KID_PATTERN, inspect, seal, unseal, type Envelope, type Inspection, type SealKey } from './envelope.js';

/**
 * `off`: nothing is encrypted (envelopes met in the store are still recognised and rejected with the
 * reason); `on`: every write is sealed under the primary key, plaintext items still read (a fleet
 * switches on gradually); `require`: like `on`, and plaintext items are rejected on read.
 */
export type EncryptionMode = 'off' | 'on' | 'require';
export const ENCRYPTION_MODES: readonly EncryptionMode[] = ['off', 'on', 'require'];

export interface EncryptionSettings {
  readonly mode: EncryptionMode;
  /** The first is the primary (it encrypts); all decrypt. Empty when no key is configured. */
  readonly keys: readonly SealKey[];
}

export const KEYS_VAR = 'CREDSYNC_ENCRYPTION_KEYS';

/** What one stored item is, from the point of view of a key set (for `doctor` and `rewrap`). */
export type Classification =
  | { readonly state: 'plain' }
  | { readonly state: 'primary'; readonly kid: string }
  | { readonly state: 'secondary'; readonly kid: string }
  | { readonly state: 'missing-key'; readonly kid: string }
  | { readonly state: 'undecryptable'; readonly kid: string }
  | { readonly state: 'malformed'; readonly reason: string };

/** The reason an item cannot be read with this key set, or null when it can (plaintext is readable). */
export function rejectionReason(key: Key, c: Classification, mode: EncryptionMode, hasKeys: boolean): string | null {
  switch (c.state) {
    case 'plain':
      return mode === 'require' ? `stored in plaintext, and CREDSYNC_ENCRYPTION=require refuses plaintext items: run \`credsync rewrap\` to encrypt it` : null;
    case 'primary':
    case 'secondary':
      return null;
    case 'missing-key':
      return hasKeys
        ? `encrypted with key id ${c.kid}, which is not configured: add it to ${KEYS_VAR}`
        : `encrypted with key id ${c.kid}, and this process has no encryption key: set ${KEYS_VAR} (or ${KEYS_VAR}_FILE) with key id ${c.kid}`;
    case 'undecryptable':
      return `encrypted with key id ${c.kid} but does not decrypt for ${key} (tampered, copied from another item, or key id ${c.kid} holds a different key here)`;
    case 'malformed':
      return c.reason;
  }
}

export interface Opened {
  readonly classification: Classification;
  /** The plaintext when readable. */
  readonly data?: Uint8Array;
}

/** Classifies and, when possible, decrypts stored bytes for `key` with `keys`. */
export function openItem(keys: readonly SealKey[], key: Key, stored: Uint8Array): Opened {
  const ins = inspect(stored);
  if (ins.state === 'plain') return { classification: { state: 'plain' }, data: stored };
  if (ins.state === 'malformed') return { classification: { state: 'malformed', reason: ins.reason } };
  const kid = ins.envelope.kid;
  const k = keys.find((x) => x.kid === kid);
  if (!k) return { classification: { state: 'missing-key', kid } };
  const data = unseal(k, key, ins.envelope);
  if (!data) return { classification: { state: 'undecryptable', kid } };
  return { classification: { state: k === keys[0] ? 'primary' : 'secondary', kid }, data };
}

/** A store with encryption at rest, its inner store reachable for operator commands (`rewrap`, `backup`). */
export interface SealedStore extends Store {
  readonly inner: Store;
  readonly settings: EncryptionSettings;
}

const encoder = new TextEncoder();

/**
 * Wraps `inner` so that content is sealed on its way in and opened on its way out. Versions stay the
 * inner store's (versions of the ciphertext): a re-encryption of unchanged plaintext changes the version
 * and the engine, comparing plaintext hashes, sees it in sync. Listings and watch events never carry a
 * hash (the inner one would be the ciphertext's): the engine reads the item when it needs to know.
 *
 * An item this process cannot read (key id not configured, fails to authenticate, plaintext under
 * `require`) comes back as a placeholder whose content never validates, with `rejected` set to the
 * reason: it is never written to a mirror. A conditional write over that very version is refused
 * (ItemRejectedError): a process that cannot read an item never overwrites it.
 */
export function createSealedStore(inner: Store, settings: EncryptionSettings, log?: Logger): SealedStore {
  const { mode, keys } = settings;
  const primary = keys[0];
  if (mode !== 'off' && !primary) throw new Error('createSealedStore: encryption on without a key');
  /** key → version this process could not read (guards writes over it). */
  const unreadable = new Map<Key, string>();
  const warned = new Map<Key, string>();
  let announced = false;

  const open = (item: Item): Item => {
    const o = openItem(keys, item.key, item.data);
    const reason = rejectionReason(item.key, o.classification, mode, keys.length > 0);
    if (reason === null && o.data) {
      unreadable.delete(item.key);
      warned.delete(item.key);
      const hash = contentHash(item.key, o.data);
      return { key: item.key, version: item.version, data: o.data, ...(hash ? { hash } : {}) };
    }
    const why = reason ?? 'cannot be read';
    unreadable.set(item.key, item.version);
    if (warned.get(item.key) !== why) {
      warned.set(item.key, why);
      log?.warn({ key: item.key, reason: why }, `decrypt ${item.key}: ${why}; not written to the mirror, the local copy is kept`);
    }
    // Placeholder content: a JSON string (never a JSON object nor a YAML mapping), so the engine rejects it.
    return { key: item.key, version: item.version, data: encoder.encode(JSON.stringify(`credsync: ${why}`)), problem: why };
  };

  const stripHash = (e: Entry): Entry => ({ key: e.key, version: e.version });

  const store: SealedStore = {
    name: inner.name,
    get id() {
      return inner.id;
    },
    get capabilities(): StoreCapabilities {
      return inner.capabilities;
    },
    inner,
    settings,
    async init(o?: InitOptions): Promise<void> {
      await inner.init(o);
      if (!announced && (mode !== 'off' || keys.length)) {
        announced = true;
        const ids = keys.map((k) => k.kid);
        log?.info({ encryption: mode, keyIds: ids }, `encryption at rest ${mode}${primary && mode !== 'off' ? `: writes sealed under key id ${primary.kid}` : ''}${ids.length ? `; decrypting key ids ${ids.join(', ')}` : ''}`);
      }
    },
    async list(): Promise<Listing> {
      const l = await inner.list();
      return { entries: l.entries.map(stripHash), skipped: l.skipped };
    },
    async get(key: Key): Promise<Item | null> {
      validateKey(key);
      const it = await inner.get(key);
      return it ? open(it) : null;
    },
    async put(key: Key, data: Uint8Array, options?: PutOptions): Promise<Entry> {
      validateKey(key);
      const bad = unreadable.get(key);
      if (bad !== undefined && options?.ifVersion === bad) {
        throw new ItemRejectedError(inner.name, 'put', key, `not overwriting the stored item: ${warned.get(key) ?? 'this process cannot read it'}`);
      }
      const stored = mode === 'off' ? data : seal(primary!, key, data);
      const e = await inner.put(key, stored, options);
      unreadable.delete(key);
      return stripHash(e);
    },
    delete: (key: Key, options?: DeleteOptions) => inner.delete(key, options),
    close: () => inner.close(),
  };
  if (inner.getMany) {
    const getMany = inner.getMany.bind(inner);
    (store as { getMany?: Store['getMany'] }).getMany = async (ks: Key[]) => {
      for (const k of ks) validateKey(k);
      return (await getMany(ks)).map(open);
    };
  }
  if (inner.watch) {
    const watch = inner.watch.bind(inner);
    (store as { watch?: Store['watch'] }).watch = (onChange: (c: Change) => void, options: WatchOptions): Promise<StopWatching> =>
      watch((c) => onChange(c.version === undefined ? { key: c.key, op: c.op } : { key: c.key, op: c.op, version: c.version }), options);
  }
  return store;
}
