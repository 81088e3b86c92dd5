import { describe, it, expect, afterEach, inject } from 'vitest';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { formatChecks, runDoctor, type Check } from '../../src/commands/doctor.js';
import { STORE_KINDS, captureIo, deps, seed, type StoreFixture } from './fixtures.js';
import { tempDir } from '../support/tmp.js';
import { quoteIdent, withAdmin } from '../support/pg-server.js';

const fixtures: StoreFixture[] = [];
afterEach(async () => {
  for (const f of fixtures.splice(0)) await f.cleanup();
});

interface DoctorJson {
  exitCode: number;
  checks: Check[];
}

async function doctor(store: string, localDir: string, expect?: string): Promise<{ code: number; json: DoctorJson; text: string }> {
  const io = captureIo();
  const cwd = await tempDir('credsync-doctor-cwd-');
  fixtures.push({ url: '', cleanup: () => cwd.remove() });
  const code = await runDoctor({ json: true, expect, flags: { store, localDir }, cwd: cwd.path }, deps(io));
  const json = io.json<DoctorJson>();
  // The human form of the same checks (a second run would see a trigger the first run's store init re-installed).
  return { code, json, text: formatChecks(json.checks) };
}

const byName = (checks: Check[], name: string): Check => {
  const c = checks.find((x) => x.check === name);
  if (!c) throw new Error(`no check ${name} in ${checks.map((x) => x.check).join(', ')}`);
  return c;
};

async function healthyMirror(): Promise<string> {
  const d = await tempDir('credsync-doctor-mirror-');
  fixtures.push({ url: '', cleanup: () => d.remove() });
  await mkdir(join(d.path, 'auths'), { recursive: true, mode: 0o700 });
  await chmod(d.path, 0o700);
  await writeFile(join(d.path, 'auths', 'a.json'), '{"type":"claude","email":"a@b.c"}', { mode: 0o600 });
  return d.path;
}

const pgKind = STORE_KINDS.find((k) => k.name === 'postgres')!;

describe('doctor on PostgreSQL', () => {
  const pg = async (ctx: { skip(why: string): void }): Promise<{ url: string; schema: string }> => {
    const why = pgKind.skip();
    if (why) ctx.skip(why);
    const f = await pgKind.make();
    fixtures.push(f);
    await seed(f.url, { 'auths/a.json': '{"type":"claude","email":"a@b.c"}', 'config/config.yaml': 'port: 1\n' });
    return { url: f.url, schema: new URL(f.url).searchParams.get('schema')! };
  };

  it('a healthy deployment exits 0 with every PostgreSQL check ok', async (ctx) => {
    const { url } = await pg(ctx);
    const r = await doctor(url, await healthyMirror(), 'postgres');
    expect(r.json.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(r.code).toBe(0);
    for (const name of ['configuration', 'postgres privileges', 'postgres trigger', 'postgres notify', 'clock skew', 'store reachable', 'store items', 'mirror writable']) {
      expect(byName(r.json.checks, name).status).toBe('ok');
    }
    expect(r.text).toMatch(/^ok {4}postgres trigger: /m);
  });

  it('a dropped trigger fails and names the fix', async (ctx) => {
    const { url, schema } = await pg(ctx);
    await withAdmin(inject('pgUrl'), (sql) => sql.unsafe(`DROP TRIGGER credsync_notify ON ${quoteIdent(schema)}.auth_store`));
    const r = await doctor(url, await healthyMirror());
    expect(r.code).toBe(1);
    const c = byName(r.json.checks, 'postgres trigger');
    expect(c).toMatchObject({ status: 'fail', detail: expect.stringMatching(/credsync_notify missing on .*auth_store/) });
    expect(c.fix).toMatch(/owner/);
    expect(r.text).toMatch(/^fail {2}postgres trigger: .*\n {6}fix: /m);
  });

  it('a disabled trigger fails with the ALTER TABLE fix', async (ctx) => {
    const { url, schema } = await pg(ctx);
    await withAdmin(inject('pgUrl'), (sql) => sql.unsafe(`ALTER TABLE ${quoteIdent(schema)}.config_store DISABLE TRIGGER credsync_notify`));
    const r = await doctor(url, await healthyMirror());
    expect(r.code).toBe(1);
    expect(byName(r.json.checks, 'postgres trigger').fix).toContain('ENABLE TRIGGER credsync_notify');
  });

  it('a role lacking DELETE fails and names the GRANT', async (ctx) => {
    const { schema } = await pg(ctx);
    const role = `cst_role_${randomBytes(4).toString('hex')}`;
    const admin = inject('pgUrl');
    await withAdmin(admin, async (sql) => {
      await sql.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'pw-${role}'`);
      await sql.unsafe(`GRANT USAGE ON SCHEMA ${quoteIdent(schema)} TO ${role}`);
      await sql.unsafe(`GRANT SELECT, INSERT, UPDATE ON ${quoteIdent(schema)}.config_store, ${quoteIdent(schema)}.auth_store TO ${role}`);
    });
    fixtures.unshift({ url: '', cleanup: () => withAdmin(admin, async (sql) => void (await sql.unsafe(`DROP OWNED BY ${role}; DROP ROLE ${role}`))) });
    const u = new URL(admin);
    u.username = role;
    u.password = `pw-${role}`;
    u.searchParams.set('schema', schema);
    const r = await doctor(u.toString(), await healthyMirror());
    expect(r.code).toBe(1);
    const c = byName(r.json.checks, 'postgres privileges');
    expect(c.status).toBe('fail');
    expect(c.detail).toContain('DELETE on config_store');
    expect(c.fix).toMatch(/^GRANT DELETE ON /);
    // The password never appears.
    expect(JSON.stringify(r.json)).not.toContain(`pw-${role}`);
    expect(r.text).not.toContain(`pw-${role}`);
  });

  it('an unreachable server fails the store check', async () => {
    const r = await doctor('postgres://nobody:secret-pw@127.0.0.1:1/none', await healthyMirror());
    expect(r.code).toBe(1);
    expect(r.json.checks.some((c) => c.status === 'fail')).toBe(true);
    expect(JSON.stringify(r.json)).not.toContain('secret-pw');
  });
});

describe('doctor on a directory store', () => {
  it('reports mirror problems as warnings with fixes, and a wrong store kind as a failure', async () => {
    const store = await STORE_KINDS[0]!.make();
    fixtures.push(store);
    await seed(store.url, { 'auths/x.json': '{"type":"claude","email":"dup@x"}', 'auths/y.json': '{"type":"claude","email":"dup@x"}' });
    const root = await healthyMirror();
    await chmod(root, 0o755);
    await writeFile(join(root, 'auths', 'bad.json'), '{"half":');
    await writeFile(join(root, 'auths', '.credsync-abc.tmp'), 'partial');
    const r = await doctor(store.url, root);
    expect(r.code).toBe(0);
    expect(byName(r.json.checks, 'mirror mode')).toMatchObject({ status: 'warn', fix: `chmod 700 ${root}` });
    expect(byName(r.json.checks, 'mirror temp files').status).toBe('warn');
    expect(byName(r.json.checks, 'mirror items').detail).toContain('auths/bad.json');
    expect(byName(r.json.checks, 'store duplicates')).toMatchObject({ status: 'warn', detail: expect.stringContaining('auths/x.json, auths/y.json') });
    expect(byName(r.json.checks, 'mirror state').status).toBe('warn');
    const wrong = await doctor(store.url, root, 'postgres');
    expect(wrong.code).toBe(1);
    expect(byName(wrong.json.checks, 'configuration')).toMatchObject({ status: 'fail', detail: expect.stringContaining('postgres was expected') });
  });
});

describe('doctor on S3 and Git deployments', () => {
  const kind = (name: string) => STORE_KINDS.find((k) => k.name === name)!;

  it('S3: list/put/get/delete on the prefix work, and it says whether conditional writes are enforced', async (ctx) => {
    const s3 = kind('s3');
    const why = s3.skip();
    if (why) ctx.skip(why);
    const fresh = await s3.make();
    fixtures.push(fresh);
    const before = await doctor(fresh.url, await healthyMirror());
    expect(byName(before.json.checks, 's3 bucket')).toMatchObject({ status: 'warn', fix: expect.stringMatching(/creates it/) });
    const f = await s3.make();
    fixtures.push(f);
    await seed(f.url, { 'auths/a.json': '{"type":"claude"}' });
    const r = await doctor(f.url, await healthyMirror());
    expect(byName(r.json.checks, 's3 permissions').status).toBe('ok');
    expect(['ok', 'warn']).toContain(byName(r.json.checks, 's3 conditional writes').status);
  });

  it('Git: read and push rights on the remote, the branch; a missing repository fails with the fix', async () => {
    const git = kind('git');
    const f = await git.make();
    fixtures.push(f);
    const r = await doctor(f.url, await healthyMirror());
    expect(byName(r.json.checks, 'git read (ls-remote)').status).toBe('ok');
    expect(byName(r.json.checks, 'git push rights').status).toBe('ok');
    const missing = await doctor('git+file:///nonexistent/credsync-no-such-repo.git', await healthyMirror());
    expect(missing.code).toBe(1);
    const read = byName(missing.json.checks, 'git read (ls-remote)');
    expect(read.status).toBe('fail');
    expect(read.fix).toMatch(/GITSTORE_GIT_URL/);
  });
});
