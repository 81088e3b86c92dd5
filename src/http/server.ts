import { secrets } from '../core/redact.js';
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import type { Engine } from '../engine/engine.js';
import type { Metrics } from './metrics.js';
import { errorMessage } from '../core/errors.js';

export interface HttpOptions {
  readonly host: string;
  readonly port: number;
  readonly engine: Engine;
  readonly metrics: Metrics;
  readonly log: Logger;
}

/**
 * `/healthz` (process alive), `/readyz` (503 until the initial reconcile is done and the store is up),
 * `/metrics` (Prometheus), `/status` (same JSON as `credsync status --json`). Read-only; GET and HEAD.
 */
export async function startHttp(o: HttpOptions): Promise<{ server: Server; address: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : secrets.scrub(body));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    const path = (req.url ?? '/').split('?')[0];
    void (async () => {
      switch (path) {
        case '/healthz':
          return send(200, 'ok\n');
        case '/readyz': {
          const body = JSON.stringify({ ready: o.engine.ready, storeUp: o.engine.storeUp });
          return send(o.engine.ready ? 200 : 503, body + '\n', 'application/json');
        }
        case '/metrics':
          return send(200, await o.metrics.registry.metrics(), o.metrics.registry.contentType);
        case '/status':
          try {
            return send(200, JSON.stringify(await o.engine.status(), null, 2) + '\n', 'application/json');
          } catch (err) {
            return send(503, JSON.stringify({ error: errorMessage(err) }) + '\n', 'application/json');
          }
        default:
          return send(404, 'not found\n');
      }
    })().catch((err: unknown) => {
      o.log.error({ err: errorMessage(err), path }, `http ${path}: ${errorMessage(err)}`);
      if (!res.headersSent) send(500, 'internal error\n');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const address = typeof addr === 'object' && addr ? `${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}` : `${o.host}:${o.port}`;
  return {
    server,
    address,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
