import { keyKind, type Key } from '../core/keys.js';
import { parseAuth } from '../core/canonical.js';

export type ConflictPolicy = 'newest' | 'store' | 'local';
export const CONFLICT_POLICIES: readonly ConflictPolicy[] = ['newest', 'store', 'local'];

/** Expiry fields in the order CLIProxyAPI reads them. */
export const EXPIRY_FIELDS = ['expired', 'expire', 'expires_at', 'expiresAt', 'expiry', 'expires'] as const;

/** A timestamp field as epoch ms: RFC 3339 strings, or numbers in seconds or milliseconds. */
export function timeOf(value: unknown): number | null {
  if (typeof value === 'number' && Number.isFinite(value)) return value < 1e12 ? value * 1000 : value;
  if (typeof value === 'string' && value.trim() !== '') {
    const t = Date.parse(value);
    return Number.isNaN(t) ? null : t;
  }
  return null;
}

function fieldTime(obj: Record<string, unknown> | null, fields: readonly string[]): number | null {
  if (!obj) return null;
  for (const f of fields) {
    if (Object.hasOwn(obj, f)) {
      const t = timeOf(obj[f]);
      if (t !== null) return t;
    }
  }
  return null;
}

export interface ConflictVerdict {
  readonly winner: 'local' | 'store';
  readonly why: string;
}

/**
 * Which copy wins a conflict. `newest`: for a credential the more recently refreshed copy
 * (`last_refresh`, then the first expiry field); for the config, or without timestamps, the store.
 */
export function resolveConflict(key: Key, policy: ConflictPolicy, local: Uint8Array, store: Uint8Array): ConflictVerdict {
  if (policy === 'store') return { winner: 'store', why: 'policy store' };
  if (policy === 'local') return { winner: 'local', why: 'policy local' };
  if (keyKind(key) === 'config') return { winner: 'store', why: 'config: store wins' };
  const l = parseAuth(local);
  const s = parseAuth(store);
  const lo = l.ok ? l.value : null;
  const so = s.ok ? s.value : null;
  for (const [label, fields] of [
    ['last_refresh', ['last_refresh']],
    ['expiry', EXPIRY_FIELDS],
  ] as const) {
    const lt = fieldTime(lo, fields);
    const st = fieldTime(so, fields);
    if (lt !== null && st !== null && lt !== st) return { winner: lt > st ? 'local' : 'store', why: `newer ${label}` };
    if (lt !== null && st === null) return { winner: 'local', why: `only local has ${label}` };
    if (st !== null && lt === null) return { winner: 'store', why: `only store has ${label}` };
  }
  return { winner: 'store', why: 'no timestamps differ: store wins' };
}
