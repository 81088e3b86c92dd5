import { readFileSync } from 'node:fs';
import type postgres from 'postgres';
import { scrubSecrets, unparseableLabel } from '../../core/redact.js';

/**
 * PostgreSQL connection settings: the DSN in either form libpq and pgx accept (URL and
 * `key=value`), turned into postgres.js options, plus the redaction of everything secret in it.
 *
 * Hand-written on purpose: `pg-connection-string` (the maintained parser of node-postgres) reads
 * only the URL form and a single host; CLIProxyAPI's users also pass pgx's `key=value` form and
 * multi-host URLs, which must keep working unchanged.
 */

export type Sql = postgres.Sql<Record<string, never>>;
export type Options = postgres.Options<Record<string, never>>;

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

/**
 * A label for the DSN that is safe to print anywhere: the DSN with its password replaced by `***` when
 * it parses cleanly, else only its scheme and host (`unparseableLabel`). Never throws.
 */
export function dsnLabel(dsn: string): string {
  let config: ConnectionConfig;
  try {
    config = connectionConfig(dsn);
  } catch {
    return unparseableLabel(dsn);
  }
  const label = redactDsn(dsn);
  return config.secrets.some((x) => label.includes(x) || label.includes(encodeURIComponent(x))) ? unparseableLabel(dsn) : label;
}

/** Passwords in the DSN (for the scrubber); empty when it does not parse. */
export function dsnSecrets(dsn: string): string[] {
  try {
    return connectionConfig(dsn).secrets;
  } catch {
    return [];
  }
}

/** Why the DSN cannot be used, without quoting any of it; null when it parses. */
export function dsnProblem(dsn: string): string | null {
  try {
    connectionConfig(dsn);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The DSN with its password (and other secrets) replaced by `***`. Use `dsnLabel`, which falls back safely. */
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

export interface ConnectionConfig {
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

export function connectionConfig(dsn: string): ConnectionConfig {
  const { params } = parseDsn(dsn);
  const secrets = [params.get('password'), params.get('sslpassword'), process.env.PGPASSWORD].filter((s): s is string => !!s && s.length >= 3);
  const base: Options = {};
  const hostList = (params.get('hostaddr') || params.get('host') || '').split(',').filter((h) => h !== '');
  const portList = (params.get('port') || '').split(',').map((p) => p.trim());
  const portOf = (i: number): number => {
    const raw = portList.length === 1 ? portList[0] : portList[i];
    if (!raw) return 5432;
    const p = Number(raw);
    if (!Number.isInteger(p) || p <= 0 || p > 65535) throw new Error('invalid port (not a number from 1 to 65535; a "?", "@", "/" or "#" in the password must be percent-encoded)');
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

export function sanitizeReason(err: unknown, secrets: readonly string[]): string {
  let reason: string;
  const e = err as { message?: unknown; code?: unknown; name?: unknown } | null;
  if (e && typeof e === 'object' && typeof e.message === 'string') {
    // Only the primary message: a PostgresError's detail/where can quote the offending content.
    reason = e.message || String(e.name ?? 'error');
    if (typeof e.code === 'string' && e.code && !reason.includes(e.code)) reason += ` (${e.code})`;
  } else {
    reason = String(err);
  }
  return scrubSecrets(reason, secrets);
}

export function errorCode(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** `host:port` of the first server, for messages. */
export function hostLabel(c: ConnectionConfig): string {
  const b = c.base as { host?: string | string[]; port?: number | number[]; path?: string };
  if (b.path) return b.path;
  const host = Array.isArray(b.host) ? b.host.join(',') : (b.host ?? 'localhost');
  const port = Array.isArray(b.port) ? b.port[0] : (b.port ?? 5432);
  return `${host}:${port}`;
}

/**
 * Classifies a PostgreSQL or network failure once, at the boundary: `config` when retrying cannot fix
 * it (wrong password, missing database or role, no privilege to create the schema), `item` when it
 * concerns one row only (content the server refuses, no privilege on a write), else an outage with a
 * hint. `fix` names the setting and what to do.
 */
export function classify(code: string | undefined, op: string, hasKey: boolean, where: string): { kind: 'config' | 'item' | 'outage'; fix: string } | null {
  switch (code) {
    case '28P01':
      return { kind: 'config', fix: 'the password was refused: check the password in PGSTORE_DSN (or PGPASSWORD)' };
    case '28000':
      return { kind: 'config', fix: 'the role was refused: check the user in PGSTORE_DSN exists and pg_hba.conf lets it connect' };
    case '3D000':
      return { kind: 'config', fix: 'the database does not exist: create it, or fix the database name in PGSTORE_DSN' };
    case '42501':
      return hasKey
        ? { kind: 'item', fix: 'permission denied for this write: grant SELECT, INSERT, UPDATE, DELETE on config_store and auth_store to the role in PGSTORE_DSN' }
        : { kind: 'config', fix: `permission denied during ${op}: run credsync once as the owner of the schema, or grant CREATE on it (PGSTORE_SCHEMA) to the role in PGSTORE_DSN` };
    case '3F000':
      return { kind: 'config', fix: 'the schema does not exist and could not be created: check PGSTORE_SCHEMA' };
    case '22P05':
    case '22P02':
    case '22021':
    case '54000':
    case '22001':
      return hasKey ? { kind: 'item', fix: 'the server refuses this content (auth_store.content is JSONB): fix the file' } : null;
    case 'CONNECT_TIMEOUT':
      return { kind: 'outage', fix: `no answer from ${where}: check the host and port in PGSTORE_DSN and the network path` };
    case 'ECONNREFUSED':
      return { kind: 'outage', fix: `connection refused by ${where}: is PostgreSQL running there (PGSTORE_DSN)?` };
    case 'NO_HANDSHAKE':
    case 'ECONNRESET':
      return { kind: 'outage', fix: `connection reset by ${where}: is it a PostgreSQL server (PGSTORE_DSN host and port)?` };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return { kind: 'outage', fix: `host of PGSTORE_DSN not found (${where}): check the name` };
    default:
      return null;
  }
}
