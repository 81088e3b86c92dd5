import { StoreError } from '../../core/errors.js';
import { AUTH_PREFIX, CONFIG_KEY, keyProblem } from '../../core/keys.js';
import type { Change, StopWatching, WatchOptions } from '../../core/store.js';
import { CONFIG_ID, STORE, type PgContext } from './context.js';
import { quoteIdent } from './schema.js';
import type { Sql } from './settings.js';

/**
 * LISTEN on the trigger's channel over a dedicated connection, re-subscribing with jittered backoff
 * when it drops; `onReady` after every (re)subscription, since notifications sent during a gap are lost.
 */

interface Payload {
  table?: unknown;
  op?: unknown;
  id?: unknown;
  version?: unknown;
}

/** A notification payload → a change; null when it concerns nothing we mirror (or is malformed). */
function changeOf(ctx: PgContext, payload: string, onFull: () => void): Change | null {
  const { log } = ctx;
  let p: Payload;
  try {
    p = JSON.parse(payload) as Payload;
  } catch {
    log?.warn('ignoring a malformed change notification');
    return null;
  }
  if (p === null || typeof p !== 'object') return null;
  if (p.op === 'truncate' || typeof p.id !== 'string') {
    // A payload without id (truncate, or an id too long to announce): reconcile everything.
    onFull();
    return null;
  }
  const op = p.op === 'delete' ? 'delete' : p.op === 'insert' || p.op === 'update' || p.op === 'put' ? 'put' : null;
  if (!op) return null;
  let key: string;
  if (p.table === 'config_store') {
    if (p.id !== CONFIG_ID) return null;
    key = CONFIG_KEY;
  } else if (p.table === 'auth_store') {
    key = AUTH_PREFIX + p.id;
    const problem = keyProblem(key);
    if (problem) {
      log?.warn({ id: JSON.stringify(p.id).slice(0, 300), reason: problem }, 'ignoring a change to an auth_store row whose id is not a valid key');
      return null;
    }
  } else {
    return null;
  }
  const version = op === 'put' && typeof p.version === 'string' ? p.version : undefined;
  return version ? { key, op, version } : { key, op };
}

/** Subscribes; resolves after the first attempt (a failed first attempt keeps retrying in the background). */
export async function listen(ctx: PgContext, ch: string, onChange: (change: Change) => void, wopts: WatchOptions): Promise<StopWatching> {
  const { log, redacted, connectTimeout } = ctx;
  const listenName = `${ctx.appName}:listen`;
  let stopped = false;
  let current: Sql | undefined;
  let listening = false;
  let readyAt = 0;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  let inflight: Promise<unknown> | undefined;

  const report = (err: Error): void => {
    log?.warn({ err: err.message }, 'postgres watch: subscription lost or failed; retrying');
    try {
      wopts.onError?.(err);
    } catch (e) {
      log?.error({ err: (e as Error).message }, 'postgres watch: onError threw');
    }
  };
  const ready = (): void => {
    try {
      wopts.onReady();
    } catch (e) {
      log?.error({ err: (e as Error).message }, 'postgres watch: onReady threw');
    }
  };
  const backoffMs = (): number => {
    const base = Math.min(15_000, 100 * 2 ** failures);
    failures = Math.min(failures + 1, 20);
    return Math.round(base * (0.5 + Math.random() / 2));
  };
  const schedule = (ms: number): void => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(() => void subscribe(), ms);
  };
  const dispose = (inst: Sql | undefined): void => {
    if (inst) void inst.end({ timeout: 0 }).catch(() => {});
  };

  // One fresh single-connection client per subscription attempt: postgres.js only reconnects a
  // pooled connection when a query is waiting, so a dropped LISTEN connection is replaced here
  // explicitly, and ending a client never races a reconnect timer inside postgres.js.
  const subscribe = async (): Promise<void> => {
    if (stopped) return;
    let inst: Sql;
    try {
      inst = ctx.makeSql({
        max: 1,
        idle_timeout: 0,
        max_lifetime: null,
        connection: { application_name: listenName },
        onnotify: (channelName: string, payload: string) => {
          if (stopped || inst !== current || channelName !== ch) return;
          const change = changeOf(ctx, payload, ready);
          if (change) {
            try {
              onChange(change);
            } catch (e) {
              log?.error({ err: (e as Error).message }, 'postgres watch: onChange threw');
            }
          }
        },
        onclose: () => {
          if (stopped || inst !== current || !listening) return;
          listening = false;
          current = undefined;
          dispose(inst);
          if (Date.now() - readyAt > 30_000) failures = 0;
          report(new StoreError(STORE, 'watch', undefined, `LISTEN connection to ${redacted} lost`));
          schedule(backoffMs());
        },
      });
    } catch (err) {
      report(ctx.fail('watch', undefined, err));
      return;
    }
    current = inst;
    const attempt = inst.unsafe(`LISTEN ${quoteIdent(ch)}`).then(
      () => null,
      (err: unknown) => err ?? new Error('LISTEN failed'),
    );
    inflight = attempt;
    const err = await attempt;
    inflight = undefined;
    if (stopped) return;
    if (err === null) {
      listening = true;
      readyAt = Date.now();
      log?.debug({ channel: ch }, 'postgres watch: listening');
      ready();
      return;
    }
    current = undefined;
    dispose(inst);
    report(ctx.fail('watch', undefined, err, `LISTEN on ${redacted}: `));
    schedule(backoffMs());
  };

  await subscribe();

  let stopping: Promise<void> | undefined;
  const stop: StopWatching = () =>
    (stopping ??= (async () => {
      stopped = true;
      clearTimeout(timer);
      // Let an attempt in flight settle first, so postgres.js has no reconnect timer pending.
      if (inflight) await Promise.race([inflight, new Promise((r) => setTimeout(r, (connectTimeout + 2) * 1000))]);
      const inst = current;
      current = undefined;
      if (!inst) return;
      if (listening) {
        listening = false;
        await Promise.race([
          inst.unsafe(`UNLISTEN ${quoteIdent(ch)}`).catch(() => {}),
          new Promise((r) => setTimeout(r, 2000)),
        ]);
      }
      await inst.end({ timeout: 1 }).catch(() => {});
    })());
  return stop;
}
