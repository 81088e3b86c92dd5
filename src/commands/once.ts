import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { SyncMode } from '../engine/engine.js';
import { buildEngine, describeSetup, exitCodeOf, summarize } from './common.js';
import { FileTree } from '../fs/tree.js';

export interface OnceOptions {
  readonly json?: boolean;
  /** `pull` only: do nothing when the mirror already holds a config or any credential. */
  readonly ifEmpty?: boolean;
}

/**
 * `pull`, `push`, `sync`: one reconcile in the given direction, then exit. Prints a summary on
 * stdout (JSON with `--json`). Returns the exit code; throws StoreError when the store is unreachable.
 */
export async function runOnce(mode: SyncMode, config: Config, log: Logger, o: OnceOptions, out: (s: string) => void): Promise<number> {
  if (o.ifEmpty) {
    // Judged before anything is created in the mirror.
    const { files } = await new FileTree(config.localDir).scan();
    if (files.length > 0) {
      const msg = `mirror ${config.localDir} already holds ${files.length} item(s); --if-empty: nothing pulled`;
      out(o.json ? JSON.stringify({ skipped: true, reason: msg }) : msg);
      return 0;
    }
  }
  const engine = await buildEngine(config, log);
  try {
    log.info({ mode }, `${mode}: ${describeSetup(config)}`);
    const report = await engine.reconcile(mode);
    out(o.json ? JSON.stringify(report, null, 2) : `${mode}: ${summarize(report)}`);
    return exitCodeOf(report);
  } finally {
    await engine.close();
  }
}
