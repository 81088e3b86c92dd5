import type { StoreCapabilities } from '../core/store.js';
import type { Plan } from './plan.js';
import type { StateView } from './state.js';
import type { ItemState, Rejection, StatusReport } from './types.js';

/** Builds the `status` view from plans (pure): per key its state, plus rejections and the pending queue. */
export function buildStatus(
  plans: readonly Plan[],
  rejections: readonly Rejection[],
  meta: { store: string; capabilities: StoreCapabilities; mirror: string; ready: boolean; storeUp: boolean; state: StateView },
): StatusReport {
  const counts: Record<ItemState, number> = { 'in-sync': 0, 'local-only': 0, 'store-only': 0, differs: 0, rejected: 0 };
  const items: StatusReport['items'] = [];
  // A key the store refused (or that failed otherwise) is rejected even when both sides look valid.
  const refused = new Map(rejections.map((r) => [r.key, r]));
  for (const p of plans) {
    let state: ItemState;
    let extra: { source?: 'local' | 'store'; reason?: string } = {};
    const r = refused.get(p.key);
    if (r && p.local.kind !== 'invalid' && p.remote.kind !== 'invalid' && !(p.local.kind === 'valid' && p.remote.kind === 'valid' && p.local.hash === p.remote.hash)) {
      state = 'rejected';
      extra = { source: r.source, reason: r.reason };
    } else if (p.local.kind === 'invalid') {
      state = 'rejected';
      extra = { source: 'local', reason: p.local.reason };
    } else if (p.remote.kind === 'invalid') {
      state = 'rejected';
      extra = { source: 'store', reason: p.remote.reason };
    } else if (p.local.kind === 'valid' && p.remote.kind === 'valid') state = p.local.hash === p.remote.hash ? 'in-sync' : 'differs';
    else if (p.local.kind === 'valid') state = 'local-only';
    else if (p.remote.kind === 'valid') state = 'store-only';
    else continue;
    counts[state]++;
    items.push({
      key: p.key,
      state,
      ...extra,
      ...(p.local.kind === 'valid' ? { localHash: p.local.hash } : {}),
      ...(p.remote.kind !== 'absent' && p.remoteVersion ? { storeVersion: p.remoteVersion } : {}),
    });
  }
  for (const r of rejections) {
    if (items.some((i) => i.key === r.key)) continue;
    counts.rejected++;
    items.push({ key: r.key, state: 'rejected', source: r.source, reason: r.reason });
  }
  const s = meta.state;
  return {
    store: meta.store,
    capabilities: meta.capabilities,
    mirror: meta.mirror,
    ready: meta.ready,
    storeUp: meta.storeUp,
    lastSyncAt: s.lastSyncAt ? new Date(s.lastSyncAt).toISOString() : null,
    counts,
    items,
    pending: s.pending.map(([key, e]) => ({ key, since: new Date(e.since).toISOString(), attempts: e.attempts, lastError: e.lastError })),
  };
}
