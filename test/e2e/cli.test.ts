/**
 * One-shot commands of the real CLI (dist/cli.js): pull, sync, status, help, version, exit codes,
 * secrets in output, and the built-in defaults when nothing is configured.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, readFile, readdir, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { processGroup, REPO_ROOT, type CliResult } from '../support/daemon.js';
import { tempDir } from '../support/tmp.js';
import { fill } from '../support/files.js';

const SECRET_RT = '1//0gSECRETrefreshTOKENvalue-never-log-me';
const SECRET_AT = 'ya29.SECRETaccessTOKENvalue-never-log-me';

const CONFIG = 'port: 8317\nauth-dir: ./auths\ndebug: false\n';
const STORE_FILES: Record<string, string> = {
  'config/config.yaml': CONFIG,
  'auths/claude-user@example.com.json': JSON.stringify({ type: 'claude', email: 'user@example.com', access_token: SECRET_AT, refresh_token: SECRET_RT, expired: '2099-01-01T00:00:00Z' }, null, 2),
  'auths/gemini-b.json': JSON.stringify({ type: 'gemini', token: { refresh_token: 'rt-gemini-b' } }),
  'auths/team/x.json': JSON.stringify({ type: 'codex', id: 'team/x', refresh_token: 'rt-team-x' }),
  'auths/team/deeper/y.json': '{"type":"codex","id":"team/deeper/y"}',
};

interface Entry {
  data: string;
  mode: number;
  mtimeMs: number;
  ino: number;
}

/** Every file and directory under `root` (skipping `.credsync*` unless `all`), with content and stat. */
async function tree(root: string, all = false): Promise<{ files: Map<string, Entry>; dirs: Map<string, number> }> {
  const files = new Map<string, Entry>();
  const dirs = new Map<string, number>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!all && e.name.startsWith('.credsync')) continue;
      const full = join(dir, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      const st = await stat(full);
      if (e.isDirectory()) {
        dirs.set(r, st.mode & 0o777);
        await walk(full, r);
      } else if (e.isFile()) files.set(r, { data: await readFile(full, 'utf8'), mode: st.mode & 0o777, mtimeMs: st.mtimeMs, ino: st.ino });
    }
  };
  await walk(root, '');
  return { files, dirs };
}

const contents = (t: { files: Map<string, Entry> }): Record<string, string> => Object.fromEntries([...t.files].map(([k, v]) => [k, v.data]));

const fail = (r: CliResult): string => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

describe('credsync one-shot commands', () => {
  const g = processGroup('all');
  let tmp: { path: string; remove(): Promise<void> };
  let n = 0;
  /** A fresh store + mirror pair under the temp dir. */
  const pair = async (storeFiles: Record<string, string> = STORE_FILES) => {
    const dir = join(tmp.path, `case-${++n}`);
    const store = join(dir, 'store');
    const mirror = join(dir, 'mirror');
    await fill(store, storeFiles);
    const env = { CREDSYNC_STORE: pathToFileURL(store).href, CREDSYNC_LOCAL_DIR: mirror };
    return { dir, store, mirror, env, cli: (args: string[], extra: Record<string, string> = {}) => g.cli(args, { env: { ...env, ...extra } }) };
  };

  beforeAll(async () => {
    tmp = await tempDir('credsync-e2e-cli-');
  });
  afterAll(async () => {
    await g.killAll();
    await tmp?.remove();
  });

  it('pull into an empty directory exits 0 with the full mirror: files 0600, dirs 0700', async () => {
    const p = await pair();
    const r = await p.cli(['pull']);
    expect(r.code, fail(r)).toBe(0);
    const m = await tree(p.mirror);
    expect(contents(m)).toEqual(STORE_FILES);
    for (const [k, v] of m.files) expect(v.mode, `mode of ${k}`).toBe(0o600);
    for (const [k, mode] of m.dirs) expect(mode, `mode of ${k}/`).toBe(0o700);
    expect((await stat(p.mirror)).mode & 0o777, 'mode of the mirror root it created').toBe(0o700);
    expect(r.stdout).toMatch(/pulled 5/);
    // the store is untouched by a pull
    expect(contents(await tree(p.store))).toEqual(STORE_FILES);
  });

  it('pull --json reports what it pulled', async () => {
    const p = await pair();
    const r = await p.cli(['pull', '--json']);
    expect(r.code, fail(r)).toBe(0);
    const rep = JSON.parse(r.stdout) as { pulled: string[]; pushed: string[]; deletedStore: string[] };
    expect([...rep.pulled].sort()).toEqual(Object.keys(STORE_FILES).sort());
    expect(rep.pushed).toEqual([]);
    expect(rep.deletedStore).toEqual([]);
  });

  it('pull --if-empty into a non-empty mirror changes nothing and exits 0', async () => {
    const p = await pair();
    await fill(p.mirror, { 'auths/local-only.json': '{"type":"claude","local":true}', 'auths/gemini-b.json': '{"type":"gemini","edited":"locally"}' });
    // (credsync may create its own hidden .credsync/ directory; what the proxy reads must not change)
    const beforeM = await tree(p.mirror);
    const beforeS = await tree(p.store, true);
    const r = await p.cli(['pull', '--if-empty']);
    expect(r.code, fail(r)).toBe(0);
    expect(r.stdout).toMatch(/if-empty|nothing pulled/);
    expect(await tree(p.mirror)).toEqual(beforeM);
    expect(await tree(p.store, true)).toEqual(beforeS);

    const j = await p.cli(['pull', '--if-empty', '--json']);
    expect(j.code, fail(j)).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ skipped: true });
    expect(await tree(p.mirror)).toEqual(beforeM);
  });

  it('pull --if-empty into an empty mirror pulls everything', async () => {
    const p = await pair();
    const r = await p.cli(['pull', '--if-empty']);
    expect(r.code, fail(r)).toBe(0);
    expect(contents(await tree(p.mirror))).toEqual(STORE_FILES);
  });

  it('a new, empty mirror never deletes anything from the store: sync fills the mirror and leaves the store as it was', async () => {
    const p = await pair();
    const before = await tree(p.store, true);
    const r = await p.cli(['sync']);
    expect(r.code, fail(r)).toBe(0);
    expect(await tree(p.store, true)).toEqual(before);
    expect(contents(await tree(p.mirror))).toEqual(STORE_FILES);

    // a container restarting without its volume: the whole mirror (state included) is gone
    await rm(p.mirror, { recursive: true, force: true });
    const r2 = await p.cli(['sync']);
    expect(r2.code, fail(r2)).toBe(0);
    expect(await tree(p.store, true)).toEqual(before);
    expect(contents(await tree(p.mirror))).toEqual(STORE_FILES);
  });

  it('a synced mirror whose auths/ was wiped (state kept) deletes nothing from the store on sync or push', async () => {
    const p = await pair();
    expect((await p.cli(['sync'])).code).toBe(0);
    const before = await tree(p.store, true);
    await rm(join(p.mirror, 'auths'), { recursive: true, force: true });
    // exit 4: a guard refused the deletions (documented in --help); the files are restored instead
    const push = await p.cli(['push']);
    expect(push.code, fail(push)).toBe(4);
    expect(await tree(p.store, true)).toEqual(before);
    const sync = await p.cli(['sync']);
    expect(sync.code, fail(sync)).toBe(4);
    expect(await tree(p.store, true)).toEqual(before);
    // and says why
    expect(sync.stderr + sync.stdout).toMatch(/empty or missing|not deleting/);
    expect(contents(await tree(p.mirror))).toEqual(STORE_FILES);
  });

  describe.concurrent('help, version, exit codes', () => {
    it.each(['run', 'pull', 'push', 'sync', 'status'])('%s --help works and lists the exit codes', async (cmd) => {
      const r = await g.cli([cmd, '--help']);
      expect(r.code, fail(r)).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`Usage: credsync ${cmd}`));
      expect(r.stdout).toMatch(/Exit codes:/);
      expect(r.stdout).toMatch(/^\s+0\s+success/m);
      expect(r.stdout).toMatch(/^\s+1\s+runtime failure/m);
      expect(r.stdout).toMatch(/^\s+2\s+usage/m);
    });

    it('--help at the top lists the commands and the exit codes', async () => {
      const r = await g.cli(['--help']);
      expect(r.code, fail(r)).toBe(0);
      for (const c of ['run', 'pull', 'push', 'sync', 'status']) expect(r.stdout).toMatch(new RegExp(`^\\s+${c}\\b`, 'm'));
      expect(r.stdout).toMatch(/Exit codes:/);
    });

    it('--version prints the package.json version', async () => {
      const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
      const r = await g.cli(['--version']);
      expect(r.code, fail(r)).toBe(0);
      expect(r.stdout.trim()).toBe(pkg.version);
    });

    it('an unknown flag exits 2 and names it', async () => {
      const r = await g.cli(['pull', '--frobnicate']);
      expect(r.code, fail(r)).toBe(2);
      expect(r.stderr).toMatch(/--frobnicate/);
    });

    it('an unknown command exits 2', async () => {
      const r = await g.cli(['frobnicate']);
      expect(r.code, fail(r)).toBe(2);
      expect(r.stderr).toMatch(/frobnicate/);
    });

    it.each(['lots', '150%', '-1', '10%%'])('CREDSYNC_MAX_DELETE=%s exits 2 naming the variable, without a stack trace', async (bad) => {
      const p = await pair();
      const r = await p.cli(['sync'], { CREDSYNC_MAX_DELETE: bad });
      expect(r.code, fail(r)).toBe(2);
      expect(r.stderr).toMatch(/CREDSYNC_MAX_DELETE/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      // nothing was touched
      expect(await tree(p.mirror)).toEqual({ files: new Map(), dirs: new Map() });
    });

    it('sync on a store path that cannot be created exits 1 with one JSON line naming the path, no stack trace', async () => {
      const dir = join(tmp.path, 'blocked');
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'file'), 'a regular file, not a directory');
      const r = await g.cli(['sync'], { env: { CREDSYNC_STORE: pathToFileURL(join(dir, 'file', 'store')).href, CREDSYNC_LOCAL_DIR: join(dir, 'mirror'), CREDSYNC_LOG_LEVEL: 'error' } });
      expect(r.code, fail(r)).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      const line = JSON.parse(lines[0]!) as { level: number; msg: string; exitCode: number };
      expect(line).toMatchObject({ level: 60, exitCode: 1 });
      expect(line.msg).toContain(join(dir, 'file'));
      expect(r.stderr).not.toMatch(/\bat .*\.js:\d+/);
    });

    it('status creates nothing: not the store directory, not the mirror', async () => {
      const dir = join(tmp.path, 'readonly');
      const r = await g.cli(['status'], { env: { CREDSYNC_STORE: pathToFileURL(join(dir, 'store')).href, CREDSYNC_LOCAL_DIR: join(dir, 'mirror') } });
      expect(r.code, fail(r)).toBe(0);
      expect(existsSync(dir), 'status created files').toBe(false);
    });
  });

  describe('secrets', () => {
    const leaks = (r: { stdout: string; stderr: string }, ...secrets: string[]): string[] =>
      secrets.flatMap((s) => [r.stderr.includes(s) ? `stderr contains ${s}` : '', r.stdout.includes(s) ? `stdout contains ${s}` : '']).filter(Boolean);

    it.each(['trace'])('refresh and access tokens in the store never appear in the output of pull/sync/status/push (log level %s)', async (level) => {
      const p = await pair();
      const env = { CREDSYNC_LOG_LEVEL: level };
      for (const args of [['pull'], ['pull', '--json'], ['sync'], ['status'], ['status', '--json'], ['push']]) {
        const r = await p.cli(args, env);
        expect(r.code, fail(r)).toBe(0);
        expect(leaks(r, SECRET_RT, SECRET_AT), args.join(' ')).toEqual([]);
      }
      // a local edit that is pushed, and a store change that is pulled
      await fill(p.mirror, { 'auths/claude-user@example.com.json': JSON.stringify({ type: 'claude', refresh_token: SECRET_RT + '-local', access_token: SECRET_AT }) });
      await fill(p.store, { 'auths/gemini-b.json': JSON.stringify({ type: 'gemini', refresh_token: SECRET_RT + '-store' }) });
      const r = await p.cli(['sync'], env);
      expect(r.code, fail(r)).toBe(0);
      expect(r.stdout).toMatch(/pulled 1, pushed 1/);
      expect(leaks(r, SECRET_RT, SECRET_AT)).toEqual([]);
    });

    it('tokens never appear in the stderr of run (trace level), through start, push, pull and shutdown', async () => {
      const p = await pair();
      const d = await g.start({ env: { ...p.env, CREDSYNC_LOG_LEVEL: 'trace' }, name: 'secret-run' });
      await fill(p.mirror, { 'auths/claude-user@example.com.json': JSON.stringify({ type: 'claude', refresh_token: SECRET_RT + '-run', access_token: SECRET_AT }) });
      await fill(p.store, { 'auths/gemini-b.json': JSON.stringify({ type: 'gemini', refresh_token: SECRET_RT + '-run-store' }) });
      const { waitFor } = await import('../support/wait.js');
      await waitFor('push to store', async () => (await readFile(join(p.store, 'auths', 'claude-user@example.com.json'), 'utf8')).includes('-run'), 3000);
      await waitFor('pull to mirror', async () => (await readFile(join(p.mirror, 'auths', 'gemini-b.json'), 'utf8')).includes('-run-store'), 3000);
      const st = await d.get('/status');
      expect(st.body.includes(SECRET_RT) || st.body.includes(SECRET_AT), '/status body leaks a token').toBe(false);
      const m = await d.get('/metrics');
      expect(m.body.includes(SECRET_RT) || m.body.includes(SECRET_AT), '/metrics leaks a token').toBe(false);
      const stop = await d.stop();
      expect(stop.code).toBe(0);
      expect(d.lines.length).toBeGreaterThan(3);
      expect(leaks({ stdout: d.stdout, stderr: d.stderr }, SECRET_RT, SECRET_AT)).toEqual([]);
    });

    it('a malformed credential file does not leak its token through the JSON parse error (status, sync, logs)', async () => {
      // A hand-edited file with an unquoted / single-quoted token: V8's JSON.parse error message quotes the
      // text around the error position ("Unexpected token 'y', ..."n": ya29LEAKCA"... is not valid JSON").
      const p = await pair({ 'auths/ok.json': '{"type":"claude"}' });
      await fill(p.mirror, {
        'auths/unquoted.json': '{"type":"gemini","access_token": ya29LEAKCANARYaccess0123456789}',
        'auths/single-quoted.json': "{\"type\":\"gemini\",\"refresh_token\": 'LEAKCANARYrefresh0123456789'}",
      });
      const found: string[] = [];
      for (const args of [['status'], ['status', '--json'], ['sync'], ['sync', '--json']]) {
        const r = await p.cli(args);
        // sync exits 1: an item was rejected (documented); status only reports
        expect(r.code, fail(r)).toBe(args[0] === 'sync' ? 1 : 0);
        expect(r.stdout + r.stderr, `${args.join(' ')} reports the bad files`).toMatch(/unquoted\.json/);
        found.push(...leaks(r, 'LEAKCAN').map((l) => `${args.join(' ')}: ${l}`));
      }
      expect(found, 'token text quoted by the JSON parse error').toEqual([]);
    });

    it('a config.yaml the YAML parser warns about does not get its lines (API keys) printed on stderr', async () => {
      // yaml's default logLevel 'warn' calls process.emitWarning with the offending source line, which Node
      // prints on stderr, e.g. "YAMLWarning: Unresolved tag: … api-keys: [!!int sk-LEAKCANARY…]".
      const p = await pair({ 'auths/ok.json': '{"type":"claude"}' });
      await fill(p.mirror, { 'config/config.yaml': 'port: 8317\napi-keys:\n  - !!int sk-LEAKCANARYapikey0123456789\n' });
      const found: string[] = [];
      for (const args of [['status'], ['sync']]) {
        const r = await p.cli(args);
        expect(r.code, fail(r)).toBe(0);
        found.push(...leaks({ stdout: '', stderr: r.stderr }, 'LEAKCAN').map((l) => `${args.join(' ')}: ${l}`));
      }
      expect(found, 'config lines echoed by YAML warnings').toEqual([]);
    });
  });

  describe('nothing configured', () => {
    it('pull with no store configured exits 2, names the variables, and creates nothing (no silent fallback)', async () => {
      await mkdir(join(tmp.path, 'bare-pull'), { recursive: true });
      const cwd = await realpath(join(tmp.path, 'bare-pull'));
      const r = await g.cli(['pull'], { cwd });
      expect(r.code, fail(r)).toBe(2);
      expect(r.stderr).toMatch(/no store configured: set PGSTORE_DSN .*OBJECTSTORE_ENDPOINT .*GITSTORE_GIT_URL/);
      expect(await readdir(cwd)).toEqual([]);
    });

    it('a misspelled PGSTORE_DNS makes pull exit 2 and suggests PGSTORE_DSN', async () => {
      const r = await g.cli(['pull'], { env: { PGSTORE_DNS: 'postgres://u:topsecretpw@127.0.0.1:1/x' } });
      expect(r.code, fail(r)).toBe(2);
      expect(r.stderr).toMatch(/PGSTORE_DNS \(in the environment\) is not a credsync setting; did you mean PGSTORE_DSN\?/);
    });

    it('run says where the built-in store and mirror are, and syncs them', async () => {
      const d0 = join(tmp.path, 'bare-run');
      await mkdir(d0, { recursive: true });
      const cwd = await realpath(d0);
      await fill(join(cwd, 'data', 'store'), { 'auths/a.json': '{"type":"claude","n":2}' });
      const d = await g.start({ cwd, httpVia: 'flag', testDefaults: false, name: 'bare-run' });
      const text = d.stderr;
      expect(text).toContain(join(cwd, 'data', 'store'));
      expect(text).toContain(join(cwd, 'data', 'mirror'));
      expect(text).toMatch(/no store configured|built-in/);
      expect(await readFile(join(cwd, 'data', 'mirror', 'auths', 'a.json'), 'utf8')).toBe('{"type":"claude","n":2}');
      const stop = await d.stop();
      expect(stop.code).toBe(0);
    });
  });
});
