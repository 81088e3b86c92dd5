/**
 * Misconfigurations an operator makes, one row each, through the real CLI: the exit code, the message
 * (naming the setting and the fix), and that no secret from the configuration is printed anywhere.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort, processGroup, type CliResult } from '../support/daemon.js';
import { withPassword } from '../support/pg-server.js';
import { tempDir } from '../support/tmp.js';

const pgUrl = inject('pgUrl');
const CANARY = 'S3cretCanaryPw';

interface Row {
  name: string;
  args: string[];
  env?: (t: Ctx) => Record<string, string>;
  /** Files written first, relative to the case directory (e.g. a .env). */
  files?: Record<string, string>;
  code: number;
  message: RegExp;
  needsPg?: boolean;
}

interface Ctx {
  dir: string;
  busyPort: number;
  resetPort: number;
}

const rows: Row[] = [
  {
    name: 'scheme typo postgress:// (password in it)',
    args: ['pull'],
    env: () => ({ PGSTORE_DSN: `postgress://postgres:${CANARY}@127.0.0.1:55433/credsync` }),
    code: 2,
    message: /PGSTORE_DSN postgress:\/\/…@127\.0\.0\.1:55433 \(unparseable; rest hidden\): .*check PGSTORE_DSN/,
  },
  {
    name: 'single slash postgres:/',
    args: ['sync'],
    env: () => ({ PGSTORE_DSN: `postgres:/postgres:${CANARY}@db.internal/credsync` }),
    code: 2,
    message: /PGSTORE_DSN .*unparseable; rest hidden/,
  },
  {
    name: 'a "?" inside the password',
    args: ['pull'],
    env: () => ({ PGSTORE_DSN: `postgres://credsync:pa?ss${CANARY}@127.0.0.1:5432/credsync` }),
    code: 2,
    message: /invalid port .*percent-encoded/,
  },
  {
    name: '.env with an unterminated quote',
    args: ['pull'],
    files: { '.env': `PGSTORE_DSN="postgres://u:${CANARY}@127.0.0.1:1/x\n` },
    code: 2,
    message: /PGSTORE_DSN .*rest hidden/,
  },
  {
    name: 'key=value DSN, server down: the start-up line and the error hide the password',
    args: ['sync'],
    env: (t) => ({ PGSTORE_DSN: `host=127.0.0.1 port=${t.busyPort + 1} user=u password=${CANARY} dbname=x connect_timeout=2`, CREDSYNC_LOG_LEVEL: 'info' }),
    code: 1,
    message: /connection refused by 127\.0\.0\.1:\d+: is PostgreSQL running there \(PGSTORE_DSN\)\?/,
  },
  {
    name: 'not a PostgreSQL server on that port',
    args: ['pull'],
    env: (t) => ({ PGSTORE_DSN: `postgres://u:${CANARY}@127.0.0.1:${t.resetPort}/x?connect_timeout=3` }),
    code: 1,
    message: /127\.0\.0\.1:\d+.*(PostgreSQL server|PGSTORE_DSN)/,
  },
  {
    name: 'misspelled PGSTORE_DNS',
    args: ['pull'],
    env: () => ({ PGSTORE_DNS: `postgres://u:${CANARY}@127.0.0.1:1/x` }),
    code: 2,
    message: /no store configured.*PGSTORE_DNS \(in the environment\) is not a credsync setting; did you mean PGSTORE_DSN\?/,
  },
  {
    name: 'wrong password',
    args: ['pull'],
    env: () => ({ PGSTORE_DSN: withPassword(pgUrl, CANARY) }),
    code: 2,
    message: /password was refused: check the password in PGSTORE_DSN/,
    needsPg: true,
  },
  {
    name: 'wrong password under run: exits 2 at start-up instead of retrying forever',
    args: ['run'],
    env: () => ({ PGSTORE_DSN: withPassword(pgUrl, CANARY), CREDSYNC_HTTP_ADDR: 'off' }),
    code: 2,
    message: /password was refused/,
    needsPg: true,
  },
  {
    name: 'wrong PGPASSWORD beside a DSN without a password',
    args: ['pull'],
    env: () => {
      const u = new URL(pgUrl);
      u.password = '';
      return { PGSTORE_DSN: u.toString(), PGPASSWORD: CANARY };
    },
    code: 2,
    message: /password was refused: check the password in PGSTORE_DSN \(or PGPASSWORD\)/,
    needsPg: true,
  },
  {
    name: 'missing database',
    args: ['sync'],
    env: () => {
      const u = new URL(pgUrl);
      u.pathname = '/no_such_database_here';
      return { PGSTORE_DSN: u.toString() };
    },
    code: 2,
    message: /database does not exist: create it, or fix the database name in PGSTORE_DSN/,
    needsPg: true,
  },
  {
    name: 'HTTP address in use',
    args: ['run'],
    env: (t) => ({ CREDSYNC_STORE: pathToFileURL(join(t.dir, 'store')).href, CREDSYNC_LOCAL_DIR: join(t.dir, 'mirror'), CREDSYNC_HTTP_ADDR: `127.0.0.1:${t.busyPort}` }),
    code: 2,
    message: /CREDSYNC_HTTP_ADDR=127\.0\.0\.1:\d+ is in use by another process; choose a free one/,
  },
  {
    name: 'mirror where a file is',
    args: ['sync'],
    files: { blocker: 'a file, not a directory' },
    env: (t) => ({ CREDSYNC_STORE: pathToFileURL(join(t.dir, 'store')).href, CREDSYNC_LOCAL_DIR: join(t.dir, 'blocker', 'mirror') }),
    code: 2,
    message: /mirror .*blocker\/mirror \(CREDSYNC_LOCAL_DIR\) has a file where a directory should be/,
  },
  {
    name: '--seed-config that does not exist',
    args: ['sync', '--seed-config', '/nonexistent/config.yaml'],
    env: (t) => ({ CREDSYNC_STORE: pathToFileURL(join(t.dir, 'store')).href, CREDSYNC_LOCAL_DIR: join(t.dir, 'mirror') }),
    code: 2,
    message: /--seed-config \/nonexistent\/config\.yaml: .*does not exist/,
  },
  {
    name: 'CREDSYNC_MAX_ITEM_BYTES not a size',
    args: ['sync'],
    env: (t) => ({ CREDSYNC_STORE: pathToFileURL(join(t.dir, 'store')).href, CREDSYNC_MAX_ITEM_BYTES: 'huge' }),
    code: 2,
    message: /CREDSYNC_MAX_ITEM_BYTES huge: expected a size/,
  },
  {
    name: 'OBJECTSTORE_ENDPOINT without a bucket',
    args: ['pull'],
    env: () => ({ OBJECTSTORE_ENDPOINT: 'http://127.0.0.1:9', OBJECTSTORE_SECRET_KEY: CANARY, OBJECTSTORE_ACCESS_KEY: 'AKIDEXAMPLE' }),
    code: 2,
    message: /OBJECTSTORE_BUCKET must be set/,
  },
];

describe('misconfigurations: exit code, message, no secret', () => {
  const g = processGroup('all');
  let tmp: { path: string; remove(): Promise<void> };
  let busy: Server;
  const sockets = new Set<Socket>();
  let reset: Server;
  const ctx = { dir: '', busyPort: 0, resetPort: 0 };
  let n = 0;

  beforeAll(async () => {
    tmp = await tempDir('credsync-misconfig-');
    ctx.busyPort = await freePort();
    busy = createServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => busy.listen(ctx.busyPort, '127.0.0.1', r));
    // Accepts and answers garbage, like a service that is not PostgreSQL.
    reset = createServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => {});
      sock.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((r) => reset.listen(0, '127.0.0.1', r));
    ctx.resetPort = (reset.address() as { port: number }).port;
  });
  afterAll(async () => {
    for (const sock of sockets) sock.destroy();
    await new Promise((r) => busy.close(r));
    await new Promise((r) => reset.close(r));
    await tmp.remove();
  });

  it.each(rows)('$name → exit $code', async (row) => {
    if (row.needsPg && !pgUrl) return;
    const dir = join(tmp.path, `case-${++n}`);
    await mkdir(dir, { recursive: true });
    for (const [f, data] of Object.entries(row.files ?? {})) await writeFile(join(dir, f), data);
    const t = { ...ctx, dir };
    const r: CliResult = await g.cli(row.args, { env: row.env?.(t) ?? {}, cwd: dir, timeoutMs: 25_000 });
    const all = `${r.stdout}\n${r.stderr}`;
    expect(r.code, all).toBe(row.code);
    expect(all).toMatch(row.message);
    expect(all, 'a secret was printed').not.toContain(CANARY);
    expect(all, 'a stack trace was printed').not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/);
    // Every line on stderr is JSON (the logs are not a terminal here): banner and fatal errors included.
    for (const line of r.stderr.split('\n').filter(Boolean)) expect(() => JSON.parse(line), line).not.toThrow();
  });
});
