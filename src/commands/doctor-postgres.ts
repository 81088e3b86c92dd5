import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { errorMessage } from '../core/errors.js';
import type { StoreSpec } from '../config/store-spec.js';
// The one store-specific import of the commands: the channel name and identifier quoting must be
// exactly the store's (see test/architecture.test.ts).
import { pgChannelFor, pgConnectionOptions, quoteIdent } from '../stores/registry.js';
import type { Check, KindCheckContext } from './doctor.js';

const TRIGGER = 'credsync_notify';
const TABLES = ['config_store', 'auth_store'] as const;
const PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] as const;
const ROUND_TRIP_TIMEOUT_MS = 5000;

/**
 * PostgreSQL checks, run with plain SQL over the configured DSN before the store itself is opened
 * (opening it re-installs a missing trigger when the role owns the tables): privileges on both tables,
 * the `credsync_notify` trigger present and enabled on both, a NOTIFY round trip on the store's
 * channel, and clock skew against `now()`.
 */
export async function postgresChecks(ctx: KindCheckContext): Promise<Check[]> {
  const spec = ctx.spec as Extract<StoreSpec, { kind: 'postgres' }>;
  const checks: Check[] = [];
  // The store's own reading of the DSN (both forms, sslmode, several hosts), so doctor connects as the daemon does.
  const base = pgConnectionOptions(spec.dsn).base;
  const sql = postgres({ ...base, max: 1, onnotice: () => {}, prepare: false, fetch_types: false, connect_timeout: 10, connection: { ...base.connection, application_name: 'credsync-doctor' } });
  try {
    let role = '';
    try {
      role = ((await sql.unsafe('SELECT current_user AS u'))[0]!.u as string) ?? '';
    } catch (err) {
      checks.push({ status: 'fail', check: 'postgres connect', detail: ctx.sanitize(errorMessage(err)), fix: 'check PGSTORE_DSN (host, port, database, user, password) and that the server accepts connections from this host' });
      return checks;
    }
    const qualified = (t: string): string => (spec.schema ? `${quoteIdent(spec.schema)}.${quoteIdent(t)}` : quoteIdent(t));
    const found: Array<{ name: string; oid: number | null; ns: string | null }> = [];
    for (const t of TABLES) {
      const row = (
        await sql.unsafe(
          'SELECT c.oid::int AS oid, n.nspname AS ns FROM (SELECT to_regclass($1) AS r) x LEFT JOIN pg_class c ON c.oid = x.r LEFT JOIN pg_namespace n ON n.oid = c.relnamespace',
          [qualified(t)],
        )
      )[0]!;
      found.push({ name: t, oid: (row.oid as number | null) ?? null, ns: (row.ns as string | null) ?? null });
    }
    const missing = found.filter((r) => r.oid === null).map((r) => r.name);
    if (missing.length) {
      checks.push({
        status: 'warn',
        check: 'postgres tables',
        detail: `${missing.join(', ')} not found${spec.schema ? ` in schema ${spec.schema}` : ' on the search_path'}`,
        fix: 'credsync creates them at its first start (the role needs CREATE on the schema), or run CLIProxyAPI once',
      });
      return checks;
    }
    const ns = found[0]!.ns!;
    const target = (t: string): string => `${quoteIdent(ns)}.${quoteIdent(t)}`;

    // Privileges.
    const lacking: string[] = [];
    for (const t of TABLES) {
      for (const p of PRIVILEGES) {
        const ok = (await sql.unsafe('SELECT has_table_privilege(current_user, to_regclass($1), $2) AS ok', [target(t), p]))[0]!.ok as boolean;
        if (!ok) lacking.push(`${p} on ${t}`);
      }
    }
    if (lacking.length) {
      const privs = [...new Set(lacking.map((l) => l.split(' ')[0]))].join(', ');
      checks.push({ status: 'fail', check: 'postgres privileges', detail: `role ${role} lacks ${lacking.join(', ')}`, fix: `GRANT ${privs} ON ${target('config_store')}, ${target('auth_store')} TO ${quoteIdent(role)};` });
    } else checks.push({ status: 'ok', check: 'postgres privileges', detail: `role ${role} has SELECT, INSERT, UPDATE, DELETE on ${ns}.config_store and ${ns}.auth_store` });

    // Trigger present and enabled on both tables.
    const channel = pgChannelFor(ns);
    const trig: Array<{ name: string; enabled: string | null }> = [];
    for (const t of TABLES) {
      const rows = await sql.unsafe('SELECT tgenabled AS enabled FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2 AND NOT tgisinternal', [target(t), TRIGGER]);
      trig.push({ name: target(t), enabled: rows.length ? String(rows[0]!.enabled) : null });
    }
    const absent = trig.filter((r) => r.enabled === null).map((r) => r.name);
    const disabled = trig.filter((r) => r.enabled === 'D').map((r) => r.name);
    if (absent.length || disabled.length) {
      const fixes: string[] = [];
      if (absent.length) fixes.push("start credsync (any command) as the tables' owner: it installs the trigger (this doctor run's own store check did so if it runs as the owner; run doctor again to confirm)");
      for (const t of disabled) fixes.push(`ALTER TABLE ${t} ENABLE TRIGGER ${TRIGGER};`);
      checks.push({
        status: 'fail',
        check: 'postgres trigger',
        detail: [absent.length ? `${TRIGGER} missing on ${absent.join(', ')}` : '', disabled.length ? `${TRIGGER} disabled on ${disabled.join(', ')}` : ''].filter(Boolean).join('; ') + ' (daemons will not hear changes)',
        fix: fixes.join('; '),
      });
    } else checks.push({ status: 'ok', check: 'postgres trigger', detail: `${TRIGGER} present and enabled on both tables (channel ${channel})` });

    // NOTIFY round trip on the channel (a payload every listener ignores: no put/delete op).
    const probe = randomBytes(8).toString('hex');
    const payload = JSON.stringify({ table: 'credsync_doctor', op: 'probe', id: probe });
    let heard = false;
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      let done!: () => void;
      const answered = new Promise<void>((resolve) => (done = resolve));
      const sub = await sql.listen(channel, (p) => {
        if (p === payload) {
          heard = true;
          done();
        }
      });
      try {
        await sql.unsafe('SELECT pg_notify($1, $2)', [channel, payload]);
        await Promise.race([answered, new Promise<void>((resolve) => (timer = setTimeout(resolve, ROUND_TRIP_TIMEOUT_MS)))]);
      } finally {
        clearTimeout(timer);
        await sub.unlisten().catch(() => {});
      }
    } catch {
      // reported below as no answer
    }
    checks.push(
      heard
        ? { status: 'ok', check: 'postgres notify', detail: `LISTEN/NOTIFY round trip on ${channel} in ${Date.now() - started} ms` }
        : { status: 'fail', check: 'postgres notify', detail: `no NOTIFY came back on ${channel} within ${ROUND_TRIP_TIMEOUT_MS} ms`, fix: 'connect directly to PostgreSQL, not through a transaction-pooling proxy (PgBouncer in transaction mode drops LISTEN)' },
    );

    // Clock skew.
    const t0 = Date.now();
    const now = (await sql.unsafe('SELECT extract(epoch from clock_timestamp()) * 1000 AS ms'))[0]!.ms as string | number;
    const t1 = Date.now();
    checks.push(skewCheck(Number(now) - (t0 + t1) / 2, t1 - t0));
  } catch (err) {
    checks.push({ status: 'fail', check: 'postgres checks', detail: ctx.sanitize(errorMessage(err)), fix: 'check PGSTORE_DSN and the role\'s rights on the schema' });
  } finally {
    await sql.end({ timeout: 5 }).catch(() => {});
  }
  return checks;
}

/** Clock skew between this host and the store: warn over 5 s, fail over 60 s. */
export function skewCheck(skewMs: number, rttMs: number): Check {
  const abs = Math.abs(skewMs);
  const detail = `store clock ${skewMs >= 0 ? 'ahead of' : 'behind'} this host by ${Math.round(abs)} ms (±${Math.round(rttMs / 2)} ms)`;
  if (abs > 60_000) return { status: 'fail', check: 'clock skew', detail, fix: 'synchronise the clocks (NTP/chrony) on this host and the database server' };
  if (abs > 5000) return { status: 'warn', check: 'clock skew', detail, fix: 'synchronise the clocks (NTP/chrony); expiry checks (prune) read this host\'s clock' };
  return { status: 'ok', check: 'clock skew', detail };
}
