import postgres from 'postgres';
import type { Logger } from 'pino';
import { ItemRejectedError, StoreConfigError, StoreError } from '../../core/errors.js';
import type { Change, InitOptions, StopWatching, Store, WatchOptions } from '../../core/store.js';
import { STORE, type PgContext } from './context.js';
import { listen } from './listener.js';
import { queries } from './queries.js';
import { checkSchema, initSchema, quoteIdent, type SchemaState } from './schema.js';
import { classify, connectionConfig, dsnLabel, errorCode, hostLabel, sanitizeReason, type ConnectionConfig, type Options, type Sql } from './settings.js';

export { pgChannelFor, quoteIdent } from './schema.js';
export { dsnLabel, dsnProblem, dsnSecrets, redactDsn } from './settings.js';

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

const DEFAULT_CONNECT_TIMEOUT_S = 10;
const DEFAULT_APP_NAME = 'credsync';

export function createPostgresStore(options: PostgresStoreOptions): Store {
  const redacted = dsnLabel(options.dsn);
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

  let closed = false;
  let sqlInstance: Sql | undefined;

  const where = config ? hostLabel(config) : 'the server';
  const fail = (op: string, key: string | undefined, err: unknown, prefix = ''): StoreError => {
    if (err instanceof StoreError) return err;
    const code = errorCode(err);
    const reason = prefix + sanitizeReason(err, secrets);
    const cause = Object.assign(new Error(reason), { code });
    const config = classify(code, op, key !== undefined, where);
    if (config?.kind === 'config') return new StoreConfigError(STORE, op, `${reason}`, config.fix, { cause });
    if (config?.kind === 'item') return new ItemRejectedError(STORE, op, key, `${reason}; ${config.fix}`, { cause });
    return new StoreError(STORE, op, key, config ? `${reason} — ${config.fix}` : reason, { cause });
  };

  const makeSql: PgContext['makeSql'] = (extra) => {
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

  const ctx: PgContext = {
    id,
    redacted,
    schema,
    configTable: qual('config_store'),
    authTable: qual('auth_store'),
    appName,
    connectTimeout,
    log,
    sql: () => {
      if (closed) throw new StoreError(STORE, 'query', undefined, 'store is closed');
      return (sqlInstance ??= makeSql({ max: options.maxConnections ?? 4, idle_timeout: 60 }));
    },
    makeSql,
    fail,
    sanitize: (err) => sanitizeReason(err, secrets),
    tablesMissing: false,
  };

  let initPromise: Promise<SchemaState> | undefined;
  const ensureInit = (): Promise<SchemaState> =>
    (initPromise ??= initSchema(ctx).catch((err: unknown) => {
      initPromise = undefined;
      throw err;
    }));
  const watchers = new Set<StopWatching>();

  /**
   * postgres.js keeps reconnecting when something that is not PostgreSQL accepts the connection and
   * closes it: start-up is bounded, so a wrong port fails with a reason instead of hanging.
   */
  const bounded = <T>(p: Promise<T>): Promise<T> => {
    const ms = (connectTimeout + 2) * 1000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(fail('init', undefined, Object.assign(new Error(`no PostgreSQL handshake within ${ms / 1000} s`), { code: 'NO_HANDSHAKE' }))), ms);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  };

  return {
    name: STORE,
    capabilities: { cas: 'enforced', watch: 'push' },
    id,

    async init(o?: InitOptions): Promise<void> {
      if (closed) throw new StoreError(STORE, 'init', undefined, 'store is closed');
      if (o?.readOnly) {
        ctx.tablesMissing = !(await bounded(checkSchema(ctx))).tablesExist;
        return;
      }
      ctx.tablesMissing = false;
      // Always run (idempotent): a second init re-checks schema, tables and triggers.
      initPromise = undefined;
      await bounded(ensureInit());
    },

    ...queries(ctx),

    async watch(onChange: (change: Change) => void, wopts: WatchOptions): Promise<StopWatching> {
      if (closed) throw new StoreError(STORE, 'watch', undefined, 'store is closed');
      const { channel, triggerProblem } = await ensureInit();
      if (triggerProblem) throw new StoreError(STORE, 'watch', undefined, triggerProblem);
      const stop = await listen(ctx, channel, onChange, wopts);
      const tracked: StopWatching = async () => {
        watchers.delete(tracked);
        await stop();
      };
      watchers.add(tracked);
      return tracked;
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
}
