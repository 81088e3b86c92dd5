import type { Logger } from 'pino';
import { ConfigError } from '../core/errors.js';
import { CONFIG_KEY } from '../core/keys.js';
import type { Plan } from './plan.js';
import type { ReconcileReport, SyncMode } from './types.js';

/** `--max-delete`: a share of the items ("50%") or an absolute count ("10"). */
export type DeleteLimit = { readonly percent: number } | { readonly count: number };

export function parseDeleteLimit(raw: string): DeleteLimit {
  const s = raw.trim();
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(s);
  if (pct) {
    const percent = Number(pct[1]);
    if (percent > 100) throw new ConfigError(`--max-delete ${raw}: a percentage must be between 0% and 100%`);
    return { percent };
  }
  if (/^\d+$/.test(s)) return { count: Number(s) };
  throw new ConfigError(`--max-delete ${raw}: expected a percentage like 50% or a count like 10`);
}

export function formatDeleteLimit(l: DeleteLimit): string {
  return 'percent' in l ? `${l.percent}%` : String(l.count);
}

/** How many deletions of `total` items the limit allows. */
export function allowedDeletes(limit: DeleteLimit, total: number): number {
  return 'percent' in limit ? Math.floor((total * limit.percent) / 100) : limit.count;
}

/**
 * Counts deletions — carried out or refused — over a sliding window, so a burst that arrives as
 * several watcher batches or one notification per row is judged as one reconcile. A key counts once
 * per window however often it is refused, so a refusal cannot keep itself alive.
 */
export class DeleteWindow {
  private readonly seen = new Map<string, number>();
  private lastRefusalLog = -Infinity;
  constructor(readonly windowMs = 10_000) {}

  private expire(now: number): void {
    for (const [k, t] of this.seen) if (now - t > this.windowMs) this.seen.delete(k);
  }

  /** Distinct keys deleted or refused within the window, excluding `except` (the keys being judged now). */
  recent(now = Date.now(), except?: ReadonlySet<string>): number {
    this.expire(now);
    if (!except) return this.seen.size;
    let n = 0;
    for (const k of this.seen.keys()) if (!except.has(k)) n++;
    return n;
  }

  record(keys: readonly string[], now = Date.now()): void {
    for (const k of keys) if (!this.seen.has(k)) this.seen.set(k, now);
  }

  private lastRefused = '';

  /**
   * Whether to log this refusal: once for a set of keys (a refusal repeated by every small pass, or by
   * every re-check while a wiped store stays wiped, is logged once), again when the set changes or after
   * ten minutes as a reminder.
   */
  shouldLogRefusal(keys: Iterable<string>, now = Date.now()): boolean {
    const sig = [...keys].sort().join('\n');
    if (sig === this.lastRefused && now - this.lastRefusalLog < 600_000) return false;
    if (sig !== this.lastRefused && now - this.lastRefusalLog < this.windowMs && this.lastRefused !== '') {
      // The same burst arriving in pieces: one line for it.
      this.lastRefused = sig;
      return false;
    }
    this.lastRefused = sig;
    this.lastRefusalLog = now;
    return true;
  }
}

export interface GuardContext {
  readonly mode: SyncMode;
  readonly limit: DeleteLimit;
  /**
   * Items the store held before the deletions being judged (the delete guard's denominator): for a
   * full pass the listing plus the local deletions it found, for a targeted pass the last listing.
   */
  readonly storeCount: number;
  /** Keys in the base (what this instance had synced). */
  readonly baseCount: number;
  /** Counts the mirror's credential files; called only when deletions are planned. */
  countLocalAuths(): Promise<number>;
  readonly storeDeletes: DeleteWindow;
  readonly localDeletes: DeleteWindow;
  readonly mirrorRoot: string;
  readonly storeId: string;
  readonly log: Logger;
  /**
   * True while the mirror's directories were removed or re-created moments ago (a proxy rewriting its
   * store does `RemoveAll`, then writes every file again): local deletions are not decided until it
   * settles — files missing now may be back in a few milliseconds.
   */
  readonly settling?: boolean;
}

/**
 * Applies the run's direction and the deletion guards (invariant 5) to plans, in place: a refused
 * store deletion becomes a pull (the local file is restored), a refused local deletion is held, the
 * config is never deleted from the store. Every change is recorded in `report.held`.
 */
export async function applyGuards(plans: Plan[], g: GuardContext, report: ReconcileReport): Promise<void> {
  const hold = (p: Plan, reason: string, guard = true): void => {
    report.held.push({ key: p.key, action: p.action, reason, guard });
    p.note = reason;
    p.action = 'held';
  };
  const restore = (p: Plan, reason: string): void => {
    report.held.push({ key: p.key, action: p.action, reason, guard: true });
    p.note = reason;
    p.action = g.mode === 'push' ? 'held' : 'pull';
  };

  if (g.settling) {
    for (const p of plans.filter((x) => x.action === 'delete-store')) {
      hold(p, 'the mirror\'s directories were just removed or re-created: deletions are decided once it settles', false);
    }
  }

  const storeDel = plans.filter((p) => p.action === 'delete-store');
  if (storeDel.length) {
    const cfg = storeDel.find((p) => p.key === CONFIG_KEY);
    if (cfg) {
      restore(cfg, `${CONFIG_KEY} is missing locally; the config is never deleted from the store automatically — restoring it`);
      g.log.warn({ key: CONFIG_KEY }, `delete ${CONFIG_KEY}: refused (config deletion is never propagated); restoring the store copy`);
    }
    const auths = storeDel.filter((p) => p.key !== CONFIG_KEY);
    if (auths.length) {
      const localAuths = await g.countLocalAuths();
      const allowed = allowedDeletes(g.limit, g.storeCount);
      const keys = new Set(auths.map((p) => p.key));
      const wouldBe = auths.length + g.storeDeletes.recent(Date.now(), keys);
      let reason: string | null = null;
      if (localAuths === 0) {
        reason = `${g.mirrorRoot}/auths is empty or missing: not deleting ${auths.length} item(s) from the store; restoring them locally`;
      } else if (wouldBe > allowed) {
        reason = `deleting ${wouldBe} of ${g.storeCount} store items exceeds --max-delete ${formatDeleteLimit(g.limit)}: refused; restoring them locally. To delete them on purpose, run once: credsync sync --max-delete ${wouldBe}`;
      }
      if (reason) {
        if (g.storeDeletes.shouldLogRefusal(keys)) g.log.error({ count: auths.length, keys: auths.slice(0, 20).map((p) => p.key) }, `reconcile ${g.mirrorRoot}: ${reason}`);
        for (const p of auths) restore(p, reason);
        // Refused deletions count too: the rest of the same burst, arriving in a later watcher
        // batch after some files were restored, must not slip under the limit.
        g.storeDeletes.record([...keys]);
      }
    }
  }

  // The config is never deleted locally because it vanished from the store: a proxy without its config
  // cannot start. It is kept and written back to the store instead.
  const cfgGone = plans.find((p) => p.key === CONFIG_KEY && p.action === 'delete-local');
  if (cfgGone) {
    const reason = `${CONFIG_KEY} was deleted in the store; the config is never deleted locally — keeping it and restoring it to the store`;
    report.held.push({ key: cfgGone.key, action: cfgGone.action, reason, guard: false });
    cfgGone.note = reason;
    cfgGone.action = g.mode === 'pull' ? 'held' : 'push';
    g.log.warn({ key: CONFIG_KEY }, `delete ${CONFIG_KEY}: ${reason}`);
  }

  const localDel = plans.filter((p) => p.action === 'delete-local');
  if (localDel.length) {
    const keys = new Set(localDel.map((p) => p.key));
    const wouldBe = localDel.length + g.localDeletes.recent(Date.now(), keys);
    const allowed = allowedDeletes(g.limit, Math.max(g.baseCount, g.storeCount));
    if (wouldBe > allowed) {
      const reason = `the store lost ${wouldBe} of ${g.baseCount} items: more than --max-delete ${formatDeleteLimit(g.limit)}; keeping the local files (the store may have been wiped or replaced). If the deletions are intended, run once: credsync sync --max-delete ${wouldBe}`;
      if (g.localDeletes.shouldLogRefusal(keys)) g.log.error({ count: localDel.length, keys: localDel.slice(0, 20).map((p) => p.key) }, `reconcile ${g.storeId}: ${reason}`);
      for (const p of localDel) hold(p, reason);
      g.localDeletes.record([...keys]);
    }
  }

  for (const p of plans) {
    if (g.mode === 'pull' && (p.action === 'push' || p.action === 'delete-store')) hold(p, 'local change not pushed (pull only)', false);
    if (g.mode === 'push' && (p.action === 'pull' || p.action === 'delete-local')) hold(p, 'store change not pulled (push only)', false);
  }
}
