import type { Logger } from 'pino';
import type { StoreError } from '../../core/errors.js';
import type { Options, Sql } from './settings.js';

export const STORE = 'postgres';
/** The one `config_store` row CLIProxyAPI reads. */
export const CONFIG_ID = 'config';

/** What the parts of the PostgreSQL store share: connections, table names, logging, error wrapping. */
export interface PgContext {
  /** Redacted store description (safe for logs). */
  readonly id: string;
  /** Redacted DSN (safe for messages). */
  readonly redacted: string;
  readonly schema: string | undefined;
  /** Quoted, schema-qualified table names. */
  readonly configTable: string;
  readonly authTable: string;
  readonly appName: string;
  readonly connectTimeout: number;
  readonly log: Logger | undefined;
  /** The shared query pool (created on first use). Throws StoreError once the store is closed. */
  sql(): Sql;
  /** A dedicated client (the LISTEN connection). `onnotify` is a real postgres.js option missing from its typings. */
  makeSql(extra: Options & { onnotify?: (channel: string, payload: string) => void }): Sql;
  /** Wraps any failure as a StoreError whose message has no secret in it. */
  fail(op: string, key: string | undefined, err: unknown, prefix?: string): StoreError;
  /** Scrubs secrets from a driver message. */
  sanitize(err: unknown): string;
  /** Set by a read-only init that found no tables: the store reads as empty, nothing is created. */
  tablesMissing: boolean;
}
