import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { ConfigError, StoreConfigError, StoreError, errorMessage } from '../core/errors.js';
import { keyProblem } from '../core/keys.js';
import type { StoreCapabilities } from '../core/store.js';
import type { StatusReport } from '../engine/engine.js';
import { StateFile } from '../engine/state.js';
import { Mirror } from '../mirror/mirror.js';
import { buildEngine } from './common.js';

/** What `status` prints: the engine's report without daemon-only fields, plus whether the store answered. */
export interface StatusOutput {
  store: string;
  mirror: string;
  /** false: the store could not be reached; items then come from the mirror and the state file only. */
  online: boolean;
  offlineReason?: string;
  /** What the store promises (known only online). */
  capabilities?: StoreCapabilities;
  lastSyncAt: string | null;
  counts: StatusReport['counts'];
  items: StatusReport['items'];
  pending: StatusReport['pending'];
  /** `status KEY`: everything known about one key. */
  key?: KeyDetail;
}

interface KeyDetail {
  key: string;
  state: string;
  localHash: string | null;
  localProblem?: string;
  storeVersion?: string | null;
  base: { hash: string; version: string } | null;
  pending?: StatusReport['pending'][number];
  why: string;
}

function capabilityLine(c: StoreCapabilities): string {
  return (
    `        compare-and-swap ${c.cas === 'enforced' ? 'enforced by the store' : 'checked by credsync (the store does not enforce conditional writes: a narrow race remains)'}; ` +
    `changes ${c.watch === 'push' ? 'announced by the store' : c.watch === 'poll' ? `polled every ${c.pollIntervalMs ?? '?'} ms` : 'seen at periodic reconciles'}`
  );
}

export function formatStatus(s: StatusOutput): string {
  const lines = [
    `store   ${s.store}${s.online ? '' : `  (OFFLINE: ${s.offlineReason}; showing what the mirror and the state file know)`}`,
    ...(s.capabilities ? [capabilityLine(s.capabilities)] : []),
    `mirror  ${s.mirror}`,
    `last full sync ${s.lastSyncAt ?? 'never'}`,
  ];
  if (s.key) {
    const k = s.key;
    lines.push(`key     ${k.key}`, `state   ${k.state}`, `local   ${k.localHash ?? (k.localProblem ? `invalid: ${k.localProblem}` : 'absent')}`);
    if (s.online) lines.push(`store   version ${k.storeVersion ?? 'absent'}`);
    lines.push(`base    ${k.base ? `hash ${k.base.hash}, version ${k.base.version}` : 'none (never synced here)'}`);
    if (k.pending) lines.push(`pending since ${k.pending.since} (${k.pending.attempts} attempt(s)${k.pending.lastError ? `: ${k.pending.lastError}` : ''})`);
    lines.push(`why     ${k.why}`);
    return lines.join('\n');
  }
  lines.push(
    s.online
      ? `${s.counts['in-sync']} in sync, ${s.counts['local-only']} local only, ${s.counts['store-only']} store only, ${s.counts.differs} differ, ${s.counts.rejected} rejected; ${s.pending.length} pending push(es)`
      : `${s.items.length} item(s) in the mirror, ${s.counts.rejected} rejected; ${s.pending.length} pending push(es)`,
  );
  const width = Math.max(8, ...s.items.map((i) => i.key.length));
  for (const i of s.items) lines.push(`  ${i.key.padEnd(width)}  ${i.state}${i.reason ? ` (${i.source}: ${i.reason})` : ''}`);
  for (const p of s.pending) lines.push(`  pending ${p.key} since ${p.since} (${p.attempts} attempt(s)${p.lastError ? `: ${p.lastError}` : ''})`);
  return lines.join('\n');
}

const WHY: Record<string, string> = {
  'in-sync': 'mirror and store hold the same content',
  'local-only': 'only the mirror has it: the next sync pushes it (or, if it was deleted in the store after a sync, removes it locally)',
  'store-only': 'only the store has it: the next sync pulls it (or, if it was deleted locally after a sync, deletes it in the store)',
  differs: 'both have it with different content: the side that changed since the base wins; if both changed, the conflict policy decides',
  rejected: 'its content is not valid on one side: it is not copied until fixed',
  unknown: 'not in the mirror, the store or the base',
  offline: 'the store is unreachable: only the local side is known',
};

/** The offline view: the mirror (read, not created) and the state file, no store. */
async function offlineView(config: Config, reason: string, stateStoreId: string): Promise<StatusOutput> {
  const mirror = new Mirror(config.localDir);
  const state = new StateFile(mirror.stateDir, stateStoreId);
  await state.load().catch(() => null);
  const view = state.view();
  const scan = await mirror.scan().catch(() => ({ items: new Map(), skipped: [] }));
  const items: StatusReport['items'] = [];
  const counts: StatusReport['counts'] = { 'in-sync': 0, 'local-only': 0, 'store-only': 0, differs: 0, rejected: 0 };
  for (const [key, st] of scan.items) {
    if (st.present && !st.valid) {
      counts.rejected++;
      items.push({ key, state: 'rejected', source: 'local', reason: st.reason });
    }
  }
  for (const s of scan.skipped) {
    counts.rejected++;
    items.push({ key: s.id, state: 'rejected', source: 'local', reason: s.reason });
  }
  return {
    store: config.storeLabel,
    mirror: config.localDir,
    online: false,
    offlineReason: reason,
    lastSyncAt: view.lastSyncAt ? new Date(view.lastSyncAt).toISOString() : null,
    counts,
    items,
    pending: view.pending.map(([key, e]) => ({ key, since: new Date(e.since).toISOString(), attempts: e.attempts, lastError: e.lastError })),
  };
}

/**
 * `status`: compares mirror and store without creating or changing anything (not the schema, not the
 * mirror's folders). With the store unreachable it shows what the state file knows and returns 1.
 * `exitCode`: 1 when anything differs, is rejected or pending.
 */
export async function runStatus(config: Config, log: Logger, o: { json?: boolean; exitCode?: boolean; key?: string }, out: (s: string) => void): Promise<number> {
  if (o.key !== undefined && keyProblem(o.key)) throw new ConfigError(`status ${JSON.stringify(o.key)}: not a key (${keyProblem(o.key)}); e.g. auths/claude-a@b.com.json or config/config.yaml`);
  const engine = await buildEngine(config, log, { readOnly: true });
  let s: StatusOutput;
  try {
    const r = await engine.status({ readOnly: true });
    s = { store: r.store, capabilities: r.capabilities, mirror: r.mirror, online: true, lastSyncAt: r.lastSyncAt, counts: r.counts, items: r.items, pending: r.pending };
  } catch (err) {
    if (!(err instanceof StoreError) || err instanceof StoreConfigError) throw err;
    s = await offlineView(config, errorMessage(err), engine.state.storeId);
  } finally {
    await engine.close();
  }
  if (o.key) s.key = await keyDetail(config, engine.state, s, o.key);
  out(o.json ? JSON.stringify(s, null, 2) : formatStatus(s));
  if (!s.online) return 1;
  if (o.exitCode) {
    const drift = s.pending.length > 0 || s.items.some((i) => i.state !== 'in-sync');
    return drift ? 1 : 0;
  }
  return 0;
}

async function keyDetail(config: Config, state: StateFile, s: StatusOutput, key: string): Promise<KeyDetail> {
  const { state: local } = await new Mirror(config.localDir).inspect(key, true);
  const item = s.items.find((i) => i.key === key);
  const base = state.base(key) ?? null;
  const pending = s.pending.find((p) => p.key === key);
  const stateName = !s.online ? 'offline' : (item?.state ?? 'unknown');
  return {
    key,
    state: stateName,
    localHash: local.present && local.valid ? local.hash : null,
    ...(local.present && !local.valid ? { localProblem: local.reason } : {}),
    ...(s.online ? { storeVersion: item?.storeVersion ?? null } : {}),
    base,
    ...(pending ? { pending } : {}),
    why: item?.reason ? `${WHY[stateName] ?? ''} (${item.source}: ${item.reason})` : (WHY[stateName] ?? ''),
  };
}
