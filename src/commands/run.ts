import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { ConfigError } from '../core/errors.js';
import { Metrics } from '../http/metrics.js';
import { startHttp } from '../http/server.js';
import { buildEngine, describeSetup } from './common.js';

/**
 * `run`: the daemon. Initial reconcile, then both sides watched until `shutdown` resolves; then
 * watchers stop, pending pushes are flushed (bounded by the shutdown timeout), connections close.
 * Returns the exit code (0 after a clean shutdown, even if the flush timed out: the queue persists).
 * A configuration error before the first reconcile (wrong password, missing database…) is thrown:
 * the CLI exits 2 with the fix.
 */
export async function runDaemon(config: Config, log: Logger, shutdown: Promise<string>): Promise<number> {
  const metrics = new Metrics();
  let fatal: (err: Error) => void = () => {};
  const fatalSeen = new Promise<Error>((resolve) => (fatal = resolve));
  const engine = await buildEngine(config, log, { observer: metrics, onFatal: (err) => fatal(err), daemon: true });
  let http: Awaited<ReturnType<typeof startHttp>> | null = null;
  if (config.http) {
    try {
      http = await startHttp({ ...config.http, engine, metrics, log });
    } catch (err) {
      await engine.close().catch(() => {});
      throw httpError(config, err);
    }
  }
  log.info({ store: config.storeLabel, mirror: config.localDir, http: http?.address ?? 'off' }, `run: ${describeSetup(config)}; http ${http ? `http://${http.address}` : 'off'}`);
  if (config.isDefault) {
    log.warn(
      { store: config.store.kind === 'dir' ? config.store.path : '', mirror: config.localDir },
      `run: no store configured; using the built-in directory store ${config.store.kind === 'dir' ? config.store.path : ''} (quick start). Set PGSTORE_DSN, OBJECTSTORE_ENDPOINT or GITSTORE_GIT_URL for a shared store`,
    );
  }
  await engine.start();
  const outcome = await Promise.race([shutdown.then((signal) => ({ signal })), fatalSeen.then((err) => ({ err }))]);
  if ('err' in outcome) {
    await engine.stop(0).catch(() => {});
    await engine.close().catch(() => {});
    await http?.close();
    throw outcome.err;
  }
  log.info({ signal: outcome.signal }, `run: ${outcome.signal} received; flushing (at most ${config.shutdownTimeoutMs} ms)`);
  await engine.stop(config.shutdownTimeoutMs);
  await engine.close().catch(() => {});
  await http?.close();
  log.info('run: stopped');
  return 0;
}

function httpError(config: Config, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const addr = config.http ? `${config.http.host}:${config.http.port}` : '';
  if (code === 'EADDRINUSE') {
    return new ConfigError(`${config.httpSource === 'the default' ? 'the default HTTP address' : config.httpSource}=${addr} is in use by another process; choose a free one with CREDSYNC_HTTP_ADDR (or --http-addr), or turn it off with CREDSYNC_HTTP_ADDR=off`, { cause: err });
  }
  if (code === 'EACCES') return new ConfigError(`${config.httpSource}=${addr}: not allowed to listen there (ports below 1024 need privileges); choose another port with CREDSYNC_HTTP_ADDR`, { cause: err });
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return new ConfigError(`${config.httpSource}=${addr}: no such address on this host; use 127.0.0.1:PORT or :PORT with CREDSYNC_HTTP_ADDR`, { cause: err });
  return err;
}
