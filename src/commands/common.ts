import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { ConfigError } from '../core/errors.js';
import { Engine, type EngineObserver, type ReconcileReport } from '../engine/engine.js';
import { Mirror } from '../mirror/mirror.js';
import { openStore } from '../stores/registry.js';

export interface BuildOptions {
  readonly observer?: EngineObserver;
  /** `status` and dry runs: nothing is created in the mirror or the store. */
  readonly readOnly?: boolean;
  /** `run`: called when a configuration error stops the daemon before its first reconcile. */
  readonly onFatal?: (err: Error) => void;
  /** `run`: the mirror keeps a stat cache for its rescans (one-shot commands scan once and keep none). */
  readonly daemon?: boolean;
}

/**
 * Store + mirror + engine for a resolved config. Nothing runs until the caller reconciles or starts it.
 * A mirror that cannot be created or written is a ConfigError naming the setting that chose it.
 */
export async function buildEngine(config: Config, log: Logger, o: BuildOptions = {}): Promise<Engine> {
  // A read-only run (status, --dry-run) must not create the store's working files in the mirror (the Git
  // store's clone): it gets a private temporary directory instead, removed when the store closes.
  const scratch = o.readOnly ? await mkdtemp(join(tmpdir(), 'credsync-ro-')) : undefined;
  const opened = await openStore(config.store, { log, debounceMs: config.debounceMs, reconcileIntervalMs: config.reconcileIntervalMs, workDir: scratch ?? join(config.localDir, '.credsync', config.store.kind) }, config.encryption);
  const store: typeof opened = scratch
    ? Object.create(opened, {
        close: {
          value: async () => {
            await opened.close();
            await rm(scratch, { recursive: true, force: true });
          },
        },
      })
    : opened;
  const engine = new Engine({
    store,
    mirror: new Mirror(config.localDir, { maxItemBytes: config.maxItemBytes, statCache: o.daemon ?? false }),
    log,
    conflictPolicy: config.conflict,
    maxDelete: config.maxDelete,
    debounceMs: config.debounceMs,
    reconcileIntervalMs: config.reconcileIntervalMs,
    seedConfigPath: config.seedConfig,
    maxItemBytes: config.maxItemBytes,
    observer: o.observer,
    onFatal: o.onFatal,
  });
  try {
    await engine.open({ readOnly: o.readOnly });
  } catch (err) {
    await store.close().catch(() => {});
    throw mirrorError(config, err);
  }
  return engine;
}

/** A file-system failure on the mirror, said as a configuration error: which directory, chosen by which setting, and the fix. */
export function mirrorError(config: Config, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException;
  if (!e || typeof e.code !== 'string' || !['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST'].includes(e.code)) return err;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 'this user';
  const what =
    e.code === 'EROFS' ? 'is on a read-only file system' : e.code === 'ENOTDIR' || e.code === 'EEXIST' ? 'has a file where a directory should be' : `is not writable by uid ${uid}`;
  return new ConfigError(
    `mirror ${config.localDir} (${config.localDirSource}) ${what} (${e.code}${e.path ? ` on ${e.path}` : ''}); give the proxy's volume to uid ${uid} with mode 0700, or choose another directory with CREDSYNC_LOCAL_DIR`,
    { cause: err },
  );
}

/** Where things are, in one line, for humans starting a command. */
export function describeSetup(config: Config): string {
  return `store ${config.storeLabel} (${config.storeSource === 'default' ? 'built-in default' : `from ${config.storeSource}`}), mirror ${config.localDir}`;
}

function firstKeys(keys: readonly string[], n = 5): string {
  return keys.slice(0, n).join(', ') + (keys.length > n ? `, … (${keys.length - n} more)` : '');
}

/** A human summary: counts, then one line per conflict, per guard refusal (grouped) and per rejected or failed item. */
export function summarize(r: ReconcileReport): string {
  const verb = r.dryRun ? 'would be ' : '';
  const parts = [
    `${verb}pulled ${r.pulled.length}`,
    `${verb}pushed ${r.pushed.length}`,
    `${verb}deleted ${r.deletedLocal.length} locally and ${r.deletedStore.length} in the store`,
    `conflicts ${r.conflicts.length + r.planned.filter((p) => p.action === 'conflict').length}`,
    `rejected ${r.rejected.length}`,
  ];
  const lines = [parts.join(', ')];
  if (r.dryRun) for (const p of r.planned) lines.push(`  would ${p.action} ${p.key}`);
  for (const c of r.conflicts) lines.push(`  conflict ${c.key}: ${c.winner} copy won (${c.why}); other copy kept at ${c.keptAt}`);
  const byReason = new Map<string, string[]>();
  for (const h of r.held) byReason.set(h.reason, [...(byReason.get(h.reason) ?? []), h.key]);
  for (const [reason, keys] of byReason) lines.push(`  held ${keys.length}: ${reason} [${firstKeys(keys)}]`);
  for (const x of r.rejected) lines.push(`  rejected ${x.key} (${x.source}): ${x.reason}`);
  for (const e of r.errors) lines.push(`  error ${e.key}: ${e.error}`);
  return lines.join('\n');
}

/**
 * Exit code of a one-shot pass: 4 when a guard refused something, 1 when an item failed or was
 * rejected, else 0. (Holds caused by the direction — a pull not pushing — are not failures.)
 */
export function exitCodeOf(r: ReconcileReport): number {
  if (r.held.some((h) => h.guard)) return 4;
  if (r.errors.length || r.rejected.length) return 1;
  return 0;
}
