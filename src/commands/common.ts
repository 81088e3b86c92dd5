import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { Engine, type EngineObserver, type ReconcileReport } from '../engine/engine.js';
import { Mirror } from '../mirror/mirror.js';
import { openStore } from '../stores/registry.js';

/** Store + mirror + engine for a resolved config. Nothing runs until the caller reconciles or starts it. */
export async function buildEngine(config: Config, log: Logger, observer?: EngineObserver): Promise<Engine> {
  const store = await openStore(config.store, { log, debounceMs: config.debounceMs, reconcileIntervalMs: config.reconcileIntervalMs, workDir: join(config.localDir, '.credsync', config.store.kind) });
  const engine = new Engine({
    store,
    mirror: new Mirror(config.localDir),
    log,
    conflictPolicy: config.conflict,
    maxDelete: config.maxDelete,
    debounceMs: config.debounceMs,
    reconcileIntervalMs: config.reconcileIntervalMs,
    seedConfigPath: config.seedConfig,
    observer,
  });
  await engine.open();
  return engine;
}

/** Where things are, in one line, for humans starting a command. */
export function describeSetup(config: Config): string {
  return `store ${config.storeLabel} (${config.storeSource === 'default' ? 'built-in default' : `from ${config.storeSource}`}), mirror ${config.localDir}`;
}

export function summarize(r: ReconcileReport): string {
  const parts = [
    `pulled ${r.pulled.length}`,
    `pushed ${r.pushed.length}`,
    `deleted ${r.deletedLocal.length} locally and ${r.deletedStore.length} in the store`,
    `conflicts ${r.conflicts.length}`,
    `rejected ${r.rejected.length}`,
  ];
  const lines = [parts.join(', ')];
  for (const c of r.conflicts) lines.push(`  conflict ${c.key}: ${c.winner} copy won (${c.why}); other copy kept at ${c.keptAt}`);
  for (const x of r.rejected) lines.push(`  rejected ${x.key} (${x.source}): ${x.reason}`);
  for (const h of r.held) lines.push(`  held ${h.key}: ${h.reason}`);
  for (const e of r.errors) lines.push(`  error ${e.key}: ${e.error}`);
  return lines.join('\n');
}

/** Exit code of a one-shot pass: 1 when an item failed, else 0 (rejections are reported, not failures). */
export function exitCodeOf(r: ReconcileReport): number {
  return r.errors.length ? 1 : 0;
}
