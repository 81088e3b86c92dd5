import type { Logger } from 'pino';
import { keyKind, keyProblem, type Key } from '../core/keys.js';
import type { EngineObserver, Rejection } from './types.js';

/**
 * Items currently refused (invalid content, a bad id, a store that refuses one item), one entry per
 * key and side. Logged once per new reason — not at every pass — and counted for the metrics.
 */
export class Rejections {
  private readonly byId = new Map<string, Rejection>();

  constructor(
    private readonly log: Logger,
    private readonly observer?: EngineObserver,
  ) {}

  add(r: Rejection): void {
    const id = `${r.source}:${r.key}`;
    const prev = this.byId.get(id);
    this.byId.set(id, r);
    if (!prev || prev.reason !== r.reason) {
      const what = r.source === 'local' ? 'not pushed — fix the file; the store keeps the last good version' : 'not written locally — the mirror keeps its copy; fix the item in the store';
      this.log.warn({ key: r.key, source: r.source, reason: r.reason }, `validate ${r.key} (${r.source}): ${r.reason}; ${what}`);
      this.observer?.rejected(r.source, keyProblem(r.key) === null ? keyKind(r.key) : 'auth');
    }
    this.observer?.rejectedNow(this.byId.size);
  }

  clear(key: Key): void {
    const a = this.byId.delete(`local:${key}`);
    const b = this.byId.delete(`store:${key}`);
    if (a || b) this.observer?.rejectedNow(this.byId.size);
  }

  values(): Rejection[] {
    return [...this.byId.values()];
  }
}
