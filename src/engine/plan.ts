import { validateContent } from '../core/canonical.js';
import { keyProblem, type Key } from '../core/keys.js';
import type { Entry, Item } from '../core/store.js';
import type { FileIdentity, LocalState } from '../mirror/mirror.js';
import { decide, type Action, type Side } from './decide.js';
import type { BaseEntry } from './state.js';

/**
 * Planning, pure: snapshots of the mirror, the store and the base in, one plan per key out.
 * No I/O here — the reconciler gathers the snapshots and executes the plans.
 */

export interface Plan {
  key: Key;
  action: Action;
  local: Side;
  remote: Side;
  /** Store version observed when planning (CAS precondition); undefined when absent. */
  remoteVersion?: string;
  base?: BaseEntry;
  /**
   * Identity of the local file as judged when planning (null: absent; undefined: unknown). A write or
   * removal in the mirror replaces only that file (see `Mirror.write`).
   */
  localId?: FileIdentity | null;
  storeItem?: Item;
  /**
   * The local content the plan was judged on, read together with its hash (targeted passes): a push
   * sends it without reading the file again.
   */
  localData?: Uint8Array;
  /** Why a guard or the mode changed the action, for the report. */
  note?: string;
}

export const DEFAULT_MAX_ITEM_BYTES = 1024 * 1024;

export function formatBytes(n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`;
}

/** Whether a plan changes anything (progress counts these; in-sync, forgotten and held keys are instant). */
export function isWork(p: Pick<Plan, 'action'>): boolean {
  return p.action !== 'in-sync' && p.action !== 'forget' && p.action !== 'held';
}

/** What the store holds for a key: its listing entry, and the item when it was read. */
export interface RemoteView {
  readonly entry: Entry | null;
  /** `null`: read and found missing; `undefined`: not read. */
  readonly item?: Item | null;
}

export type BaseLookup = (key: Key) => BaseEntry | undefined;

export function localSide(s: LocalState): Side {
  if (!s.present) return { kind: 'absent' };
  return s.valid ? { kind: 'valid', hash: s.hash } : { kind: 'invalid', reason: s.reason };
}

/**
 * Judges a store item. A store sets `Item.hash` (the canonical content hash) only for valid content,
 * so the item is parsed and hashed here only when the store did not already do it.
 */
export function judgeItem(item: Item, maxBytes = DEFAULT_MAX_ITEM_BYTES): Side {
  if (item.problem) return { kind: 'invalid', reason: item.problem };
  if (item.data.byteLength > maxBytes) {
    return { kind: 'invalid', reason: `larger than ${formatBytes(maxBytes)} (${item.data.byteLength} bytes); raise CREDSYNC_MAX_ITEM_BYTES to accept it` };
  }
  if (item.hash) return { kind: 'valid', hash: item.hash };
  const v = validateContent(item.key, item.data);
  return v.ok ? { kind: 'valid', hash: v.hash } : { kind: 'invalid', reason: v.reason };
}

/**
 * The store side of a key. Its hash comes from the item when it was read, else from the listing,
 * else from the base when the version is the one last synced. Throws when none can tell: the caller
 * must have read the item (see `keysToFetch`).
 */
export function remoteSide(key: Key, r: RemoteView, base: BaseEntry | undefined, maxBytes?: number): Side {
  if (!r.entry || r.item === null) return { kind: 'absent' };
  if (r.item) return judgeItem(r.item, maxBytes);
  if (r.entry.hash) return { kind: 'valid', hash: r.entry.hash };
  if (base && base.version === r.entry.version) return { kind: 'valid', hash: base.hash };
  throw new Error(`plan ${key}: the store item must be read first (its hash is not known from the listing or the base)`);
}

export function planKey(key: Key, local: LocalState, r: RemoteView, base: BaseEntry | undefined, maxBytes?: number): Plan {
  const remote = remoteSide(key, r, base, maxBytes);
  const l = localSide(local);
  const remoteVersion = r.item?.version ?? r.entry?.version;
  return { key, action: decide(l, remote, base), local: l, remote, remoteVersion, base, localId: local.present ? local.id : null, storeItem: r.item ?? undefined };
}

/** Listed items whose hash neither the listing nor the base tells: they must be read before planning. */
export function keysToFetch(entries: readonly Entry[], base: BaseLookup): Key[] {
  return entries.filter((e) => !e.hash && base(e.key)?.version !== e.version).map((e) => e.key);
}

export interface FullSnapshot {
  readonly entries: readonly Entry[];
  readonly locals: ReadonlyMap<Key, LocalState>;
  readonly baseKeys: readonly Key[];
  readonly base: BaseLookup;
  /** The items `keysToFetch` named, as read (null: vanished meanwhile). */
  readonly items: ReadonlyMap<Key, Item | null>;
  /** `entries` by key, built once by a caller planning many windows (else built per call). */
  readonly entryMap?: ReadonlyMap<Key, Entry>;
  readonly maxItemBytes?: number;
}

const ABSENT: LocalState = { present: false };

/** Every key of the store listing, the mirror and the base, in key order; invalid keys left out. */
export function allKeys(s: Pick<FullSnapshot, 'entries' | 'locals' | 'baseKeys'>): Key[] {
  const keys = new Set<Key>([...s.entries.map((e) => e.key), ...s.locals.keys(), ...s.baseKeys]);
  return [...keys].filter((k) => !keyProblem(k)).sort();
}

/**
 * Plans every key of the store listing, the mirror and the base (or only `keys`, for a window of a
 * large pass), in key order. Invalid keys are left out.
 */
export function planAll(s: FullSnapshot, keys: readonly Key[] = allKeys(s)): Plan[] {
  const entries = s.entryMap ?? new Map(s.entries.map((e) => [e.key, e]));
  const plans: Plan[] = [];
  for (const key of keys) {
    if (keyProblem(key)) continue;
    const entry = entries.get(key) ?? null;
    plans.push(planKey(key, s.locals.get(key) ?? ABSENT, { entry, item: entry ? s.items.get(key) : undefined }, s.base(key), s.maxItemBytes));
  }
  return plans;
}

/**
 * Of the keys a targeted pass was asked about, those that need the store read: a key whose local file
 * equals the base is our own write (or a touch) and needs nothing — unless a store change was announced
 * for it. A key absent locally and never synced needs nothing either, unless announced.
 */
export function keysToRead(
  keys: readonly Key[],
  locals: ReadonlyMap<Key, LocalState>,
  base: BaseLookup,
  announced: (key: Key) => boolean,
  settled: (key: Key) => boolean = () => false,
): { read: Key[]; unchanged: Key[]; pushOnBase: Key[] } {
  const read: Key[] = [];
  const unchanged: Key[] = [];
  const pushOnBase: Key[] = [];
  for (const key of keys) {
    const state = locals.get(key) ?? ABSENT;
    const b = base(key);
    if (state.present && state.valid && b?.hash === state.hash && !announced(key)) unchanged.push(key);
    else if (state.present && state.valid && !announced(key) && settled(key)) pushOnBase.push(key);
    else if (state.present || b !== undefined || announced(key)) read.push(key);
  }
  return { read, unchanged, pushOnBase };
}

/**
 * A local edit nobody announced from the store is planned as a push on the version last synced (the
 * base's, or "must not exist" without one) without reading the store: the store's compare-and-swap
 * refuses it if the store moved meanwhile, and that conflict re-reads and re-plans.
 */
export function planPushOnBase(key: Key, local: LocalState, base: BaseEntry | undefined, data: Uint8Array | undefined): Plan {
  const entry = base ? { key, version: base.version, hash: base.hash } : null;
  return { ...planKey(key, local, { entry }, base), localData: data };
}
