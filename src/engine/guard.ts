import { ConfigError } from '../core/errors.js';

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
 * several watcher batches is judged as one reconcile.
 */
export class DeleteWindow {
  private readonly times: number[] = [];
  constructor(private readonly windowMs = 10_000) {}

  recent(now = Date.now()): number {
    while (this.times.length && now - this.times[0]! > this.windowMs) this.times.shift();
    return this.times.length;
  }

  record(n: number, now = Date.now()): void {
    for (let i = 0; i < n; i++) this.times.push(now);
  }
}
