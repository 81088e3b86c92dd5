import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { StatusReport } from '../engine/engine.js';
import { buildEngine } from './common.js';

export function formatStatus(s: StatusReport): string {
  const lines = [
    `store   ${s.store}`,
    `        compare-and-swap ${s.capabilities.cas === 'enforced' ? 'enforced by the store' : 'checked by credsync (the store does not enforce conditional writes: a narrow race remains)'}; ` +
      `changes ${s.capabilities.watch === 'push' ? 'announced by the store' : s.capabilities.watch === 'poll' ? `polled every ${s.capabilities.pollIntervalMs ?? '?'} ms` : 'seen at periodic reconciles'}`,
    `mirror  ${s.mirror}`,
    `last full sync ${s.lastSyncAt ?? 'never'}`,
    `${s.counts['in-sync']} in sync, ${s.counts['local-only']} local only, ${s.counts['store-only']} store only, ${s.counts.differs} differ, ${s.counts.rejected} rejected; ${s.pending.length} pending push(es)`,
  ];
  const width = Math.max(8, ...s.items.map((i) => i.key.length));
  for (const i of s.items) {
    lines.push(`  ${i.key.padEnd(width)}  ${i.state}${i.reason ? ` (${i.source}: ${i.reason})` : ''}`);
  }
  for (const p of s.pending) lines.push(`  pending ${p.key} since ${p.since} (${p.attempts} attempt(s)${p.lastError ? `: ${p.lastError}` : ''})`);
  return lines.join('\n');
}

/** `status`: compares mirror and store without changing either. */
export async function runStatus(config: Config, log: Logger, o: { json?: boolean }, out: (s: string) => void): Promise<number> {
  const engine = await buildEngine(config, log);
  try {
    const s = await engine.status();
    out(o.json ? JSON.stringify(s, null, 2) : formatStatus(s));
    return 0;
  } finally {
    await engine.close();
  }
}
