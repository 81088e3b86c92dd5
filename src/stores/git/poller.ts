import type { Logger } from 'pino';
import { errorMessage } from '../../core/errors.js';
import type { Change, StopWatching } from '../../core/store.js';
import type { GitClone } from './clone.js';

export interface PollOptions {
  readonly intervalMs: number;
  readonly onChange: (change: Change) => void;
  readonly onReady: () => void;
  readonly onError?: (err: Error) => void;
  readonly log?: Logger;
  /** Turns any failure into the store's error classes (scrubbed). */
  readonly normalise: (err: unknown) => Error;
}

/**
 * Watches the remote branch: every `intervalMs` one cheap `git ls-remote <url> refs/heads/<branch>`;
 * when the tip moved, fetch (unless our own push already brought it) and diff the trees — only the keys
 * that changed are reported, with their blob ids as versions. A rewritten history (CLIProxyAPI's
 * force-pushed orphan commit) is diffed by tree like any other move: the same content is no change.
 * `onReady` fires after the first successful check and after every recovery; `onError` once per outage.
 */
export async function startPolling(clone: GitClone, o: PollOptions): Promise<StopWatching> {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  /** The tip whose content the watcher has reported; undefined = not (re)subscribed yet. */
  let seen: string | null | undefined;
  let failing = false;

  const check = async (): Promise<void> => {
    try {
      if (!clone.isReady) await clone.init();
      const remote = await clone.remoteTip();
      if (seen === undefined) {
        seen = remote;
        if (failing) o.log?.info(`watch git: ${clone.branch} reachable again`);
        failing = false;
        o.onReady();
        return;
      }
      if (remote === seen) return;
      // Our own pushes are already fetched; anything else (a missing branch included) needs a fetch.
      if (remote === null || clone.tip !== remote) await clone.refresh();
      const tip = clone.tip;
      if (tip === seen) return;
      const changes = tip ? await clone.read(() => clone.changesBetween(seen ?? null, tip)) : null;
      seen = tip;
      if (changes === null) {
        // The previous tip is not in this clone (made again after corruption): only a full pass can tell.
        o.onReady();
        return;
      }
      for (const c of changes) if (!stopped) o.onChange(c);
    } catch (err) {
      seen = undefined;
      if (!failing) {
        failing = true;
        const e = o.normalise(err);
        o.log?.debug({ err: errorMessage(e) }, `watch git: ${errorMessage(e)}`);
        o.onError?.(e);
      }
    }
  };

  const loop = async (): Promise<void> => {
    timer = null;
    if (stopped) return;
    running = check();
    await running;
    running = null;
    if (stopped) return;
    timer = setTimeout(() => void loop(), o.intervalMs);
    timer.unref();
  };

  await loop();
  return async () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    timer = null;
    await running;
  };
}
