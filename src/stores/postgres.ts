import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import postgres from 'postgres';
import type { Logger } from 'pino';
import type {
  Change,
  DeleteOptions,
  Entry,
  Item,
  Listing,
  PutOptions,
  SkippedItem,
  StopWatching,
  Store,
  WatchOptions,
} from './types.js';
import { ConflictError, StoreError } from './errors.js';
import { AUTH_PREFIX, CONFIG_KEY, authIdOf, keyProblem, validateKey, type Key } from './keys.js';
import { contentHash, toLf } from '../mirror/canonical.js';

/**
 * PostgreSQL store, on the tables CLIProxyAPI's Go store uses (`config_store`, `auth_store`).
 *
 * - `config/config.yaml` ↔ row `config` of `config_store` (TEXT, LF line endings);
 *   `auths/<id>` ↔ row `<id>` of `auth_store` (JSONB: key order and whitespace are not kept).
 * - Version: `md5(content::text)`, computed by the server (equal version ⇒ equal content).
 * - Change notification: a trigger on both tables calls `pg_notify(<channel>, {table, op, id, version})`
 *   for every write by anyone; `watch` LISTENs on a dedicated connection. Content never travels in a
 *   notification.
 * - Nothing polls: an idle store sends no queries.
 */

export interface PostgresStoreOptions {
  /** `postgres://user:pass@host:port/db?sslmode=…` or libpq key=value form (`host=… user=… password=…`). */
  dsn: string;
  /** Schema of the tables (created if missing). Unset: the DSN's `schema` parameter, else search_path. */
  schema?: string;
  log?: Logger;
  /** Connect timeout in seconds (default: the DSN's `connect_timeout`, else 10). */
  connectTimeoutSeconds?: number;
  /** `application_name` of the store's connections (the LISTEN connection appends `:listen`). Default `credsync`. */
  applicationName?: string;
  /** Maximum pooled connections for queries (default 4; the LISTEN connection is separate). */
  maxConnections?: number;
}

const STORE = 'postgres';
const DEFAULT_CONNECT_TIMEOUT_S = 10;
const DEFAULT_APP_NAME = 'credsync';
const CONFIG_ID = 'config';
const FUNCTION_NAME = 'credsync_notify';
const TRIGGER_NAME = 'credsync_notify';
const TRUNCATE_TRIGGER_NAME = 'credsync_notify_truncate';
const CHANNEL_PREFIX = 'credsync.';
const MAX_IDENTIFIER_BYTES = 63;

type Sql = postgres.Sql<Record<string, never>>;
type Options = postgres.Options<Record<string, never>>;

// ---------------------------------------------------------------------------------------------
// Connection strings
// ---------------------------------------------------------------------------------------------

interface ParsedDsn {
  /** libpq-style parameters (host, port, user, password, dbname, sslmode, …). */
  params: Map<string, string>;
  form: 'url' | 'keyword';
}

function decodeComponent(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const URL_SCHEME = /^postgres(?:ql)?:\/\//i;

function parseUrlDsn(dsn: string): ParsedDsn {
  const params = new Map<string, string>();
  let rest = dsn.replace(URL_SCHEME, '');
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf('?');
  const query = q >= 0 ? rest.slice(q + 1) : '';
  let main = q >= 0 ? rest.slice(0, q) : rest;
  const at = main.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = main.slice(0, at);
    main = main.slice(at + 1);
    const colon = userinfo.indexOf(':');
    if (colon >= 0) {
      params.set('user', decodeComponent(userinfo.slice(0, colon)));
      params.set('password', decodeComponent(userinfo.slice(colon + 1)));
    } else if (userinfo) {
      params.set('user', decodeComponent(userinfo));
    }
  }
  const slash = main.indexOf('/');
  const hostPart = slash >= 0 ? main.slice(0, slash) : main;
  const path = slash >= 0 ? main.slice(slash + 1) : '';
  if (path) params.set('dbname', decodeComponent(path));
  if (hostPart) {
    const hosts: string[] = [];
    const ports: string[] = [];
    for (const h of hostPart.split(',')) {
      let host = h;
      let port = '';
      if (h.startsWith('[')) {
        const close = h.indexOf(']');
        host = h.slice(1, close >= 0 ? close : undefined);
        const after = close >= 0 ? h.slice(close + 1) : '';
        if (after.startsWith(':')) port = after.slice(1);
      } else {
        const c = h.lastIndexOf(':');
        if (c >= 0) {
          host = h.slice(0, c);
          port = h.slice(c + 1);
        }
      }
      hosts.push(decodeComponent(host));
      ports.push(port);
    }
    if (hosts.some((h) => h !== '')) params.set('host', hosts.join(','));
    if (ports.some((p) => p !== '')) params.set('port', ports.join(','));
  }
  for (const pair of query.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const k = decodeComponent(eq >= 0 ? pair.slice(0, eq) : pair);
    const v = decodeComponent(eq >= 0 ? pair.slice(eq + 1) : '');
    params.set(k, v);
  }
  return { params, form: 'url' };
}

function parseKeywordDsn(dsn: string): ParsedDsn {
  const params = new Map<string, string>();
  let i = 0;
  const n = dsn.length;
  const ws = (c: string | undefined): boolean => c !== undefined && /\s/.test(c);
  while (i < n) {
    while (i < n && ws(dsn[i])) i++;
    if (i >= n) break;
    let key = '';
    while (i < n && dsn[i] !== '=' && !ws(dsn[i])) key += dsn[i++];
    while (i < n && ws(dsn[i])) i++;
    if (dsn[i] !== '=') throw new Error('malformed key=value connection string (a keyword without "=")');
    i++;
    while (i < n && ws(dsn[i])) i++;
    let value = '';
    if (dsn[i] === "'") {
      i++;
      let closed = false;
      while (i < n) {
        const c = dsn[i]!;
        if (c === '\\' && i + 1 < n) {
          value += dsn[i + 1];
          i += 2;
        } else if (c === "'") {
          i++;
          closed = true;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (!closed) throw new Error('unterminated quoted string in connection string');
    } else {
      while (i < n && !ws(dsn[i])) {
        if (dsn[i] === '\\' && i + 1 < n) {
          value += dsn[i + 1];
          i += 2;
        } else {
          value += dsn[i++];
        }
      }
    }
    if (!key) throw new Error('empty keyword in connection string');
    params.set(key, value);
  }
  return { params, form: 'keyword' };
}

function parseDsn(dsn: string): ParsedDsn {
  const trimmed = dsn.trim();
  if (!trimmed) throw new Error('empty connection string');
  return URL_SCHEME.test(trimmed) ? parseUrlDsn(trimmed) : parseKeywordDsn(trimmed);
}

/** The DSN with its password (and other secrets) replaced by `***`. Safe for logs and messages. */
export function redactDsn(dsn: string): string {
  const trimmed = dsn.trim();
  if (URL_SCHEME.test(trimmed)) {
    const scheme = trimmed.match(URL_SCHEME)![0];
    let rest = trimmed.slice(scheme.length);
    const q = rest.indexOf('?');
    let query = q >= 0 ? rest.slice(q) : '';
    rest = q >= 0 ? rest.slice(0, q) : rest;
    const at = rest.lastIndexOf('@');
    if (at >= 0) {
      const userinfo = rest.slice(0, at);
      const colon = userinfo.indexOf(':');
      if (colon >= 0) rest = `${userinfo.slice(0, colon)}:***${rest.slice(at)}`;
    }
    query = query.replace(/([?&](?:password|sslpassword)=)[^&#]*/gi, '$1***');
    return scheme + rest + query;
  }
  return trimmed.replace(/\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)/gi, '$1***');
}

/** Parameters that configure the client, not the server session (never sent as runtime parameters). */
const CLIENT_PARAMS = new Set([
  'host', 'hostaddr', 'port', 'user', 'password', 'dbname', 'schema', 'application_name', 'fallback_application_name',
  'connect_timeout', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslpassword', 'sslcrl', 'sslcrldir', 'sslsni',
  'sslcompression', 'ssl_min_protocol_version', 'ssl_max_protocol_version', 'sslnegotiation', 'requiressl',
  'gssencmode', 'gsslib', 'gssdelegation', 'krbsrvname', 'channel_binding', 'require_auth', 'passfile', 'service',
  'servicefile', 'keepalives', 'keepalives_idle', 'keepalives_interval', 'keepalives_count', 'tcp_user_timeout',
  'load_balance_hosts', 'target_session_attrs', 'replication', 'min_read_buffer_size', 'statement_cache_capacity',
  'description_cache_capacity', 'default_query_exec_mode', 'prefer_simple_protocol', 'pool_max_conns',
  'pool_min_conns', 'pool_min_idle_conns', 'pool_max_conn_lifetime', 'pool_max_conn_lifetime_jitter',
  'pool_max_conn_idle_time', 'pool_health_check_period',
]);

interface ConnectionConfig {
  /** postgres.js options without application_name / pool settings. */
  base: Options;
  schemaFromDsn?: string;
  applicationNameFromDsn?: string;
  connectTimeoutFromDsn?: number;
  /** Strings that must never appear in a message. */
  secrets: string[];
}

function sslOption(params: Map<string, string>): Options['ssl'] {
  const mode = (params.get('sslmode') ?? (params.get('requiressl') === '1' ? 'require' : 'prefer')).toLowerCase();
  const file = (k: string): Buffer | undefined => {
    const p = params.get(k);
    return p && p !== 'system' ? readFileSync(p) : undefined;
  };
  switch (mode) {
    case 'disable':
      return false;
    case 'allow':
    case 'prefer':
      return 'prefer';
    case 'require': {
      // libpq: with a root certificate, "require" behaves like "verify-ca".
      const ca = file('sslrootcert');
      if (!ca) return params.has('sslcert') ? { rejectUnauthorized: false, cert: file('sslcert'), key: file('sslkey') } : 'require';
      return { ca, cert: file('sslcert'), key: file('sslkey'), checkServerIdentity: () => undefined };
    }
    case 'verify-ca':
      return { ca: file('sslrootcert'), cert: file('sslcert'), key: file('sslkey'), checkServerIdentity: () => undefined };
    case 'verify-full':
      return { ca: file('sslrootcert'), cert: file('sslcert'), key: file('sslkey') };
    default:
      throw new Error(`unsupported sslmode ${JSON.stringify(mode)}`);
  }
}

function connectionConfig(dsn: string): ConnectionConfig {
  const { params } = parseDsn(dsn);
  const secrets = [params.get('password'), params.get('sslpassword')].filter((s): s is string => !!s && s.length >= 3);
  const base: Options = {};
  const hostList = (params.get('hostaddr') || params.get('host') || '').split(',').filter((h) => h !== '');
  const portList = (params.get('port') || '').split(',').map((p) => p.trim());
  const portOf = (i: number): number => {
    const raw = portList.length === 1 ? portList[0] : portList[i];
    if (!raw) return 5432;
    const p = Number(raw);
    if (!Number.isInteger(p) || p <= 0 || p > 65535) throw new Error(`invalid port ${JSON.stringify(raw)}`);
    return p;
  };
  if (hostList.length > 0 && hostList[0]!.startsWith('/')) {
    base.path = `${hostList[0]}/.s.PGSQL.${portOf(0)}`;
  } else if (hostList.length > 0) {
    // postgres.js accepts arrays at runtime (multi-host); its typings only show the single form.
    base.host = hostList as unknown as string;
    base.port = hostList.map((_, i) => portOf(i)) as unknown as number;
  } else if (portList[0]) {
    base.port = portOf(0);
  }
  const user = params.get('user');
  if (user) base.user = user;
  const password = params.get('password');
  if (password !== undefined) base.pass = password;
  const db = params.get('dbname');
  if (db) base.database = db;
  base.ssl = sslOption(params);
  const tsa = params.get('target_session_attrs');
  if (tsa && tsa !== 'any') base.target_session_attrs = tsa as Options['target_session_attrs'];
  const runtime: Record<string, string> = {};
  for (const [k, v] of params) if (!CLIENT_PARAMS.has(k)) runtime[k] = v;
  base.connection = runtime;
  const ct = params.get('connect_timeout');
  const connectTimeout = ct !== undefined && ct !== '' && Number(ct) > 0 ? Math.max(2, Number(ct)) : undefined;
  return {
    base,
    schemaFromDsn: params.get('schema') || undefined,
    applicationNameFromDsn: params.get('application_name') || params.get('fallback_application_name') || undefined,
    connectTimeoutFromDsn: connectTimeout,
    secrets,
  };
}

// ---------------------------------------------------------------------------------------------
// Identifiers, channel, SQL text
// ---------------------------------------------------------------------------------------------

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/**
 * The NOTIFY channel for tables living in `schema` (the schema the tables actually resolve to;
 * `public` when unset). Always ≤ 63 bytes: long schema names are replaced by a hash.
 */
export function pgChannelFor(schema?: string): string {
  const s = schema && schema.length > 0 ? schema : 'public';
  const full = CHANNEL_PREFIX + s;
  if (Buffer.byteLength(full, 'utf8') <= MAX_IDENTIFIER_BYTES) return full;
  return CHANNEL_PREFIX + createHash('md5').update(s, 'utf8').digest('hex').slice(0, 16);
}

/**
 * The trigger function, generic: the channel comes from the trigger's argument.
 * Payload: {"table", "op" (insert|update|delete|truncate), "id", "version"} — never the content.
 * An update that changes neither id nor content (an upsert of identical content) is not announced.
 * A payload that would come near the 8000-byte limit is sent without the id: receivers reconcile fully.
 */
const FUNCTION_BODY = `
DECLARE
  channel text := TG_ARGV[0];
  payload text;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify(channel, json_build_object('table', TG_TABLE_NAME, 'op', 'truncate')::text);
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' AND OLD.id IS NOT DISTINCT FROM NEW.id
     AND OLD.content::text IS NOT DISTINCT FROM NEW.content::text THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id) THEN
    payload := json_build_object('table', TG_TABLE_NAME, 'op', 'delete', 'id', OLD.id)::text;
    IF octet_length(payload) > 7900 THEN
      payload := json_build_object('table', TG_TABLE_NAME, 'op', 'delete')::text;
    END IF;
    PERFORM pg_notify(channel, payload);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    payload := json_build_object('table', TG_TABLE_NAME, 'op', lower(TG_OP), 'id', NEW.id,
                                 'version', md5(NEW.content::text))::text;
    IF octet_length(payload) > 7900 THEN
      payload := json_build_object('table', TG_TABLE_NAME, 'op', lower(TG_OP),
                                   'version', md5(NEW.content::text))::text;
    END IF;
    PERFORM pg_notify(channel, payload);
  END IF;
  RETURN NULL;
END
`;

/** 64-bit advisory lock key for "initialising the tables of this schema". */
function advisoryKey(schema: string | undefined): string {
  const h = createHash('sha256').update(`credsync:init:${schema ?? ''}`).digest();
  return h.readBigInt64BE(0).toString();
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

function sanitizeReason(err: unknown, secrets: readonly string[]): string {
  let reason: string;
  const e = err as { message?: unknown; code?: unknown; name?: unknown } | null;
  if (e && typeof e === 'object' && typeof e.message === 'string') {
    // Only the primary message: a PostgresError's detail/where can quote the offending content.
    reason = e.message || String(e.name ?? 'error');
    if (typeof e.code === 'string' && e.code && !reason.includes(e.code)) reason += ` (${e.code})`;
  } else {
    reason = String(err);
  }
  for (const s of secrets) {
    reason = reason.split(s).join('***');
    const enc = encodeURIComponent(s);
    if (enc !== s) reason = reason.split(enc).join('***');
  }
  return reason;
}

function errorCode(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

interface Target {
  table: 'config' | 'auth';
  id: string;
}

interface Payload {
  table?: unknown;
  op?: unknown;
  id?: unknown;
  version?: unknown;
}

export function createPostgresStore(options: PostgresStoreOptions): Store {
  const redacted = (() => {
    try {
      return redactDsn(options.dsn);
    } catch {
      return '<unparseable DSN>';
    }
  })();
  let config: ConnectionConfig | undefined;
  let configError: unknown;
  try {
    config = connectionConfig(options.dsn);
  } catch (err) {
    configError = err;
  }
  const schema = options.schema && options.schema.length > 0 ? options.schema : config?.schemaFromDsn;
  const secrets = config?.secrets ?? [];
  const id = `${redacted}${schema ? ` schema=${schema}` : ''}`;
  const log = options.log?.child({ store: STORE, target: id });
  const appName = (options.applicationName ?? config?.applicationNameFromDsn ?? DEFAULT_APP_NAME).slice(0, 56);
  const connectTimeout = options.connectTimeoutSeconds ?? config?.connectTimeoutFromDsn ?? DEFAULT_CONNECT_TIMEOUT_S;

  const qual = (table: string): string => (schema ? `${quoteIdent(schema)}.${quoteIdent(table)}` : quoteIdent(table));
  const CONFIG_TABLE = qual('config_store');
  const AUTH_TABLE = qual('auth_store');

  const fail = (op: string, key: string | undefined, err: unknown, prefix = ''): StoreError => {
    if (err instanceof StoreError) return err;
    const reason = prefix + sanitizeReason(err, secrets);
    const cause = Object.assign(new Error(reason), { code: errorCode(err) });
    return new StoreError(STORE, op, key, reason, { cause });
  };

  // `onnotify` is a real postgres.js option (used by its own listen()) missing from its typings.
  const makeSql = (extra: Options & { onnotify?: (channel: string, payload: string) => void }): Sql => {
    if (!config) throw fail('connect', undefined, configError, `invalid DSN ${redacted}: `);
    return postgres({
      ...config.base,
      connect_timeout: connectTimeout,
      prepare: false,
      fetch_types: false,
      onnotice: (n) => log?.debug({ notice: n.message }, 'postgres notice'),
      ...extra,
      connection: { ...config.base.connection, application_name: appName, ...extra.connection },
    } as Options) as unknown as Sql;
  };

  let closed = false;
  let initPromise: Promise<void> | undefined;
  let channel: string | undefined;
  let triggerProblem: string | undefined;
  const watchers = new Set<StopWatching>();

  let sqlInstance: Sql | undefined;
  const sql = (): Sql => {
    if (closed) throw new StoreError(STORE, 'query', undefined, 'store is closed');
    return (sqlInstance ??= makeSql({ max: options.maxConnections ?? 4, idle_timeout: 60 }));
  };

  const tableOf = (t: Target): string => (t.table === 'config' ? CONFIG_TABLE : AUTH_TABLE);
  const versionExpr = 'md5(content::text)';

  function target(key: Key): Target {
    validateKey(key);
    if (key === CONFIG_KEY) return { table: 'config', id: CONFIG_ID };
    return { table: 'auth', id: authIdOf(key) };
  }

  const decoder = new TextDecoder('utf-8', { fatal: true });

  function encodeContent(key: Key, t: Target, data: Uint8Array): string {
    let text: string;
    try {
      text = decoder.decode(data);
    } catch {
      throw new StoreError(STORE, 'put', key, 'content is not valid UTF-8');
    }
    if (text.includes('\u0000')) throw new StoreError(STORE, 'put', key, 'content contains a NUL character');
    if (t.table === 'config') return toLf(text);
    try {
      JSON.parse(text);
    } catch {
      throw new StoreError(STORE, 'put', key, 'content is not valid JSON (auth_store.content is JSONB)');
    }
    return text;
  }

  async function currentVersion(t: Target): Promise<string | null> {
    const rows = await sql().unsafe(`SELECT ${versionExpr} AS v FROM ${tableOf(t)} WHERE id = $1`, [t.id]);
    return rows.length > 0 ? (rows[0]!.v as string) : null;
  }

  async function doInit(): Promise<void> {
    const s = sql();
    try {
      await s.begin(async (tx) => {
        await tx.unsafe(`SELECT pg_advisory_xact_lock(${advisoryKey(schema)}::bigint)`);
        if (schema) {
          const rows = await tx.unsafe('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
          if (rows.length === 0) await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
        }
        const exists = async (table: string): Promise<boolean> =>
          (await tx.unsafe('SELECT to_regclass($1) IS NOT NULL AS ok', [table]))[0]!.ok as boolean;
        // The exact DDL of CLIProxyAPI (internal/store/postgresstore.go).
        if (!(await exists(CONFIG_TABLE))) {
          await tx.unsafe(
            `CREATE TABLE IF NOT EXISTS ${CONFIG_TABLE} (id TEXT PRIMARY KEY, content TEXT NOT NULL, ` +
              'created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())',
          );
        }
        if (!(await exists(AUTH_TABLE))) {
          await tx.unsafe(
            `CREATE TABLE IF NOT EXISTS ${AUTH_TABLE} (id TEXT PRIMARY KEY, content JSONB NOT NULL, ` +
              'created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())',
          );
        }
        // The schema the tables really live in (search_path when no schema is configured).
        const nsRows = await tx.unsafe(
          'SELECT n.nspname AS ns FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)',
          [AUTH_TABLE],
        );
        const actualSchema = nsRows[0]!.ns as string;
        const ch = pgChannelFor(actualSchema);
        triggerProblem = undefined;
        try {
          await tx.savepoint((sp) => installTriggers(sp, actualSchema, ch));
        } catch (err) {
          // A role that may use the tables but not own them: one-shot commands still work; watch() says why not.
          if (errorCode(err) !== '42501') throw fail('init', undefined, err, 'cannot install the change-notification trigger: ');
          const reason = sanitizeReason(err, secrets);
          const present = await tx.unsafe(
            `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid IN (to_regclass($1), to_regclass($2)) AND tgname = $3`,
            [CONFIG_TABLE, AUTH_TABLE, TRIGGER_NAME],
          );
          if ((present[0]!.n as number) === 2) {
            log?.warn({ reason }, 'cannot update the change-notification trigger; keeping the installed one');
          } else {
            triggerProblem =
              `the change-notification trigger is not installed and this role may not install it (${reason}); ` +
              "run credsync once as the tables' owner";
            log?.error({ reason }, 'change notification unavailable: trigger not installed');
          }
        }
        channel = ch;
      });
    } catch (err) {
      throw fail('init', undefined, err, `${id}: `);
    }
  }

  async function installTriggers(tx: postgres.TransactionSql<Record<string, never>>, ns: string, ch: string): Promise<void> {
    const fn = `${quoteIdent(ns)}.${quoteIdent(FUNCTION_NAME)}`;
    const fnRows = await tx.unsafe(
      `SELECT p.prosrc AS src FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = $1 AND p.proname = $2 AND p.pronargs = 0`,
      [ns, FUNCTION_NAME],
    );
    if (fnRows.length === 0 || fnRows[0]!.src !== FUNCTION_BODY) {
      await tx.unsafe(`CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $credsync$${FUNCTION_BODY}$credsync$`);
    }
    for (const table of [CONFIG_TABLE, AUTH_TABLE]) {
      const existing = await tx.unsafe(
        `SELECT t.tgname AS name, pg_get_triggerdef(t.oid) AS def FROM pg_trigger t
          WHERE t.tgrelid = to_regclass($1) AND NOT t.tgisinternal AND t.tgname IN ($2, $3)`,
        [table, TRIGGER_NAME, TRUNCATE_TRIGGER_NAME],
      );
      const want = [
        { name: TRIGGER_NAME, when: 'AFTER INSERT OR DELETE OR UPDATE', level: 'FOR EACH ROW' },
        { name: TRUNCATE_TRIGGER_NAME, when: 'AFTER TRUNCATE', level: 'FOR EACH STATEMENT' },
      ];
      for (const w of want) {
        const row = existing.find((r) => r.name === w.name);
        const def = row?.def as string | undefined;
        const ok = def !== undefined && def.includes(w.when) && def.includes(quoteLiteral(ch)) && def.includes(FUNCTION_NAME);
        if (ok) continue;
        if (row) await tx.unsafe(`DROP TRIGGER IF EXISTS ${quoteIdent(w.name)} ON ${table}`);
        await tx.unsafe(
          `CREATE TRIGGER ${quoteIdent(w.name)} ${w.when} ON ${table} ${w.level} EXECUTE PROCEDURE ${fn}(${quoteLiteral(ch)})`,
        );
      }
    }
  }

  function ensureInit(): Promise<void> {
    if (!initPromise) {
      initPromise = doInit().catch((err) => {
        initPromise = undefined;
        throw err;
      });
    }
    return initPromise;
  }

  function changeOf(payload: string, onFull: () => void): Change | null {
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

  const store: Store = {
    name: STORE,
    id,

    async init(): Promise<void> {
      if (closed) throw new StoreError(STORE, 'init', undefined, 'store is closed');
      // Always run (idempotent): a second init re-checks schema, tables and triggers.
      initPromise = undefined;
      await ensureInit();
    },

    async list(): Promise<Listing> {
      let rows: postgres.RowList<postgres.Row[]>;
      try {
        rows = await sql().unsafe(
          `SELECT 'config' AS t, id, md5(content) AS v FROM ${CONFIG_TABLE}
           UNION ALL
           SELECT 'auth' AS t, id, md5(content::text) AS v FROM ${AUTH_TABLE}
           ORDER BY 1, 2`,
        );
      } catch (err) {
        throw fail('list', undefined, err);
      }
      const entries: Entry[] = [];
      const skipped: SkippedItem[] = [];
      for (const r of rows) {
        const rid = r.id as string;
        if (r.t === 'config') {
          if (rid === CONFIG_ID) entries.push({ key: CONFIG_KEY, version: r.v as string });
          else skipped.push({ id: `config_store:${rid}`, reason: `config_store row other than "${CONFIG_ID}"` });
          continue;
        }
        const key = AUTH_PREFIX + rid;
        const problem = keyProblem(key);
        if (problem) skipped.push({ id: rid, reason: `auth_store id ${problem}` });
        else entries.push({ key, version: r.v as string });
      }
      return { entries, skipped };
    },

    async get(key: Key): Promise<Item | null> {
      const t = target(key);
      let rows: postgres.RowList<postgres.Row[]>;
      try {
        rows = await sql().unsafe(`SELECT content::text AS c, ${versionExpr} AS v FROM ${tableOf(t)} WHERE id = $1`, [t.id]);
      } catch (err) {
        throw fail('get', key, err);
      }
      if (rows.length === 0) return null;
      const data = new Uint8Array(Buffer.from(rows[0]!.c as string, 'utf8'));
      const hash = contentHash(key, data);
      const item: Item = hash ? { key, version: rows[0]!.v as string, data, hash } : { key, version: rows[0]!.v as string, data };
      return item;
    },

    /** One round trip for many keys (cold start, bursts). Missing keys are left out. */
    async getMany(keys: Key[]): Promise<Item[]> {
      const ids: string[] = [];
      let wantConfig = false;
      for (const key of keys) {
        const t = target(key);
        if (t.table === 'config') wantConfig = true;
        else ids.push(t.id);
      }
      let rows: postgres.RowList<postgres.Row[]>;
      try {
        rows = await sql().unsafe(
          `SELECT 'auth' AS t, id, content::text AS c, ${versionExpr} AS v FROM ${AUTH_TABLE} WHERE id IN (SELECT jsonb_array_elements_text(($1::text)::jsonb))` +
            (wantConfig ? ` UNION ALL SELECT 'config' AS t, id, content AS c, ${versionExpr} AS v FROM ${CONFIG_TABLE} WHERE id = $2` : ''),
          wantConfig ? [JSON.stringify(ids), CONFIG_ID] : [JSON.stringify(ids)],
        );
      } catch (err) {
        throw fail('getMany', undefined, err);
      }
      return rows.map((r) => {
        const key = r.t === 'config' ? CONFIG_KEY : AUTH_PREFIX + (r.id as string);
        const data = new Uint8Array(Buffer.from(r.c as string, 'utf8'));
        const hash = contentHash(key, data);
        return hash ? { key, version: r.v as string, data, hash } : { key, version: r.v as string, data };
      });
    },

    async put(key: Key, data: Uint8Array, opts?: PutOptions): Promise<Entry> {
      const t = target(key);
      const content = encodeContent(key, t, data);
      const table = tableOf(t);
      // `::text` first: postgres.js would JSON.stringify a parameter it sees typed as jsonb (double encoding).
      const cast = t.table === 'auth' ? '::text::jsonb' : '::text';
      const ifVersion = opts?.ifVersion;
      let rows: postgres.RowList<postgres.Row[]>;
      try {
        if (ifVersion === undefined) {
          rows = await sql().unsafe(
            `INSERT INTO ${table} (id, content, created_at, updated_at) VALUES ($1, $2${cast}, NOW(), NOW())
             ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, updated_at = NOW()
             RETURNING ${versionExpr} AS v`,
            [t.id, content],
          );
        } else if (ifVersion === null) {
          rows = await sql().unsafe(
            `INSERT INTO ${table} (id, content, created_at, updated_at) VALUES ($1, $2${cast}, NOW(), NOW())
             ON CONFLICT (id) DO NOTHING RETURNING ${versionExpr} AS v`,
            [t.id, content],
          );
        } else {
          rows = await sql().unsafe(
            `UPDATE ${table} SET content = $2${cast}, updated_at = NOW()
              WHERE id = $1 AND ${versionExpr} = $3 RETURNING ${versionExpr} AS v`,
            [t.id, content, ifVersion],
          );
        }
        if (rows.length === 0) {
          const actual = await currentVersion(t);
          throw new ConflictError(STORE, 'put', key, ifVersion, actual);
        }
      } catch (err) {
        throw fail('put', key, err);
      }
      return { key, version: rows[0]!.v as string };
    },

    async delete(key: Key, opts?: DeleteOptions): Promise<void> {
      const t = target(key);
      const table = tableOf(t);
      try {
        if (opts?.ifVersion === undefined) {
          await sql().unsafe(`DELETE FROM ${table} WHERE id = $1`, [t.id]);
          return;
        }
        const rows = await sql().unsafe(`DELETE FROM ${table} WHERE id = $1 AND ${versionExpr} = $2 RETURNING 1 AS ok`, [
          t.id,
          opts.ifVersion,
        ]);
        if (rows.length > 0) return;
        const actual = await currentVersion(t);
        if (actual !== null) throw new ConflictError(STORE, 'delete', key, opts.ifVersion, actual);
      } catch (err) {
        throw fail('delete', key, err);
      }
    },

    async watch(onChange: (change: Change) => void, wopts: WatchOptions): Promise<StopWatching> {
      if (closed) throw new StoreError(STORE, 'watch', undefined, 'store is closed');
      await ensureInit();
      if (triggerProblem) throw new StoreError(STORE, 'watch', undefined, triggerProblem);
      const ch = channel!;
      const listenName = `${appName}:listen`;
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
          inst = makeSql({
            max: 1,
            idle_timeout: 0,
            max_lifetime: null,
            connection: { application_name: listenName },
            onnotify: (channelName: string, payload: string) => {
              if (stopped || inst !== current || channelName !== ch) return;
              const change = changeOf(payload, ready);
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
          report(fail('watch', undefined, err));
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
        report(fail('watch', undefined, err, `LISTEN on ${redacted}: `));
        schedule(backoffMs());
      };

      await subscribe();

      let stopping: Promise<void> | undefined;
      const stop: StopWatching = () =>
        (stopping ??= (async () => {
          stopped = true;
          clearTimeout(timer);
          watchers.delete(stop);
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
      watchers.add(stop);
      return stop;
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await Promise.all([...watchers].map((s) => s().catch(() => {})));
      const s = sqlInstance;
      sqlInstance = undefined;
      if (s) await s.end({ timeout: 5 }).catch(() => {});
    },
  };
  return store;
}
