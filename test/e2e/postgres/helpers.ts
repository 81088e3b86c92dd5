/**
 * Helpers for the multi-daemon PostgreSQL end-to-end tests: mirror file I/O, waiting for JSON to
 * arrive, reading rows the way CLIProxyAPI's Go store does, and a private embedded server.
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Daemon } from '../../support/daemon.js';
import { isCi, quoteIdent, startEmbeddedPostgres, withAdmin, type AdminSql, type EmbeddedPgServer } from '../../support/pg-server.js';
import { waitFor } from '../../support/wait.js';

export const authPath = (root: string, id: string): string => join(root, 'auths', ...id.split('/'));

/** A credential as a proxy writes it (claude-shaped), with `extra` fields on top. */
/** Environment of one daemon as CLIProxyAPI configures it (PGSTORE_DSN + PGSTORE_SCHEMA), with the tests' quick timings. */
export function pgDaemonEnv(url: string, schema: string, mirror: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PGSTORE_DSN: url,
    PGSTORE_SCHEMA: schema,
    CREDSYNC_LOCAL_DIR: mirror,
    CREDSYNC_DEBOUNCE: '20ms',
    CREDSYNC_RECONCILE_INTERVAL: '60s',
    CREDSYNC_LOG_LEVEL: 'info',
    ...extra,
  };
}

export const cred = (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: 'claude',
  email: id.replace(/\.json$/, ''),
  access_token: `at-${id}`,
  refresh_token: `rt-${id}`,
  last_refresh: '2025-01-01T00:00:00Z',
  ...extra,
});
export const configPath = (root: string): string => join(root, 'config', 'config.yaml');

/** What a proxy does when it refreshes a token: a plain (non-atomic) write of the whole file. */
export async function writeAuth(root: string, id: string, value: unknown): Promise<void> {
  const p = authPath(root, id);
  await mkdir(dirname(p), { recursive: true });
  await writeFile(p, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
}

export async function writeConfig(root: string, text: string): Promise<void> {
  await mkdir(join(root, 'config'), { recursive: true });
  await writeFile(configPath(root), text);
}

export async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Deep JSON equality independent of key order. */
export function sameJson(a: unknown, b: unknown): boolean {
  return canon(a) === canon(b);
}

function canon(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canon(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Waits until `path` holds JSON equal to `want`; returns ms elapsed since `since`. */
export async function waitJson(path: string, want: unknown, timeoutMs = 3000, since = Date.now()): Promise<number> {
  await waitFor(
    `${path} to equal ${JSON.stringify(want).slice(0, 100)}`,
    async () => sameJson(await readJson(path), want),
    timeoutMs,
    2,
  ).catch(async (err: Error) => {
    const got = await readFile(path, 'utf8').catch(() => '<missing>');
    throw new Error(`${err.message}; file holds: ${got.slice(0, 300)}`);
  });
  return Date.now() - since;
}

export async function waitGone(path: string, timeoutMs = 3000, since = Date.now()): Promise<number> {
  await waitFor(`${path} to be removed`, async () => !(await exists(path)), timeoutMs, 2);
  return Date.now() - since;
}

/** One auth_store row as CLIProxyAPI would read it (content as the JSON text PostgreSQL returns). */
export interface AuthRow {
  id: string;
  content: unknown;
  contentText: string;
  jsonType: string;
  version: string;
  createdAt: Date;
  updatedAt: Date;
}

export async function authRows(url: string, schema: string): Promise<AuthRow[]> {
  return withAdmin(url, async (sql) => {
    const rows = await sql.unsafe(
      `SELECT id, content::text AS c, jsonb_typeof(content) AS jt, md5(content::text) AS v, created_at, updated_at
         FROM ${quoteIdent(schema)}.auth_store ORDER BY id`,
    );
    return rows.map((r) => ({
      id: r.id as string,
      content: JSON.parse(r.c as string),
      contentText: r.c as string,
      jsonType: r.jt as string,
      version: r.v as string,
      createdAt: r.created_at as Date,
      updatedAt: r.updated_at as Date,
    }));
  });
}

export async function authRow(url: string, schema: string, id: string): Promise<AuthRow | null> {
  return (await authRows(url, schema)).find((r) => r.id === id) ?? null;
}

export async function configRows(url: string, schema: string): Promise<Array<{ id: string; content: string; updatedAt: Date }>> {
  return withAdmin(url, async (sql) => {
    const rows = await sql.unsafe(`SELECT id, content, updated_at FROM ${quoteIdent(schema)}.config_store ORDER BY id`);
    return rows.map((r) => ({ id: r.id as string, content: r.content as string, updatedAt: r.updated_at as Date }));
  });
}

export async function waitRow(url: string, schema: string, id: string, want: unknown, timeoutMs = 3000): Promise<AuthRow> {
  let last: AuthRow | null = null;
  return waitFor(
    `auth_store row ${id} to equal ${JSON.stringify(want).slice(0, 100)}`,
    async () => {
      last = await authRow(url, schema, id);
      return last && sameJson(last.content, want) ? last : null;
    },
    timeoutMs,
    10,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; row holds: ${last ? last.contentText.slice(0, 300) : '<missing>'}`);
  });
}

export async function waitNoRow(url: string, schema: string, id: string, timeoutMs = 3000): Promise<void> {
  await waitFor(`auth_store row ${id} to be deleted`, async () => (await authRow(url, schema, id)) === null, timeoutMs, 10);
}

/** CLIProxyAPI's upsert (internal/store/postgresstore.go), verbatim. */
export const CLIPROXY_UPSERT = (schema: string, table: 'auth_store' | 'config_store'): string =>
  `INSERT INTO ${quoteIdent(schema)}.${quoteIdent(table)} (id, content, created_at, updated_at) VALUES ($1, $2, NOW(), NOW()) ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, updated_at = NOW()`;

/**
 * Runs CLIProxyAPI's exact upsert. postgres.js learns the parameter's type (jsonb) from the server and
 * serialises a JS value with JSON.stringify, which is what pgx does with the Go store's json.RawMessage:
 * the server receives the JSON text. (A JS *string* would be encoded as a JSON string literal.)
 */
export async function cliproxyUpsertAuth(sql: AdminSql, schema: string, id: string, content: Record<string, unknown>): Promise<void> {
  await sql.unsafe(CLIPROXY_UPSERT(schema, 'auth_store'), [id, content as never]);
}

/** Files under `<mirror>/.credsync/conflicts/` with their contents. */
export async function conflictFiles(mirror: string): Promise<Array<{ name: string; path: string; text: string }>> {
  const dir = join(mirror, '.credsync', 'conflicts');
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: Array<{ name: string; path: string; text: string }> = [];
  for (const name of names.sort()) {
    const path = join(dir, name);
    out.push({ name, path, text: await readFile(path, 'utf8').catch(() => '') });
  }
  return out;
}

/** mtime (ns precision as a string), inode and size of a file; null when missing. */
export async function fileSig(path: string): Promise<{ mtimeNs: string; ino: number; size: number } | null> {
  try {
    const st = await stat(path, { bigint: true });
    return { mtimeNs: st.mtimeNs.toString(), ino: Number(st.ino), size: Number(st.size) };
  } catch {
    return null;
  }
}

/** Log messages (pino msg) of a daemon since `since` that match `re`. */
export function logged(d: Daemon, re: RegExp, since = 0): string[] {
  return d.messages(since).filter((m) => re.test(m));
}

/** The last `n` stderr lines of each daemon, for failure messages. */
export function stderrTails(daemons: Array<Daemon | undefined>, n = 40): string {
  return daemons
    .filter((d): d is Daemon => !!d)
    .map((d) => `--- ${d.name} (pid ${d.pid}, ${d.running ? 'running' : 'exited'}) last ${n} lines ---\n${d.lines.slice(-n).map((l) => l.raw).join('\n')}`)
    .join('\n');
}

/** The DSN with another database name. */
export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

export interface PrivateServer {
  server: EmbeddedPgServer;
  /** pg_stat_statements is loaded (shared_preload_libraries) and the extension is created in `postgres`. */
  statements: boolean;
  statementsNote: string;
}

/**
 * A private embedded PostgreSQL for tests that restart the server or count its statements, with
 * pg_stat_statements preloaded when the binaries have it (ALTER SYSTEM + one restart).
 * Returns a reason string instead when it cannot be had outside CI; in CI it throws.
 */
export async function startPrivateServer(): Promise<PrivateServer | string> {
  let server: EmbeddedPgServer;
  try {
    if (process.env.CREDSYNC_TEST_EMBEDDED_PG === '0') throw new Error('disabled by CREDSYNC_TEST_EMBEDDED_PG=0');
    server = await startEmbeddedPostgres();
  } catch (err) {
    const reason = `no private embedded PostgreSQL: ${(err as Error).message.split('\n')[0]}`;
    if (isCi()) throw new Error(`${reason}; in CI a missing server is a failure`, { cause: err });
    return reason;
  }
  let statements = false;
  let statementsNote = '';
  try {
    await withAdmin(server.url, (sql) => sql.unsafe(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`));
    await server.stopProcess();
    await server.start();
    await withAdmin(server.url, (sql) => sql.unsafe('CREATE EXTENSION IF NOT EXISTS pg_stat_statements'));
    statements = true;
  } catch (err) {
    // The library could not be loaded (or the restart failed): use a fresh server without it.
    statementsNote = `pg_stat_statements unavailable: ${(err as Error).message.split('\n')[0]}`;
    await server.stop().catch(() => {});
    try {
      server = await startEmbeddedPostgres();
    } catch (e) {
      const reason = `no private embedded PostgreSQL: ${(e as Error).message.split('\n')[0]}`;
      if (isCi()) throw new Error(`${reason}; in CI a missing server is a failure`, { cause: e });
      return reason;
    }
  }
  return { server, statements, statementsNote };
}
