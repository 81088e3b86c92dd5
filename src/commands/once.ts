import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { ReconcileReport, SyncMode } from '../engine/engine.js';
import { buildEngine, describeSetup, exitCodeOf, summarize } from './common.js';
import { FileTree } from '../fs/tree.js';
import { progressBar } from './progress.js';

export interface OnceOptions {
  readonly json?: boolean;
  /** `pull` only: do nothing when the mirror already holds a config or any credential. */
  readonly ifEmpty?: boolean;
  /** `pull` only: an empty store into an empty mirror is success (otherwise exit 4). */
  readonly allowEmpty?: boolean;
  /** Plan and print, change nothing. */
  readonly dryRun?: boolean;
}

/** The `--json` result of a one-shot pass: mode, store, mirror, duration, counts for every outcome, then the details. */
export function jsonReport(mode: SyncMode, config: Config, r: ReconcileReport, ms: number, code: number): Record<string, unknown> {
  return {
    mode,
    store: config.storeLabel,
    mirror: config.localDir,
    durationMs: ms,
    exitCode: code,
    counts: {
      pulled: r.pulled.length,
      pushed: r.pushed.length,
      deletedLocal: r.deletedLocal.length,
      deletedStore: r.deletedStore.length,
      conflicts: r.conflicts.length,
      rejected: r.rejected.length,
      held: r.held.length,
      refusedByGuard: r.held.filter((h) => h.guard).length,
      errors: r.errors.length,
    },
    ...r,
  };
}

/**
 * `pull`, `push`, `sync`: one reconcile in the given direction, then exit. Prints a summary on
 * stdout (JSON with `--json`). Returns the exit code; throws StoreError when the store is unreachable.
 */
export async function runOnce(mode: SyncMode, config: Config, log: Logger, o: OnceOptions, out: (s: string) => void): Promise<number> {
  if (o.ifEmpty) {
    // Judged before anything is created in the mirror.
    const scan = await new FileTree(config.localDir).scan({ unreadable: true });
    // Unusable or unreadable entries count too: the mirror is not empty, whatever state it is in.
    const held = scan.files.length + scan.rejected.length + scan.unreadable.length;
    if (held > 0) {
      const msg = `mirror ${config.localDir} already holds ${held} item(s); --if-empty: nothing pulled`;
      out(o.json ? JSON.stringify({ mode, skipped: true, reason: msg, exitCode: 0 }) : msg);
      return 0;
    }
  }
  const started = Date.now();
  const engine = await buildEngine(config, log, { readOnly: o.dryRun });
  try {
    log.info({ mode, dryRun: Boolean(o.dryRun) }, `${mode}${o.dryRun ? ' (dry run)' : ''}: ${describeSetup(config)}`);
    const bar = progressBar(mode);
    let report: ReconcileReport;
    try {
      report = await engine.reconcile(mode, { dryRun: o.dryRun, progress: bar.update });
    } finally {
      bar.stop();
    }
    let code = exitCodeOf(report);
    let note = '';
    if (mode === 'pull' && !o.allowEmpty && !o.dryRun && code === 0) {
      const { files } = await new FileTree(config.localDir).scan();
      if (files.length === 0) {
        code = 4;
        note = `pull: the store ${config.storeLabel} is empty and so is the mirror ${config.localDir}: refusing to report success (a proxy started now would have no config and no credentials). Check the store settings; pass --allow-empty if an empty store is expected`;
      }
    }
    const ms = Date.now() - started;
    if (o.json) out(JSON.stringify({ ...jsonReport(mode, config, report, ms, code), ...(note ? { refused: note } : {}) }, null, 2));
    else out(`${mode}${o.dryRun ? ' (dry run, nothing changed)' : ''}: ${summarize(report)} in ${ms} ms${note ? `\n${note}` : ''}`);
    if (note) log.error(note);
    return code;
  } finally {
    await engine.close();
  }
}
