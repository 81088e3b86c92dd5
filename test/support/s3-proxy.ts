/**
 * A counting, fault-injecting HTTP proxy in front of a real S3 server, for tests and benchmarks
 * (no vitest import). Requests are forwarded byte for byte with their Host header unchanged, so SigV4
 * signatures stay valid. It records every request (method, object key, query, status), and can:
 *
 * - `breakFor(ms)`: drop every connection and refuse new requests for a while (an outage);
 * - `injectOnce(match, fault)`: for the next matching request, either drop the answer after the
 *   server has processed the request (the client never hears that its write landed, and the SDK
 *   retries), answer with a given status instead of forwarding, or run a callback after the server
 *   answered and before the client hears it (a foreign writer landing right after us).
 */
import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface ProxiedRequest {
  readonly method: string;
  /** The path without the query, decoded: `/bucket/prefix/auths/a.json`. */
  readonly path: string;
  readonly query: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly at: number;
  status?: number;
}

export type Fault =
  | { kind: 'drop-response' }
  | { kind: 'respond'; status: number; body?: string; headers?: Record<string, string> }
  | { kind: 'after'; run: () => Promise<void> };

export interface S3Proxy {
  readonly endpoint: string;
  readonly requests: ProxiedRequest[];
  /** Requests since the last reset that match. */
  count(match?: (r: ProxiedRequest) => boolean): number;
  reset(): void;
  breakFor(ms: number): void;
  injectOnce(match: (r: ProxiedRequest) => boolean, fault: Fault): void;
  close(): Promise<void>;
}

export async function startS3Proxy(target: string): Promise<S3Proxy> {
  const t = new URL(target);
  const agent = new Agent({ keepAlive: true, maxSockets: 128 });
  const sockets = new Set<Socket>();
  const requests: ProxiedRequest[] = [];
  let brokenUntil = 0;
  const faults: Array<{ match: (r: ProxiedRequest) => boolean; fault: Fault }> = [];

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    if (Date.now() < brokenUntil) {
      req.socket.destroy();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const rec: ProxiedRequest = { method: req.method ?? 'GET', path: decodeURIComponent(url.pathname), query: url.search, headers: { ...req.headers }, at: Date.now() };
    requests.push(rec);
    const i = faults.findIndex((f) => f.match(rec));
    const fault = i >= 0 ? faults.splice(i, 1)[0]!.fault : undefined;
    if (fault?.kind === 'respond') {
      req.resume();
      req.on('end', () => {
        rec.status = fault.status;
        const body = fault.body ?? '';
        res.writeHead(fault.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), ...fault.headers });
        res.end(body);
      });
      return;
    }
    const up = request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent },
      (upRes) => {
        rec.status = upRes.statusCode;
        if (fault?.kind === 'drop-response') {
          upRes.resume();
          upRes.on('end', () => req.socket.destroy());
          return;
        }
        const reply = (): void => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        };
        if (fault?.kind === 'after') {
          upRes.pause();
          fault.run().then(reply, reply);
        } else {
          reply();
        }
      },
    );
    up.on('error', () => req.socket.destroy());
    req.pipe(up);
  };

  const server: Server = createServer(handle);
  server.keepAliveTimeout = 30_000;
  server.on('connection', (s: Socket) => {
    if (Date.now() < brokenUntil) {
      s.destroy();
      return;
    }
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  let resetAt = 0;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    count: (match) => requests.filter((r) => r.at >= resetAt && (!match || match(r))).length,
    reset() {
      resetAt = Date.now();
      requests.length = 0;
    },
    breakFor(ms: number) {
      brokenUntil = Date.now() + ms;
      for (const s of sockets) s.destroy();
    },
    injectOnce(match, fault) {
      faults.push({ match, fault });
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

/** The key of an object request, e.g. `auths/a.json`, given the bucket and the store's prefix. */
export function objectKeyOfRequest(r: ProxiedRequest, bucket: string, prefix = ''): string | null {
  const head = `/${bucket}/${prefix ? `${prefix}/` : ''}`;
  return r.path.startsWith(head) ? r.path.slice(head.length) : null;
}
