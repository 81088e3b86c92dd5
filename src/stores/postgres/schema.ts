import { createHash } from 'node:crypto';
import type postgres from 'postgres';
import type { PgContext } from './context.js';
import { errorCode } from './settings.js';

/**
 * Schema, tables and the change-notification trigger. The tables are CLIProxyAPI's, created with
 * its exact DDL when missing and never altered; the trigger and its function are ours.
 */

const FUNCTION_NAME = 'credsync_notify';
export const TRIGGER_NAME = 'credsync_notify';
const TRUNCATE_TRIGGER_NAME = 'credsync_notify_truncate';
const CHANNEL_PREFIX = 'credsync.';
const MAX_IDENTIFIER_BYTES = 63;

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

/** What `initSchema` learned: the channel to LISTEN on, or why change notification is unavailable. */
export interface SchemaState {
  readonly channel: string;
  readonly triggerProblem?: string;
}

/**
 * Creates the schema and CLIProxyAPI's tables when missing and installs (or repairs) the trigger.
 * Idempotent and serialised across processes by an advisory lock. A role that may use the tables but
 * not own them gets a `triggerProblem` instead of an error: one-shot commands still work.
 */
export async function initSchema(ctx: PgContext): Promise<SchemaState> {
  const { schema, log } = ctx;
  const CONFIG_TABLE = ctx.configTable;
  const AUTH_TABLE = ctx.authTable;
  const s = ctx.sql();
  let state: SchemaState | undefined;
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
      let triggerProblem: string | undefined;
      try {
        await tx.savepoint((sp) => installTriggers(sp, ctx, actualSchema, ch));
      } catch (err) {
        // A role that may use the tables but not own them: one-shot commands still work; watch() says why not.
        if (errorCode(err) !== '42501') throw ctx.fail('init', undefined, err, 'cannot install the change-notification trigger: ');
        const reason = ctx.sanitize(err);
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
      state = triggerProblem ? { channel: ch, triggerProblem } : { channel: ch };
    });
  } catch (err) {
    throw ctx.fail('init', undefined, err, `${ctx.id}: `);
  }
  return state!;
}

async function installTriggers(tx: postgres.TransactionSql<Record<string, never>>, ctx: PgContext, ns: string, ch: string): Promise<void> {
  const fn = `${quoteIdent(ns)}.${quoteIdent(FUNCTION_NAME)}`;
  const fnRows = await tx.unsafe(
    `SELECT p.prosrc AS src FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND p.proname = $2 AND p.pronargs = 0`,
    [ns, FUNCTION_NAME],
  );
  if (fnRows.length === 0 || fnRows[0]!.src !== FUNCTION_BODY) {
    await tx.unsafe(`CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $credsync$${FUNCTION_BODY}$credsync$`);
  }
  for (const table of [ctx.configTable, ctx.authTable]) {
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

/** Read-only start (`status`, `--dry-run`): connects and checks the tables exist; creates nothing. */
export async function checkSchema(ctx: PgContext): Promise<{ tablesExist: boolean }> {
  try {
    const rows = await ctx.sql().unsafe('SELECT to_regclass($1) IS NOT NULL AS c, to_regclass($2) IS NOT NULL AS a', [ctx.configTable, ctx.authTable]);
    return { tablesExist: Boolean(rows[0]!.c) && Boolean(rows[0]!.a) };
  } catch (err) {
    throw ctx.fail('init', undefined, err, `${ctx.id}: `);
  }
}
