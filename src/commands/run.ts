import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { Metrics } from '../http/metrics.js';
import { startHttp } from '../http/server.js';
import { buildEngine, describeSetup } from './common.js';

/**
 * `run`: the daemon. Initial reconcile, then both sides watched until `shutdown` resolves; then
 * watchers stop, pending pushes are flushed (bounded by the shutdown timeout), connections close.
 * Returns the exit code (0 after a clean shutdown, even if the flush timed out: the queue persists).
 */
export async function runDaemon(config: Config, log: Logger, shutdown: Promise<string>): Promise<number> {
  const metrics = new Metrics();
  const engine = await buildEngine(config, log, metrics);
  let http: Awaited<ReturnType<typeof startHttp>> | null = null;
  if (config.http) {
    http = await startHttp({ ...config.http, engine, metrics, log });
  }
  log.info({ store: config.storeLabel, mirror: config.localDir, http: http?.address ?? 'off' }, `run: ${describeSetup(config)}; http ${http ? `http://${http.address}` : 'off'}`);
  if (config.isDefault) {
    process.stderr.write(`credsync: no store configured; using the built-in directory store\n  store:  ${config.store.kind === 'dir' ? config.store.path : ''}\n  mirror: ${config.localDir}\n`);
  }
  try {
    await engine.start();
  } catch (err) {
    // A configuration error at start-up (wrong keys, missing bucket …): exit 2 instead of looping.
    await engine.close().catch(() => {});
    await http?.close();
    throw err;
  }
  const signal = await shutdown;
  log.info({ signal }, `run: ${signal} received; flushing (at most ${config.shutdownTimeoutMs} ms)`);
  await engine.stop(config.shutdownTimeoutMs);
  await engine.close().catch(() => {});
  await http?.close();
  log.info('run: stopped');
  return 0;
}
