import type { BaseEntry } from './state.js';

/** One side of a key as observed now. */
export type Side =
  | { readonly kind: 'absent' }
  | { readonly kind: 'valid'; readonly hash: string }
  | { readonly kind: 'invalid'; readonly reason: string };

export type Action =
  | 'in-sync' // L = R: base := R
  | 'forget' // both gone: drop base
  | 'pull' // store → mirror
  | 'push' // mirror → store (CAS on the version seen)
  | 'delete-store' // deleted locally after a sync
  | 'delete-local' // deleted in the store after a sync
  | 'conflict' // both changed since the base: policy decides
  | 'reject-local' // local content invalid: never pushed
  | 'reject-store' // store content invalid: never written locally
  | 'held'; // not decided by the table: a guard or the run's direction withheld the action

/**
 * The three-way table of the design. Pure. An edit always beats a delete; without a base nothing
 * is ever deleted; invalid content never travels.
 */
export function decide(local: Side, remote: Side, base: BaseEntry | undefined): Action {
  if (local.kind === 'invalid') return 'reject-local';
  if (remote.kind === 'invalid') {
    // A valid local edit may repair the store; otherwise leave both sides alone.
    return local.kind === 'valid' && local.hash !== base?.hash ? 'push' : 'reject-store';
  }
  if (local.kind === 'absent' && remote.kind === 'absent') return 'forget';
  if (local.kind === 'valid' && remote.kind === 'valid') {
    if (local.hash === remote.hash) return 'in-sync';
    if (!base) return 'conflict';
    if (base.hash === local.hash) return 'pull';
    if (base.hash === remote.hash) return 'push';
    return 'conflict';
  }
  if (local.kind === 'absent' && remote.kind === 'valid') {
    if (!base) return 'pull';
    return base.hash === remote.hash ? 'delete-store' : 'pull';
  }
  // local valid, remote absent
  if (!base) return 'push';
  return base.hash === (local as { hash: string }).hash ? 'delete-local' : 'push';
}
