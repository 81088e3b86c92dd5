/**
 * Issue 8 items 1–3: no lost update under concurrency or crashes, against real daemons (dist/cli.js)
 * on a real PostgreSQL, audited from the outside.
 *
 * Every write any writer makes carries a per-key counter `n` taken from one sequence shared by all
 * writers of the test (and a `last_refresh` that grows with it where the scenario has timestamps), so
 * "newer" is well defined across mirrors. The audit reads:
 * - every write made (key, n, where);
 * - every row version the store ever held (an AFTER trigger of the test's own copies each row into an
 *   audit table — what CLIProxyAPI's tables allow: extra triggers and tables, columns untouched);
 * - every copy kept under `<mirror>/.credsync/conflicts/`;
 * - writes a mirror's writer found replaced by an older copy in its own file (it reads the file before
 *   each write).
 * It asserts: at the end each key holds its newest write everywhere (store and every mirror), and every
 * write a mirror's writer found replaced by an older copy reached the store, or was superseded by a newer
 * write that reached the store, or was kept under conflicts/ (writes replaced by a newer copy are
 * superseded by definition). It also prints how many replaced writes were only "superseded later": those
 * never reached the store nor conflicts/ — the issue's "overwritten in its own mirror by an older version".
 * With the guarded mirror write they come only from the one window no system call closes (another
 * process's rename between credsync's link and rename, see src/fs/atomic.ts guardedWrite): seen in 1 of
 * 6 runs on a heavily loaded 2-core machine, against 5–17 per run before. The SIGKILL test, which pulls
 * nothing, asserts none at all.
 * Correctness only: nothing here is timed.
 *
 * Needs dist/ (npx tsc -p tsconfig.build.json).
 */
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { processGroup, type Daemon } from '../../support/daemon.js';
import { adminSql, freshSchema, quoteIdent, type AdminSql, type FreshSchema } from '../../support/pg-server.js';
import { tempDir } from '../../support/tmp.js';
import { sleep, waitFor } from '../../support/wait.js';
import { authPath, CLIPROXY_UPSERT, readJson, stderrTails, writeConfig , pgDaemonEnv } from './helpers.js';

const pgUrl = inject('pgUrl');
const skipReason = inject('pgSkipReason');

const env = (schema: string, mirror: string, extra: Record<string, string> = {}): Record<string, string> => pgDaemonEnv(pgUrl, schema, mirror, extra);

const keyName = (i: number): string => `k${String(i).padStart(2, '0')}.json`;
const T0 = Date.UTC(2026, 0, 1);
const refreshOf = (n: number): string => new Date(T0 + n * 1000).toISOString();

interface Cred {
  type: string;
  id: string;
  n: number;
  by: string;
  access_token: string;
  last_refresh?: string;
}

interface WriteRec {
  readonly key: string;
  readonly n: number;
  readonly by: string;
}

/** One global sequence per key: every write and delete of the test takes the next number. */
class Counters {
  private readonly next = new Map<string, number>();
  take(key: string): number {
    const n = (this.next.get(key) ?? 0) + 1;
    this.next.set(key, n);
    return n;
  }
}

/** What the whole test did and saw. */
class Audit {
  readonly writes: WriteRec[] = [];
  readonly deletes: WriteRec[] = [];
  /** Writes a mirror's writer found replaced in its own file by a copy with a lower counter. */
  readonly replaced: Array<WriteRec & { sawN: number }> = [];
}

const cred = (key: string, n: number, by: string, timestamps: boolean): Cred => ({
  type: 'claude',
  id: key,
  n,
  by,
  access_token: `at-${key}-${n}`,
  ...(timestamps ? { last_refresh: refreshOf(n) } : {}),
});

/**
 * A proxy rewriting its credentials: every 10–60 ms one key, written to a temp file and renamed over
 * the credential (what CLIProxyAPI does). Before each write it reads the file: an older counter than
 * its own last write of that key means a write of its was replaced.
 */
async function proxyWriter(o: { mirror: string; by: string; keys: string[]; until: number; counters: Counters; audit: Audit; timestamps: boolean }): Promise<void> {
  const lastOwn = new Map<string, number>();
  let seq = 0;
  while (Date.now() < o.until) {
    const key = o.keys[Math.floor(Math.random() * o.keys.length)]!;
    const p = authPath(o.mirror, key);
    const cur = (await readJson(p)) as Partial<Cred> | undefined;
    const own = lastOwn.get(key);
    if (own !== undefined && typeof cur?.n === 'number' && cur.n < own) o.audit.replaced.push({ key, n: own, by: o.by, sawN: cur.n });
    const n = o.counters.take(key);
    const tmp = `${p}.${o.by}-${++seq}.tmp`;
    await writeFile(tmp, JSON.stringify(cred(key, n, o.by, o.timestamps), null, 2));
    await rename(tmp, p);
    o.audit.writes.push({ key, n, by: o.by });
    lastOwn.set(key, n);
    await sleep(10 + Math.random() * 50);
  }
}

/** CLIProxyAPI's Go store beside the daemons: blind upserts (its exact statement) and plain deletes. */
async function blindWriter(o: { sql: AdminSql; schema: string; keys: string[]; until: number; counters: Counters; audit: Audit }): Promise<void> {
  while (Date.now() < o.until) {
    const key = o.keys[Math.floor(Math.random() * o.keys.length)]!;
    const n = o.counters.take(key);
    if (Math.random() < 0.25) {
      await o.sql.unsafe(`DELETE FROM ${quoteIdent(o.schema)}.auth_store WHERE id = $1`, [key]);
      o.audit.deletes.push({ key, n, by: 'sql' });
    } else {
      await o.sql.unsafe(CLIPROXY_UPSERT(o.schema, 'auth_store'), [key, cred(key, n, 'sql', true) as never]);
      o.audit.writes.push({ key, n, by: 'sql' });
    }
    await sleep(20 + Math.random() * 40);
  }
}

/** The tables as CLIProxyAPI creates them, plus the test's audit of every row version. */
async function createAudited(sql: AdminSql, schema: string): Promise<void> {
  const s = quoteIdent(schema);
  await sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${s}`);
  await sql.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.config_store (id TEXT PRIMARY KEY, content TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())`);
  await sql.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.auth_store (id TEXT PRIMARY KEY, content JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())`);
  await sql.unsafe(`CREATE TABLE ${s}.test_audit (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL, op TEXT NOT NULL, n BIGINT)`);
  await sql.unsafe(`CREATE FUNCTION ${s}.test_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        INSERT INTO ${s}.test_audit (id, op, n) VALUES (OLD.id, 'delete', NULL);
      ELSE
        INSERT INTO ${s}.test_audit (id, op, n) VALUES (NEW.id, lower(TG_OP), (NEW.content->>'n')::bigint);
      END IF;
      RETURN NULL;
    END $$`);
  await sql.unsafe(`CREATE TRIGGER test_audit AFTER INSERT OR UPDATE OR DELETE ON ${s}.auth_store FOR EACH ROW EXECUTE FUNCTION ${s}.test_audit_fn()`);
}

/** Every counter each key ever had in the store. */
async function storeHistory(sql: AdminSql, schema: string): Promise<Map<string, Set<number>>> {
  const rows = await sql.unsafe(`SELECT id, n FROM ${quoteIdent(schema)}.test_audit WHERE n IS NOT NULL`);
  const out = new Map<string, Set<number>>();
  for (const r of rows) {
    const id = r.id as string;
    const set = out.get(id) ?? new Set<number>();
    set.add(Number(r.n));
    out.set(id, set);
  }
  return out;
}

async function storeNow(sql: AdminSql, schema: string): Promise<Map<string, number>> {
  const rows = await sql.unsafe(`SELECT id, (content->>'n')::bigint AS n FROM ${quoteIdent(schema)}.auth_store`);
  return new Map(rows.map((r) => [r.id as string, Number(r.n)]));
}

async function mirrorNow(mirror: string, keys: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const k of keys) {
    const c = (await readJson(authPath(mirror, k))) as Partial<Cred> | undefined;
    if (typeof c?.n === 'number') out.set(k, c.n);
  }
  return out;
}

/** `key:n` of every copy kept under a mirror's conflicts/. */
async function keptCopies(mirrors: string[]): Promise<Map<string, Set<number>>> {
  const out = new Map<string, Set<number>>();
  for (const m of mirrors) {
    const dir = join(m, '.credsync', 'conflicts');
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      try {
        const c = JSON.parse(await readFile(join(dir, name), 'utf8')) as Partial<Cred>;
        if (typeof c.id !== 'string' || typeof c.n !== 'number') continue;
        const set = out.get(c.id) ?? new Set<number>();
        set.add(c.n);
        out.set(c.id, set);
      } catch {
        /* not one of ours */
      }
    }
  }
  return out;
}

const show = (m: Map<string, number>, keys: string[]): string => keys.map((k) => `${k}=${m.get(k) ?? '-'}`).join(' ');

/** Waits until the store and every mirror hold the same counter (or nothing) for every key, twice in a row. */
async function quiescence(sql: AdminSql, schema: string, mirrors: string[], keys: string[], timeoutMs: number): Promise<void> {
  let stableOnce = false;
  let last = '';
  await waitFor(
    'store and every mirror to agree',
    async () => {
      const views = [await storeNow(sql, schema), ...(await Promise.all(mirrors.map((m) => mirrorNow(m, keys))))];
      last = views.map((v) => show(v, keys)).join('\n');
      const agree = keys.every((k) => views.every((v) => v.get(k) === views[0]!.get(k)));
      if (!agree) {
        stableOnce = false;
        return false;
      }
      if (stableOnce) return true;
      stableOnce = true;
      await sleep(400);
      return false;
    },
    timeoutMs,
    100,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; store, then each mirror:\n${last}`);
  });
}

interface Verdict {
  writes: number;
  replaced: number;
  replacedReachedStore: number;
  replacedSupersededOnly: number;
  replacedKept: number;
  keptTotal: number;
  problems: string[];
}

/**
 * The audit. For each key: the final value everywhere is the newest write (or the key is absent
 * everywhere and a delete came after the newest write); every write replaced by an older copy reached
 * the store, or a newer write reached the store, or it was kept under conflicts/.
 */
async function judge(sql: AdminSql, schema: string, mirrors: string[], keys: string[], audit: Audit): Promise<Verdict> {
  const history = await storeHistory(sql, schema);
  const kept = await keptCopies(mirrors);
  const finalStore = await storeNow(sql, schema);
  const finals = await Promise.all(mirrors.map((m) => mirrorNow(m, keys)));
  const problems: string[] = [];
  for (const k of keys) {
    const maxWrite = Math.max(0, ...audit.writes.filter((w) => w.key === k).map((w) => w.n));
    const maxDelete = Math.max(0, ...audit.deletes.filter((w) => w.key === k).map((w) => w.n));
    const views = [finalStore, ...finals];
    const where = ['store', ...mirrors.map((_, i) => `mirror ${i}`)];
    views.forEach((v, i) => {
      const got = v.get(k);
      if (got === undefined) {
        if (maxWrite > maxDelete) problems.push(`${k}: absent in ${where[i]} but its newest write (n=${maxWrite}) came after every delete (n=${maxDelete || '-'})`);
      } else if (got !== maxWrite) {
        problems.push(`${k}: ${where[i]} holds n=${got}, the newest write is n=${maxWrite}`);
      }
    });
  }
  let reached = 0;
  let supersededOnly = 0;
  let keptCount = 0;
  for (const r of audit.replaced) {
    const seen = history.get(r.key) ?? new Set<number>();
    if (seen.has(r.n)) reached++;
    else if (kept.get(r.key)?.has(r.n)) keptCount++;
    else if ([...seen].some((n) => n > r.n)) supersededOnly++;
    else problems.push(`${r.key}: write n=${r.n} by ${r.by} was replaced in its mirror by the older n=${r.sawN}, never reached the store, was not superseded by a newer write that did, and was not kept`);
  }
  const keptTotal = [...kept.values()].reduce((a, s) => a + s.size, 0);
  return { writes: audit.writes.length, replaced: audit.replaced.length, replacedReachedStore: reached, replacedSupersededOnly: supersededOnly, replacedKept: keptCount, keptTotal, problems };
}

describe.skipIf(!pgUrl)(`no lost update under concurrency or crashes (issue 8 items 1–3)${pgUrl ? '' : ` (skipped: ${skipReason})`}`, () => {
  const g = processGroup('each');
  let root: { path: string; remove(): Promise<void> };
  let sql: AdminSql;
  const schemas: FreshSchema[] = [];

  beforeAll(async () => {
    root = await tempDir('credsync-pg-lost-');
    sql = adminSql(pgUrl);
  });
  afterAll(async () => {
    for (const s of schemas) await s.drop().catch(() => {});
    await sql?.end({ timeout: 5 });
    await root?.remove();
  });

  /** A fresh audited schema and `n` mirror directories, the first seeded with the keys. */
  async function setup(mirrorCount: number, keys: string[], timestamps: boolean, counters: Counters, audit: Audit): Promise<{ ns: FreshSchema; mirrors: string[] }> {
    const ns = freshSchema(pgUrl);
    schemas.push(ns);
    await createAudited(sql, ns.schema);
    const mirrors = Array.from({ length: mirrorCount }, (_, i) => join(root.path, ns.schema, String.fromCharCode(97 + i)));
    await writeConfig(mirrors[0]!, 'port: 8317\n');
    for (const k of keys) {
      const n = counters.take(k);
      await mkdir(join(mirrors[0]!, 'auths'), { recursive: true });
      await writeFile(authPath(mirrors[0]!, k), JSON.stringify(cred(k, n, 'seed', timestamps)));
      audit.writes.push({ key: k, n, by: 'seed' });
    }
    return { ns, mirrors };
  }

  it('three daemons, 20 credentials rewritten every 10–60 ms in every mirror for 20 s: the newest write wins everywhere, every replaced write is superseded or kept', async () => {
    const keys = Array.from({ length: 20 }, (_, i) => keyName(i));
    const counters = new Counters();
    const audit = new Audit();
    const { ns, mirrors } = await setup(3, keys, true, counters, audit);
    const daemons: Daemon[] = [];
    onTestFailed(() => console.error(stderrTails(daemons)));
    for (const [i, m] of mirrors.entries()) daemons.push(await g.start({ env: env(ns.schema, m), name: String.fromCharCode(65 + i) }));
    await quiescence(sql, ns.schema, mirrors, keys, 15_000);

    const until = Date.now() + 20_000;
    await Promise.all(mirrors.map((m, i) => proxyWriter({ mirror: m, by: String.fromCharCode(65 + i), keys, until, counters, audit, timestamps: true })));
    await quiescence(sql, ns.schema, mirrors, keys, 15_000);

    const v = await judge(sql, ns.schema, mirrors, keys, audit);
    console.log(
      `[lost-updates three daemons] writes=${v.writes} replaced-in-mirror=${v.replaced} (reached store ${v.replacedReachedStore}, kept ${v.replacedKept}, lost but superseded later ${v.replacedSupersededOnly}); copies kept under conflicts/=${v.keptTotal}; conflicts logged=${daemons.map((d) => d.messages().filter((m) => /^conflict /.test(m)).length).join('/')}; late local writes caught after the rename=${daemons.map((d) => d.messages().filter((m) => /landed while the pulled copy was written/.test(m)).length).join('/')}`,
    );
    expect(v.problems, v.problems.join('\n')).toEqual([]);
    for (const d of daemons) expect(d.running, `${d.name} still running`).toBe(true);
  }, 90_000);

  it('a daemon SIGKILLed about every second during a 15 s write stream: no newer local write is replaced by its own older push', async () => {
    const keys = Array.from({ length: 10 }, (_, i) => keyName(i));
    const counters = new Counters();
    const audit = new Audit();
    // No timestamps: a conflict goes to the store, so mistaking our own push for a conflict would lose the newer local file.
    const { ns, mirrors } = await setup(1, keys, false, counters, audit);
    const mirror = mirrors[0]!;
    let daemon = await g.start({ env: env(ns.schema, mirror), name: 'A' });
    onTestFailed(() => console.error(stderrTails([daemon])));
    await quiescence(sql, ns.schema, mirrors, keys, 10_000);

    const until = Date.now() + 15_000;
    let kills = 0;
    const killer = (async () => {
      while (Date.now() < until - 500) {
        await sleep(700 + Math.random() * 600);
        await daemon.kill();
        kills++;
        daemon = await g.start({ env: env(ns.schema, mirror), name: `A${kills}`, waitReady: false });
      }
    })();
    await Promise.all([proxyWriter({ mirror, by: 'A', keys, until, counters, audit, timestamps: false }), killer]);
    await daemon.ready(15_000);
    await quiescence(sql, ns.schema, mirrors, keys, 15_000);

    const v = await judge(sql, ns.schema, mirrors, keys, audit);
    const final = await mirrorNow(mirror, keys);
    const kept = await keptCopies(mirrors);
    const keptAboveFinal = keys.flatMap((k) => [...(kept.get(k) ?? [])].filter((n) => n > (final.get(k) ?? 0)).map((n) => `${k}: kept n=${n} > final n=${final.get(k)}`));
    console.log(
      `[lost-updates SIGKILL] kills=${kills} writes=${v.writes} replaced-in-mirror=${v.replaced} (reached store ${v.replacedReachedStore}, kept ${v.replacedKept}, lost but superseded later ${v.replacedSupersededOnly}); copies kept under conflicts/=${v.keptTotal}`,
    );
    expect(kills).toBeGreaterThanOrEqual(8);
    expect(v.problems, v.problems.join('\n')).toEqual([]);
    expect(keptAboveFinal, keptAboveFinal.join('\n')).toEqual([]);
    // Only this daemon writes this mirror and it pulls nothing newer: it must never put an older copy over a newer local write.
    expect(audit.replaced, JSON.stringify(audit.replaced.slice(0, 10))).toEqual([]);
  }, 90_000);

  it('CLIProxyAPI-style blind upserts and deletes racing local edits in two mirrors: no lost update by the same audit', async () => {
    const keys = Array.from({ length: 12 }, (_, i) => keyName(i));
    const counters = new Counters();
    const audit = new Audit();
    const { ns, mirrors } = await setup(2, keys, true, counters, audit);
    const daemons: Daemon[] = [];
    onTestFailed(() => console.error(stderrTails(daemons)));
    // The Go proxy's deletes here are intended, many distinct keys within the guard's window: the delete
    // guard (tested in reliability.test.ts) would hold some of them and the sides would never agree.
    const noGuard = { CREDSYNC_MAX_DELETE: '1000' };
    for (const [i, m] of mirrors.entries()) daemons.push(await g.start({ env: env(ns.schema, m, noGuard), name: String.fromCharCode(65 + i) }));
    await quiescence(sql, ns.schema, mirrors, keys, 15_000);

    const until = Date.now() + 12_000;
    await Promise.all([
      ...mirrors.map((m, i) => proxyWriter({ mirror: m, by: String.fromCharCode(65 + i), keys, until, counters, audit, timestamps: true })),
      blindWriter({ sql, schema: ns.schema, keys, until, counters, audit }),
    ]);
    await quiescence(sql, ns.schema, mirrors, keys, 15_000);

    const v = await judge(sql, ns.schema, mirrors, keys, audit);
    console.log(
      `[lost-updates blind upserts] writes=${v.writes} deletes=${audit.deletes.length} replaced-in-mirror=${v.replaced} (reached store ${v.replacedReachedStore}, kept ${v.replacedKept}, lost but superseded later ${v.replacedSupersededOnly}); copies kept under conflicts/=${v.keptTotal}`,
    );
    expect(v.problems, v.problems.join('\n')).toEqual([]);
  }, 90_000);
});
