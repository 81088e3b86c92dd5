import { EXPIRY_FIELDS, timeOf } from '../engine/conflict.js';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAuth } from '../core/canonical.js';
import { ConfigError, ConflictError, GuardError, StoreConfigError, errorMessage } from '../core/errors.js';
import { CONFIG_KEY, type Key } from '../core/keys.js';
import { forEachLimit } from '../core/limit.js';
import { removeFile } from '../fs/atomic.js';
import { allowedDeletes, formatDeleteLimit, parseDeleteLimit, type DeleteLimit } from '../engine/guard.js';
import type { OperatorDeps } from './migrate.js';
import { chunks, openSide, readBatch, since, specOfUrl, WRITE_PARALLEL } from './operator.js';
import { keyLines, plural, progress, type KeyNote } from './output.js';

export interface PruneOptions {
  /** Store URL; default: the environment's store. */
  readonly store?: string;
  /** The mirror whose `.credsync/conflicts/` `--conflicts` cleans. */
  readonly localDir?: string;
  readonly expired: boolean;
  readonly disabled: boolean;
  readonly conflicts: boolean;
  /** ms: how long past expiry (or how old a conflict copy) before it goes. */
  readonly olderThanMs: number;
  /** false = dry run (the default); true = `--yes`. */
  readonly yes: boolean;
  readonly json: boolean;
  readonly maxDelete?: DeleteLimit;
  /** Test seam: runs after the candidates are chosen and before anything is deleted. */
  readonly afterPlan?: () => Promise<void>;
}

export { EXPIRY_FIELDS } from '../engine/conflict.js';

export function expiryOf(obj: Record<string, unknown>): { field: string; at: number } | null {
  for (const f of EXPIRY_FIELDS) {
    if (Object.hasOwn(obj, f)) {
      const at = timeOf(obj[f]);
      if (at !== null) return { field: f, at };
    }
  }
  return null;
}

const canRefresh = (obj: Record<string, unknown>): boolean => typeof obj.refresh_token === 'string' && obj.refresh_token.trim() !== '';

export interface PruneCandidate {
  readonly key: Key;
  readonly version: string;
  readonly reason: string;
}

/** Why this credential should go, or null. */
export function pruneReason(obj: Record<string, unknown>, o: { expired: boolean; disabled: boolean; olderThanMs: number }, now: number): string | null {
  if (o.disabled && obj.disabled === true) return 'disabled';
  if (o.expired) {
    const exp = expiryOf(obj);
    if (exp && exp.at + o.olderThanMs < now && !canRefresh(obj)) return `expired ${new Date(exp.at).toISOString()} (${exp.field}) and no refresh_token`;
  }
  return null;
}

/**
 * `prune`: deletes credentials that are expired past `--older-than` and cannot be refreshed, or are
 * disabled (`--disabled`); each deletion conditional on the version listed, so a credential refreshed
 * meanwhile is kept. `--conflicts` removes old conflict copies from the mirror. Dry run unless `--yes`.
 */
export async function runPrune(o: PruneOptions, deps: OperatorDeps & { localDir?: () => string }): Promise<number> {
  const start = Date.now();
  const { io, log } = deps;
  const cwd = deps.cwd ?? process.cwd();
  if (!o.expired && !o.disabled && !o.conflicts) throw new ConfigError('prune: say what to prune: --expired, --disabled and/or --conflicts');
  const dryRun = !o.yes;
  const limit = o.maxDelete ?? parseDeleteLimit('50%');
  const now = Date.now();
  const candidates: PruneCandidate[] = [];
  const deleted: Key[] = [];
  const kept: KeyNote[] = [];
  const failed: KeyNote[] = [];
  const invalid: KeyNote[] = [];
  const conflictCopies: string[] = [];
  const conflictsRemoved: string[] = [];
  let storeLabel: string | undefined;
  let total = 0;
  let refused: string | null = null;

  if (o.expired || o.disabled) {
    const side = await openSide(o.store ? specOfUrl(o.store, cwd) : deps.envStore(), log);
    storeLabel = side.label;
    let bar = progress(io, 'prune', 0);
    try {
      const { entries } = await side.store.list();
      const auths = entries.filter((e) => e.key !== CONFIG_KEY).map((e) => e.key).sort();
      total = auths.length;
      bar = progress(io, 'prune', total);
      for (const group of chunks(auths)) {
        const got = await readBatch(side.store, group);
        for (const key of group) {
          const it = got.get(key);
          if (!it) continue;
          const parsed = parseAuth(it.data);
          if (!parsed.ok) {
            invalid.push({ key, reason: parsed.reason });
            continue;
          }
          const reason = pruneReason(parsed.value, o, now);
          if (reason) candidates.push({ key, version: it.version, reason });
        }
        bar.tick(group.length);
      }
      bar.stop();
      const allowed = allowedDeletes(limit, total);
      if (candidates.length > allowed) {
        refused = `prune ${side.label}: deleting ${candidates.length} of ${total} credentials exceeds --max-delete ${formatDeleteLimit(limit)}; refused, nothing deleted (raise --max-delete to delete on purpose)`;
      }
      await o.afterPlan?.();
      if (!dryRun && !refused) {
        await forEachLimit(candidates, WRITE_PARALLEL, async (c) => {
          try {
            await side.store.delete(c.key, { ifVersion: c.version });
            deleted.push(c.key);
          } catch (err) {
            if (err instanceof StoreConfigError) throw err;
            if (err instanceof ConflictError) kept.push({ key: c.key, reason: 'changed since it was listed (refreshed?); kept' });
            else failed.push({ key: c.key, reason: errorMessage(err) });
          }
        });
        deleted.sort();
      }
    } finally {
      bar.stop();
      await side.close().catch(() => {});
    }
  }

  let conflictsDir: string | undefined;
  if (o.conflicts) {
    const root = o.localDir ?? deps.localDir?.();
    if (!root) throw new ConfigError('prune --conflicts: no mirror (give --local-dir)');
    conflictsDir = join(root, '.credsync', 'conflicts');
    let names: string[] = [];
    try {
      names = await readdir(conflictsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const n of names.sort()) {
      const st = await lstat(join(conflictsDir, n)).catch(() => null);
      if (st?.isFile() && st.mtimeMs + o.olderThanMs < now) conflictCopies.push(n);
    }
    if (!dryRun) {
      for (const n of conflictCopies) if (await removeFile(join(conflictsDir, n))) conflictsRemoved.push(n);
    }
  }

  const code = refused ? 4 : failed.length ? 1 : 0;
  const result = {
    command: 'prune',
    dryRun,
    store: storeLabel,
    conflictsDir,
    durationMs: since(start),
    exitCode: code,
    refused,
    counts: { credentials: total, candidates: candidates.length, deleted: deleted.length, kept: kept.length, failed: failed.length, invalid: invalid.length, conflictCopies: conflictCopies.length, conflictsRemoved: conflictsRemoved.length },
    items: { candidates: candidates.map(({ key, reason }) => ({ key, reason })), deleted, kept, failed, invalid, conflictCopies, conflictsRemoved },
  };
  if (o.json) io.out(JSON.stringify(result));
  else {
    const lines: string[] = [];
    if (storeLabel) {
      lines.push(`prune ${storeLabel}${dryRun ? ' (dry run: add --yes to delete)' : ''}: ${plural(candidates.length, 'candidate')} of ${plural(total, 'credential')}${dryRun ? '' : `, deleted ${deleted.length}, kept ${kept.length}, failed ${failed.length}`}`);
      lines.push(...keyLines(dryRun || refused ? 'would delete' : 'candidate', candidates.map(({ key, reason }) => ({ key, reason }))));
      if (!dryRun) lines.push(...keyLines('deleted', deleted), ...keyLines('kept', kept), ...keyLines('failed', failed));
      lines.push(...keyLines('invalid', invalid));
    }
    if (conflictsDir) {
      lines.push(`prune ${conflictsDir}: ${`${conflictCopies.length} conflict cop${conflictCopies.length === 1 ? 'y' : 'ies'}`}${dryRun ? ' would be removed' : `, removed ${conflictsRemoved.length}`}`);
      lines.push(...keyLines(dryRun ? 'would remove' : 'removed', dryRun ? conflictCopies : conflictsRemoved));
    }
    io.out(lines.join('\n'));
  }
  if (refused) throw new GuardError(refused);
  return code;
}
