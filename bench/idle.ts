/**
 * Idle: database statements issued by an idle daemon (1,000 credentials, nothing changing).
 *
 * Two daemons run side by side, each alone in its own database so the server's per-database
 * statistics see nothing else: A with the default reconcile interval (60 s), observed in a 30 s window
 * that lies between two reconciles; B with CREDSYNC_RECONCILE_INTERVAL=10s, observed over the same
 * window (three periodic reconciles). Counted with pg_stat_statements (every statement, utility ones
 * included; the private server is restarted once to preload it) and with pg_stat_database
 * (transactions, sessions). The observer connects to another database and is never counted.
 *
 * On the private server autovacuum is switched off meanwhile: its workers visit every active database
 * once per autovacuum_naptime and their transactions would count.
 *
 * Floor: 0 statements/min between reconciles (nothing polls); 1 statement per reconcile (one listing).
 */
import { setTimeout as sleepMs } from 'node:timers/promises';
import postgres from 'postgres';
import { onCleanup, tempDir } from './lib/cleanup.js';
import { credId, makeCred, SAMPLE_CONFIG } from './lib/creds.js';
import { countJson } from './lib/fsx.js';
import { cpuMs, Daemon, pgEnv, rssKb, waitFor } from './lib/daemon.js';
import { createStoreSchema, ensurePgStatStatements, putConfig, quoteIdent, uniqueName, upsertAuths, withDatabase, type Sql } from './lib/pg.js';
import type { Bench, BenchContext, BenchOutcome, Figure } from './lib/report.js';
import { round } from './lib/stats.js';
import { join } from 'node:path';

const SETTLE_MS = 12_000;

interface StatementRow {
  readonly key: string;
  readonly query: string;
  readonly calls: number;
  readonly rows: number;
  readonly execMs: number;
}

interface Snapshot {
  readonly at: number;
  readonly statements: Map<string, StatementRow> | null;
  readonly xacts: number;
  readonly sessions: number | null;
  readonly cpuMs: number | null;
}

interface PhaseResult {
  readonly windowS: number;
  readonly statements: number | null;
  readonly statementsPerMin: number | null;
  readonly reconciles: number | null;
  readonly rowsReturned: number | null;
  readonly execMs: number | null;
  readonly topStatements: Array<{ query: string; calls: number; rows: number; meanMs: number }>;
  readonly xacts: number;
  readonly xactsPerMin: number;
  readonly sessions: number | null;
  readonly cpuMsPerMin: number | null;
  readonly rssMiB: number | null;
}

/** The listing query of a full reconcile (reads both tables, ordered). */
const isListing = (q: string): boolean => /UNION ALL/i.test(q) && /ORDER BY/i.test(q) && /config_store/.test(q) && /auth_store/.test(q);

async function snapshot(observer: Sql, dbOid: number, pss: boolean, pid: number): Promise<Snapshot> {
  const [db] = await observer.unsafe(
    `SELECT (xact_commit + xact_rollback)::float8 AS x, sessions::float8 AS s FROM pg_stat_database WHERE datid = $1`,
    [dbOid],
  );
  let statements: Map<string, StatementRow> | null = null;
  if (pss) {
    const rows = await observer.unsafe(
      `SELECT userid::text || ':' || queryid::text || ':' || toplevel::text AS k, query, calls::float8 AS c, rows::float8 AS r, total_exec_time AS t
         FROM pg_stat_statements WHERE dbid = $1`,
      [dbOid],
    );
    statements = new Map(rows.map((r) => [r.k as string, { key: r.k as string, query: r.query as string, calls: r.c as number, rows: r.r as number, execMs: r.t as number }]));
  }
  return { at: performance.now(), statements, xacts: db!.x as number, sessions: (db!.s as number | null) ?? null, cpuMs: await cpuMs(pid) };
}

function phase(s1: Snapshot, s2: Snapshot, rss: number | null): PhaseResult {
  const windowS = (s2.at - s1.at) / 1000;
  const perMin = (v: number): number => (v / windowS) * 60;
  let statements: number | null = null;
  let reconciles: number | null = null;
  let rowsReturned: number | null = null;
  let execMs: number | null = null;
  const top: PhaseResult['topStatements'] = [];
  if (s1.statements && s2.statements) {
    statements = reconciles = rowsReturned = execMs = 0;
    for (const [k, r2] of s2.statements) {
      const r1 = s1.statements.get(k);
      const calls = r2.calls - (r1?.calls ?? 0);
      if (calls <= 0) continue;
      const rows = r2.rows - (r1?.rows ?? 0);
      const ms = r2.execMs - (r1?.execMs ?? 0);
      statements += calls;
      rowsReturned += rows;
      execMs += ms;
      if (isListing(r2.query)) reconciles += calls;
      top.push({ query: r2.query.replace(/\s+/g, ' ').slice(0, 160), calls, rows, meanMs: round(ms / calls) });
    }
    top.sort((a, b) => b.calls - a.calls);
  }
  const xacts = s2.xacts - s1.xacts;
  return {
    windowS: round(windowS, 1),
    statements,
    statementsPerMin: statements === null ? null : round(perMin(statements), 2),
    reconciles,
    rowsReturned,
    execMs: execMs === null ? null : round(execMs),
    topStatements: top.slice(0, 10),
    xacts,
    xactsPerMin: round(perMin(xacts), 2),
    sessions: s1.sessions === null || s2.sessions === null ? null : s2.sessions - s1.sessions,
    cpuMsPerMin: s1.cpuMs === null || s2.cpuMs === null ? null : round(perMin(s2.cpuMs - s1.cpuMs)),
    rssMiB: rss === null ? null : round(rss / 1024, 1),
  };
}

/** A database of its own with the store's tables and 1,000 credentials; dropped at cleanup. */
async function makeDatabase(ctx: BenchContext, name: string, n: number): Promise<{ url: string; oid: number; schema: string }> {
  await ctx.admin.unsafe(`CREATE DATABASE ${quoteIdent(name)}`);
  onCleanup(`drop database ${name}`, async () => {
    await ctx.admin.unsafe(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  });
  const url = withDatabase(ctx.pg.url, name);
  const sql = postgres(url, { max: 1, onnotice: () => {}, prepare: false, fetch_types: false }) as unknown as Sql;
  const schema = 'credsync';
  try {
    // The schema is dropped with the database: createStoreSchema's own cleanup is harmless.
    await createStoreSchema(sql, url, schema);
    const creds = Array.from({ length: n }, (_, i) => makeCred(i));
    await upsertAuths(
      sql,
      schema,
      creds.map((c, i) => ({ id: credId(i), content: JSON.stringify(c) })),
    );
    await putConfig(sql, schema, SAMPLE_CONFIG);
    // Leave autovacuum nothing to do: its workers' transactions would count in pg_stat_database.
    await sql.unsafe(`VACUUM ANALYZE ${quoteIdent(schema)}.auth_store`);
    await sql.unsafe(`VACUUM ANALYZE ${quoteIdent(schema)}.config_store`);
  } finally {
    await sql.end({ timeout: 2 });
  }
  const [r] = await ctx.admin.unsafe(`SELECT oid::int AS oid FROM pg_database WHERE datname = $1`, [name]);
  return { url, oid: r!.oid as number, schema };
}

export const idleBench: Bench = {
  name: 'idle',
  title: 'Idle: database statements issued by an idle daemon',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const n = ctx.quick ? 200 : 1000;
    const windowMs = ctx.quick ? 12_000 : Number(process.env.BENCH_IDLE_WINDOW_S ?? 30) * 1000;
    const intervalB = 10;
    const notes: string[] = [];
    const pss = await ensurePgStatStatements(ctx.pg);
    if (!pss.ok) notes.push(`pg_stat_statements unavailable (${pss.why}): statements are not counted, only transactions`);
    else if (ctx.pg.embedded) notes.push('the private server was restarted once with shared_preload_libraries=pg_stat_statements');

    // The restart (if any) dropped the admin connection: postgres.js reconnects on a later query.
    await waitFor('admin connection after restart', () => ctx.admin.unsafe('SELECT 1').then(() => true), 15_000, 100);
    if (ctx.pg.embedded) {
      // Autovacuum workers visit every database with activity once per autovacuum_naptime (60 s), and
      // their transactions count in pg_stat_database: switch it off on the private server meanwhile.
      await ctx.admin.unsafe('ALTER SYSTEM SET autovacuum = off');
      await ctx.admin.unsafe('SELECT pg_reload_conf()');
      onCleanup('re-enable autovacuum', async () => {
        await ctx.admin.unsafe('ALTER SYSTEM RESET autovacuum');
        await ctx.admin.unsafe('SELECT pg_reload_conf()');
      });
      notes.push('autovacuum was switched off on the private server during this benchmark (its workers would count as transactions)');
    } else {
      notes.push("transactions may include autovacuum workers' visits (once per autovacuum_naptime per database); statements do not");
    }
    const dbA = await makeDatabase(ctx, uniqueName('bench_idle_a'), n);
    const dbB = await makeDatabase(ctx, uniqueName('bench_idle_b'), n);
    const dirA = await tempDir('idle-a');
    const dirB = await tempDir('idle-b');
    ctx.log(`  starting daemon A (default interval) and daemon B (CREDSYNC_RECONCILE_INTERVAL=${intervalB}s), ${n} credentials each`);
    const [a, b] = await Promise.all([
      Daemon.start('A', pgEnv(dbA.url, dbA.schema, dirA.path)),
      Daemon.start('B', { ...pgEnv(dbB.url, dbB.schema, dirB.path), CREDSYNC_RECONCILE_INTERVAL: `${intervalB}s` }),
    ]);
    const startedAt = performance.now();
    await waitFor('mirrors complete', async () => (await countJson(join(dirA.path, 'auths'))) === n && (await countJson(join(dirB.path, 'auths'))) === n, 60_000, 100);
    // Let start-up work and its statistics settle (idle backends flush pg_stat_database within ~1 s).
    await sleepMs(Math.max(0, SETTLE_MS - (performance.now() - startedAt)));
    ctx.log(`  observing for ${windowMs / 1000} s`);
    const [a1, b1] = [await snapshot(ctx.admin, dbA.oid, pss.ok, a.pid), await snapshot(ctx.admin, dbB.oid, pss.ok, b.pid)];
    await sleepMs(windowMs);
    // Give the last statistics a moment to be flushed by idle backends.
    await sleepMs(1500);
    const [a2, b2] = [await snapshot(ctx.admin, dbA.oid, pss.ok, a.pid), await snapshot(ctx.admin, dbB.oid, pss.ok, b.pid)];
    const pa = phase(a1, a2, await rssKb(a.pid));
    const pb = phase(b1, b2, await rssKb(b.pid));
    const aliveWindowEnd = performance.now() - startedAt;
    await Promise.all([a.stop(), b.stop()]);
    if (aliveWindowEnd > 58_000) notes.push(`the window of A ended ${(aliveWindowEnd / 1000).toFixed(0)} s after its start: it may include A's first periodic reconcile`);

    const perReconcile = pb.statements !== null && pb.reconciles ? pb.statements / pb.reconciles : null;
    const execPerReconcile = pb.execMs !== null && pb.reconciles ? pb.execMs / pb.reconciles : null;
    const xactPerReconcile = pb.reconciles ? pb.xacts / pb.reconciles : null;
    const figures: Figure[] = [];
    if (pa.statementsPerMin !== null) figures.push({ label: 'A: statements/min between reconciles', unit: '/min', value: pa.statementsPerMin, floor: 0, floorName: 'zero' });
    figures.push({ label: 'A: transactions/min between reconciles', unit: '/min', value: pa.xactsPerMin, floor: 0, floorName: 'zero' });
    if (perReconcile !== null) {
      figures.push({ label: 'B: statements per periodic reconcile', unit: '', value: perReconcile, floor: 1, floorName: 'one-listing' });
      figures.push({ label: 'statements/min at default 60 s interval', unit: '/min', value: (pa.statementsPerMin ?? 0) + perReconcile, floor: 1, floorName: 'one-listing' });
    } else if (xactPerReconcile !== null) {
      figures.push({ label: 'B: transactions per periodic reconcile', unit: '', value: xactPerReconcile, floor: 1, floorName: 'one-listing' });
    }
    if (execPerReconcile !== null) figures.push({ label: `B: server exec time per reconcile (${n} items)`, unit: 'ms', value: execPerReconcile });
    if (pa.cpuMsPerMin !== null) figures.push({ label: 'A: daemon CPU while idle', unit: 'ms/min', value: pa.cpuMsPerMin });
    if (pb.cpuMsPerMin !== null) figures.push({ label: 'B: daemon CPU (10 s interval)', unit: 'ms/min', value: pb.cpuMsPerMin });
    if (pa.rssMiB !== null) figures.push({ label: 'A: daemon RSS while idle', unit: 'MiB', value: pa.rssMiB });
    return {
      figures,
      floors: {
        zero: 'nothing to do: no statement and no transaction between reconciles',
        'one-listing': 'a full reconcile needs at least one statement (the listing of both tables)',
      },
      details: {
        credentialsPerDaemon: n,
        pgStatStatements: pss.ok ? 'yes' : pss.why,
        daemonA: { reconcileInterval: 'default (60 s)', ...pa },
        daemonB: { reconcileInterval: `${intervalB} s`, ...pb, statementsPerReconcile: perReconcile, transactionsPerReconcile: xactPerReconcile },
      },
      notes,
    };
  },
};
