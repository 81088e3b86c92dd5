/**
 * The Git store against real remotes: bare repositories made here, served over file:// and over smart
 * HTTP with Basic auth (git's own http-backend, started by the global setup from the shared scripts).
 * The shared conformance suite runs against both; the rest checks what only Git has: CLIProxyAPI's
 * layout, history that only grows, human commits and orphan rewrites seen by the watcher, the token
 * kept out of every file and message, and a corrupt clone repaired.
 */
import { afterEach, describe, expect, inject, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createServer, Socket, type Server } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { pino, type Logger } from 'pino';
import { ConflictError, StoreConfigError, StoreError } from '../../src/core/errors.js';
import type { Change, Store } from '../../src/core/store.js';
import { createGitStore, type GitStoreOptions } from '../../src/stores/git/index.js';
import { GitClone } from '../../src/stores/git/clone.js';
import { GitEnv } from '../../src/stores/git/env.js';
import { blobId } from '../../src/stores/git/objects.js';
import { openStore } from '../../src/stores/registry.js';
import { storeConformance, type StoreFixture } from './conformance.js';
import { git, newBareRepo } from '../support/git-server.js';
import { freePort } from '../support/proc.js';
import { tempDir } from '../support/tmp.js';
import { sleep, waitFor } from '../support/wait.js';

const http = inject('gitHttp');
const enc = (s: string): Buffer => Buffer.from(s, 'utf8');
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
const execFileAsync = promisify(execFile);

/** Fast polling for tests; the store's default is 2 s. */
const POLL_MS = 250;

/** One remote: a bare repository on disk and the URL credsync uses for it. */
interface Remote {
  readonly url: string;
  readonly path: string;
  readonly token?: string;
  readonly username?: string;
}

type Transport = 'file' | 'http';

const temps: Array<{ remove(): Promise<void> }> = [];
const stores: Store[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close().catch(() => {});
  for (const t of temps.splice(0)) await t.remove();
});

async function newRemote(transport: Transport): Promise<Remote> {
  if (transport === 'http') {
    const { name, path } = await newBareRepo(http.root);
    return { url: `${http.base}/${name}.git`, path, token: http.token, username: http.user };
  }
  const dir = await tempDir('credsync-git-remote-');
  temps.push(dir);
  const { path } = await newBareRepo(dir.path);
  return { url: `file://${path}`, path };
}

/** A log that keeps every line (JSON), for checking what credsync said. */
function captureLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** A store on `remote` with its own mirror directory (the clone goes to <mirror>/.credsync/git). */
async function open(remote: Remote, extra: Partial<GitStoreOptions> = {}): Promise<{ store: Store; workDir: string; mirror: string }> {
  const dir = await tempDir('credsync-git-mirror-');
  temps.push(dir);
  const mirror = join(dir.path, 'mirror');
  const workDir = join(mirror, '.credsync', 'git');
  const store = createGitStore({ url: remote.url, token: remote.token, username: remote.username, workDir, pollIntervalMs: POLL_MS, ...extra });
  stores.push(store);
  await store.init();
  return { store, workDir, mirror };
}

const refOf = async (remote: Remote, ref = 'refs/heads/main'): Promise<string> => (await git(['rev-parse', ref], { env: { GIT_DIR: remote.path } })).trim();
const countOf = async (remote: Remote): Promise<number> => Number((await git(['rev-list', '--count', 'refs/heads/main'], { env: { GIT_DIR: remote.path } })).trim());
const isAncestor = async (remote: Remote, a: string, b: string): Promise<boolean> =>
  git(['merge-base', '--is-ancestor', a, b], { env: { GIT_DIR: remote.path } }).then(
    () => true,
    () => false,
  );
const filesAt = async (remote: Remote, rev = 'refs/heads/main'): Promise<string[]> =>
  (await git(['ls-tree', '-r', '--name-only', '--full-tree', rev], { env: { GIT_DIR: remote.path } })).split('\n').filter(Boolean);
const showAt = async (remote: Remote, path: string, rev = 'refs/heads/main'): Promise<string> => git(['show', `${rev}:${path}`], { env: { GIT_DIR: remote.path } });

/** The server's reflog of main: [old, new] per update (the bare repos log every ref update). */
async function serverReflog(remote: Remote): Promise<Array<[string, string]>> {
  const raw = await readFile(join(remote.path, 'logs', 'refs', 'heads', 'main'), 'utf8').catch(() => '');
  return raw
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ').slice(0, 2) as [string, string]);
}

/** Every update of main on the server was a fast-forward (or the branch's creation). */
async function expectNoForcedUpdate(remote: Remote): Promise<void> {
  const log = await serverReflog(remote);
  expect(log.length).toBeGreaterThan(0);
  for (const [oldTip, newTip] of log) {
    if (/^0+$/.test(oldTip)) continue;
    expect(await isAncestor(remote, oldTip, newTip), `server update ${oldTip} -> ${newTip} was not a fast-forward`).toBe(true);
  }
}

/**
 * What another tool does to the remote, in a scratch clone made by plain git: a human's commit, or
 * CLIProxyAPI's save (the whole tree as ONE parentless commit, force-pushed).
 */
async function asHuman(remote: Remote, edit: (dir: string) => Promise<void>, o: { message?: string; orphan?: boolean } = {}): Promise<string> {
  const dir = await tempDir('credsync-git-human-');
  try {
    const wt = join(dir.path, 'w');
    await git(['clone', '-q', remote.path, wt]);
    await edit(wt);
    await git(['add', '-A'], { cwd: wt });
    if (o.orphan) {
      const tree = (await git(['write-tree'], { cwd: wt })).trim();
      const commit = (await git(['commit-tree', tree, '-m', o.message ?? 'Sync auth'], { cwd: wt })).trim();
      await git(['push', '-q', '--force', 'origin', `${commit}:refs/heads/main`], { cwd: wt });
      return commit;
    }
    await git(['commit', '-q', '--allow-empty', '-m', o.message ?? 'operator edit'], { cwd: wt });
    await git(['push', '-q', 'origin', 'HEAD:refs/heads/main'], { cwd: wt });
    return (await git(['rev-parse', 'HEAD'], { cwd: wt })).trim();
  } finally {
    await dir.remove();
  }
}

/** Files under `dir` (recursively) whose bytes contain `needle`. */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const { stdout } = await execFileAsync('grep', ['-rlF', '--', needle, dir]).catch((e: { code?: number; stdout?: string }) => {
    if (e.code === 1) return { stdout: '' };
    throw e;
  });
  return stdout.split('\n').filter(Boolean);
}

// ------------------------------------------------------------------ conformance

function gitFixture(transport: Transport): () => Promise<StoreFixture> {
  return async () => {
    const remote = await newRemote(transport);
    const { store } = await open(remote);
    let restore: Promise<void> | null = null;
    return {
      store,
      async second() {
        return (await open(remote)).store;
      },
      // No connection to kill: the remote disappears for a while (every poll fails), then comes back.
      async killWatchConnection() {
        await rename(remote.path, `${remote.path}.away`);
        restore = sleep(POLL_MS * 5).then(() => rename(`${remote.path}.away`, remote.path));
      },
      // Git cannot hold "../x": a name longer than a key may be (255 bytes) is as bad and fits in a tree.
      async plantBadId(id: string) {
        const oid = (await git(['hash-object', '-w', '--stdin'], { env: { GIT_DIR: remote.path }, input: '{"planted":true}' })).trim();
        const index = join(remote.path, 'plant-index');
        const env = { GIT_DIR: remote.path, GIT_INDEX_FILE: index };
        await git(['read-tree', 'refs/heads/main'], { env });
        await git(['update-index', '--index-info'], { env, input: `100644 ${oid}\tauths/${'x'.repeat(250)}-${id.replace(/^.*\//, '')}\n` });
        const tree = (await git(['write-tree'], { env })).trim();
        const commit = (await git(['commit-tree', tree, '-p', 'refs/heads/main', '-m', 'plant'], { env })).trim();
        await git(['update-ref', 'refs/heads/main', commit], { env });
        await unlink(index);
      },
      async cleanup() {
        await restore;
        await store.close();
      },
    };
  };
}

storeConformance('git (file://)', gitFixture('file'), { exactAuthBytes: true });

describe.skipIf(!http.base)(`git over smart HTTP with a token${http.base ? '' : ` (skipped: ${http.skipReason})`}`, () => {
  storeConformance('git (smart HTTP, Basic auth)', gitFixture('http'), { exactAuthBytes: true });
});

// ------------------------------------------------------------------ Git specifics

const transports: Transport[] = http.base ? ['file', 'http'] : ['file'];

describe.each(transports)('git store specifics (%s)', (transport) => {
  it('initialises an empty remote with CLIProxyAPI\'s layout: .gitkeep files, one commit, a plain push', async () => {
    const remote = await newRemote(transport);
    await open(remote);
    expect((await filesAt(remote)).sort()).toEqual(['auths/.gitkeep', 'config/.gitkeep']);
    expect(await countOf(remote)).toBe(1);
    const msg = await git(['log', '-1', '--format=%an <%ae>|%s', 'refs/heads/main'], { env: { GIT_DIR: remote.path } });
    expect(msg.trim()).toBe('credsync <credsync@localhost>|credsync: initialise the store layout (auths/.gitkeep, config/.gitkeep)');
    // A second store on the initialised remote changes nothing.
    const { store: again } = await open(remote);
    expect((await again.list()).entries).toEqual([]);
    expect(await countOf(remote)).toBe(1);
  });

  it('reads and extends a remote CLIProxyAPI created (one orphan commit) without losing anything', async () => {
    const remote = await newRemote(transport);
    const cfg = 'port: 8317\nauth-dir: ~/.cli-proxy-api\n';
    const a = '{\n  "type": "claude",\n  "email": "a@b.com",\n  "refresh_token": "rt-a"\n}';
    const orphan = await asHuman(
      remote,
      async (wt) => {
        await mkdir(join(wt, 'auths', 'team'), { recursive: true });
        await mkdir(join(wt, 'config'), { recursive: true });
        await writeFile(join(wt, 'auths', '.gitkeep'), '');
        await writeFile(join(wt, 'config', '.gitkeep'), '');
        await writeFile(join(wt, 'config', 'config.yaml'), cfg);
        await writeFile(join(wt, 'auths', 'claude-a@b.com.json'), a);
        await writeFile(join(wt, 'auths', 'team', 'codex-c@d.com.json'), '{"type":"codex"}');
        await writeFile(join(wt, 'auths', 'notes.txt'), 'not a credential');
        await writeFile(join(wt, 'README.md'), '# kept\n');
      },
      { orphan: true, message: 'Initialize git token store' },
    );
    const { store } = await open(remote);
    const { entries, skipped } = await store.list();
    expect(entries.map((e) => e.key)).toEqual(['auths/claude-a@b.com.json', 'auths/team/codex-c@d.com.json', 'config/config.yaml']);
    expect(skipped).toEqual([]);
    expect(entries.find((e) => e.key === 'auths/claude-a@b.com.json')!.version).toBe(blobId(enc(a)));
    expect(text((await store.get('config/config.yaml'))!.data)).toBe(cfg);
    // Extend it: a new credential and an edit, both as fast-forwards on top of the orphan commit.
    const v = entries.find((e) => e.key === 'auths/claude-a@b.com.json')!.version;
    await store.put('auths/claude-a@b.com.json', enc('{"type":"claude","email":"a@b.com","refresh_token":"rt-a2"}'), { ifVersion: v });
    await store.put('auths/new.json', enc('{"n":1}'), { ifVersion: null });
    const after = await filesAt(remote);
    expect(after.sort()).toEqual(['README.md', 'auths/.gitkeep', 'auths/claude-a@b.com.json', 'auths/new.json', 'auths/notes.txt', 'auths/team/codex-c@d.com.json', 'config/.gitkeep', 'config/config.yaml']);
    expect(await showAt(remote, 'README.md')).toBe('# kept\n');
    expect(await showAt(remote, 'auths/notes.txt')).toBe('not a credential');
    expect(await isAncestor(remote, orphan, await refOf(remote))).toBe(true);
    expect(await countOf(remote)).toBe(3);
    await expectNoForcedUpdate(remote);
  });

  it('only ever grows the history: every old tip is an ancestor of the next, nothing forced', async () => {
    const remote = await newRemote(transport);
    const { store: a } = await open(remote);
    const { store: b } = await open(remote);
    const tips = [await refOf(remote)];
    const counts = [await countOf(remote)];
    const step = async (fn: () => Promise<unknown>): Promise<void> => {
      await fn().catch((err: unknown) => {
        if (!(err instanceof ConflictError)) throw err;
      });
      tips.push(await refOf(remote));
      counts.push(await countOf(remote));
    };
    const va = await a.put('auths/a.json', enc('{"a":1}'));
    tips.push(await refOf(remote));
    counts.push(await countOf(remote));
    await step(() => b.put('auths/b.json', enc('{"b":1}')));
    await step(() => a.put('auths/a.json', enc('{"a":2}'), { ifVersion: va.version }));
    await step(() => b.put('auths/a.json', enc('{"a":3}'), { ifVersion: va.version })); // stale: a conflict
    await step(() => Promise.all([a.put('auths/c.json', enc('{"c":1}')), b.put('auths/d.json', enc('{"d":1}')), a.delete('auths/b.json'), b.put('config/config.yaml', enc('p: 1\n'))]));
    await step(() => Promise.allSettled(Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).put('auths/race.json', enc(`{"r":${i}}`), { ifVersion: null }))));
    for (let i = 1; i < tips.length; i++) {
      expect(counts[i]!).toBeGreaterThanOrEqual(counts[i - 1]!);
      expect(await isAncestor(remote, tips[i - 1]!, tips[i]!)).toBe(true);
    }
    expect(counts[counts.length - 1]!).toBeGreaterThan(counts[0]!);
    await expectNoForcedUpdate(remote);
    // Exactly one racer created race.json.
    expect(JSON.parse(await showAt(remote, 'auths/race.json'))).toHaveProperty('r');
  });

  it('batches concurrent writes into one commit, each caller getting its own result', async () => {
    const remote = await newRemote(transport);
    const { store } = await open(remote, { batchWindowMs: 30 });
    const before = await countOf(remote);
    const existing = await store.put('auths/x.json', enc('{"x":0}'));
    const results = await Promise.allSettled([
      ...Array.from({ length: 20 }, (_, i) => store.put(`auths/k${i}.json`, enc(`{"k":${i}}`), { ifVersion: null })),
      store.put('auths/x.json', enc('{"x":1}'), { ifVersion: 'f'.repeat(40) }), // wrong version: only this one fails
      store.delete('auths/x.json', { ifVersion: existing.version }),
    ]);
    expect(results.slice(0, 20).every((r) => r.status === 'fulfilled')).toBe(true);
    results.slice(0, 20).forEach((r, i) => expect((r as PromiseFulfilledResult<{ version: string }>).value.version).toBe(blobId(enc(`{"k":${i}}`))));
    expect(results[20]!.status).toBe('rejected');
    expect((results[20] as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
    expect(results[21]!.status).toBe('fulfilled');
    expect(await countOf(remote)).toBe(before + 2); // x.json's first put, then ONE commit for the rest
    const subject = (await git(['log', '-1', '--format=%s', 'refs/heads/main'], { env: { GIT_DIR: remote.path } })).trim();
    expect(subject).toMatch(/^credsync: update auths\/k0\.json, update auths\/k1\.json, .* and \d+ more$/);
    const body = await git(['log', '-1', '--format=%b', 'refs/heads/main'], { env: { GIT_DIR: remote.path } });
    expect(body).toContain('delete auths/x.json');
    expect(body).toContain('update auths/k19.json');
  });

  it('re-applies untouched keys on the new tip after a rejected push and reports only real conflicts', async () => {
    const remote = await newRemote(transport);
    const { store: a } = await open(remote, { batchWindowMs: 20 });
    const { store: b } = await open(remote);
    const v1 = await a.put('auths/one.json', enc('{"v":1}'));
    const v2 = await a.put('auths/two.json', enc('{"v":1}'));
    // b moves the branch; a's clone still has the old tip, so a's next push is rejected first.
    await b.put('auths/two.json', enc('{"v":"b"}'), { ifVersion: v2.version });
    const [one, two] = await Promise.allSettled([a.put('auths/one.json', enc('{"v":2}'), { ifVersion: v1.version }), a.put('auths/two.json', enc('{"v":"a"}'), { ifVersion: v2.version })]);
    expect(one.status).toBe('fulfilled');
    expect(two.status).toBe('rejected');
    expect((two as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
    expect(JSON.parse(await showAt(remote, 'auths/one.json'))).toEqual({ v: 2 });
    expect(JSON.parse(await showAt(remote, 'auths/two.json'))).toEqual({ v: 'b' });
    await expectNoForcedUpdate(remote);
  });

  it('deletes only what it is asked to; a file missing from the working clone is restored, never committed as a deletion', async () => {
    const remote = await newRemote(transport);
    const { store, workDir } = await open(remote);
    await store.put('auths/keep.json', enc('{"k":1}'));
    await store.put('auths/gone.json', enc('{"g":1}'));
    await waitFor('work tree updated', () => stat(join(workDir, 'auths', 'keep.json')).then(() => true, () => false), 5000);
    await unlink(join(workDir, 'auths', 'keep.json'));
    await rm(join(workDir, 'config'), { recursive: true, force: true });
    await store.delete('auths/gone.json');
    await store.put('auths/other.json', enc('{"o":1}'));
    expect((await filesAt(remote)).sort()).toEqual(['auths/.gitkeep', 'auths/keep.json', 'auths/other.json', 'config/.gitkeep']);
    const present = (p: string): Promise<boolean> => stat(join(workDir, p)).then(() => true, () => false);
    await waitFor('keep.json and config/.gitkeep restored in the working clone', async () => (await present('auths/keep.json')) && (await present('config/.gitkeep')), 5000);
    expect(await readFile(join(workDir, 'auths', 'keep.json'), 'utf8')).toBe('{"k":1}');
  });

  it('announces a human commit pushed with git to a watcher, with blob ids as versions', async () => {
    const remote = await newRemote(transport);
    const { store } = await open(remote);
    await store.put('auths/old.json', enc('{"o":1}'));
    const seen: Change[] = [];
    let ready = 0;
    const stop = await store.watch!((c) => seen.push(c), { onReady: () => ready++ });
    try {
      await waitFor('ready', () => ready === 1, 5000);
      const body = '{"type":"claude","email":"human@x"}\n';
      await asHuman(remote, async (wt) => {
        await writeFile(join(wt, 'auths', 'human.json'), body);
        await unlink(join(wt, 'auths', 'old.json'));
        await writeFile(join(wt, 'README.md'), 'ignored\n');
      });
      await waitFor('human changes seen', () => seen.length >= 2, 5000);
      await sleep(POLL_MS * 2);
      expect(seen.sort((x, y) => x.key.localeCompare(y.key))).toEqual([
        { key: 'auths/human.json', op: 'put', version: blobId(enc(body)) },
        { key: 'auths/old.json', op: 'delete' },
      ]);
      expect(text((await store.get('auths/human.json'))!.data)).toBe(body);
      expect(ready).toBe(1);
    } finally {
      await stop();
    }
  });

  it('takes CLIProxyAPI\'s force-pushed orphan rewrite with the same content as no change, and builds on it', async () => {
    const remote = await newRemote(transport);
    const { store } = await open(remote);
    const a = await store.put('auths/a.json', enc('{"a":1}'));
    await store.put('config/config.yaml', enc('port: 1\n'));
    const seen: Change[] = [];
    let ready = 0;
    let errors = 0;
    const stop = await store.watch!((c) => seen.push(c), { onReady: () => ready++, onError: () => errors++ });
    try {
      await waitFor('ready', () => ready === 1, 5000);
      const orphan = await asHuman(remote, async () => {}, { orphan: true, message: 'Sync auth a.json' });
      expect(await countOf(remote)).toBe(1);
      // The watcher fetches the rewritten tip (it moved) and finds the same trees: nothing to report.
      await waitFor('orphan fetched', async () => (await store.list()).entries.length === 2, 5000);
      await sleep(POLL_MS * 4);
      expect(seen).toEqual([]);
      expect(ready).toBe(1);
      expect(errors).toBe(0);
      // Our next write goes on top of the orphan: a fast-forward from it, nothing lost or resurrected.
      await store.put('auths/a.json', enc('{"a":2}'), { ifVersion: a.version });
      expect(await countOf(remote)).toBe(2);
      expect(await isAncestor(remote, orphan, await refOf(remote))).toBe(true);
      expect((await filesAt(remote)).sort()).toEqual(['auths/.gitkeep', 'auths/a.json', 'config/.gitkeep', 'config/config.yaml']);
      // The watcher reports our own write with the version we got back: the engine treats it as an echo.
      await waitFor('own write seen', () => seen.some((c) => c.key === 'auths/a.json'), 5000);
      expect(seen.filter((c) => c.key === 'auths/a.json').every((c) => c.op === 'put' && c.version === blobId(enc('{"a":2}')))).toBe(true);
    } finally {
      await stop();
    }
  });

  it('refuses a missing configured branch on a non-empty remote, naming GITSTORE_GIT_BRANCH; creates it on an empty one', async () => {
    const remote = await newRemote(transport);
    await open(remote);
    const err = await open(remote, { branch: 'nope' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreConfigError);
    expect((err as Error).message).toMatch(/branch nope does not exist.*GITSTORE_GIT_BRANCH/);
    const empty = await newRemote(transport);
    const { store } = await open(empty, { branch: 'credentials' });
    await store.put('auths/a.json', enc('{"a":1}'));
    expect((await filesAt(empty, 'refs/heads/credentials')).sort()).toEqual(['auths/.gitkeep', 'auths/a.json', 'config/.gitkeep']);
  });

  it('follows the remote\'s default branch when no branch is set', async () => {
    const remote = await newRemote(transport);
    await git(['symbolic-ref', 'HEAD', 'refs/heads/trunk'], { env: { GIT_DIR: remote.path } });
    const { store } = await open(remote);
    await store.put('auths/a.json', enc('{"a":1}'));
    expect(await filesAt(remote, 'refs/heads/trunk')).toContain('auths/a.json');
  });

  it('recovers a corrupt clone (missing pack, broken index, missing .git) by moving it aside and cloning again', async () => {
    const remote = await newRemote(transport);
    const { log, lines } = captureLog();
    const opened = await open(remote, { log });
    const { workDir } = opened;
    let store = opened.store;
    for (let i = 0; i < 5; i++) await store.put(`auths/c${i}.json`, enc(`{"c":${i}}`));
    const listed = async (): Promise<string[]> => (await store.list()).entries.map((e) => e.key);
    const all = ['auths/c0.json', 'auths/c1.json', 'auths/c2.json', 'auths/c3.json', 'auths/c4.json'];
    const brokenDirs = async (): Promise<string[]> => (await readdir(join(workDir, '..'))).filter((n) => n.startsWith('git.broken-'));

    // 1. Every object packed, then the pack deleted while the store runs: git's own fetch notices the
    //    missing objects and brings them back, or the read that misses one has the clone made again.
    const dropPacks = async (): Promise<void> => {
      await git(['repack', '-a', '-d', '-q'], { env: { GIT_DIR: join(workDir, '.git') } });
      const packDir = join(workDir, '.git', 'objects', 'pack');
      for (const f of await readdir(packDir)) if (f.endsWith('.pack')) await unlink(join(packDir, f));
    };
    await dropPacks();
    expect(await listed()).toEqual(all);
    expect(text((await store.get('auths/c3.json'))!.data)).toBe('{"c":3}');
    // ... and at a restart, a pack missing from the disk is found before anything is read.
    await store.close();
    await dropPacks();
    const brokenBefore = (await brokenDirs()).length;
    store = createGitStore({ url: remote.url, token: remote.token, username: remote.username, workDir, pollIntervalMs: POLL_MS, log });
    stores.push(store);
    await store.init();
    expect(await brokenDirs()).toHaveLength(brokenBefore + 1);
    expect(await listed()).toEqual(all);
    expect(text((await store.get('auths/c3.json'))!.data)).toBe('{"c":3}');

    // 2. A broken index (found by the next command that reads it).
    const brokenBeforeIndex = (await brokenDirs()).length;
    await writeFile(join(workDir, '.git', 'index'), 'garbage, not an index');
    await store.put('auths/c5.json', enc('{"c":5}'));
    await waitFor('broken index repaired', async () => (await brokenDirs()).length === brokenBeforeIndex + 1, 5000);

    // 3. No .git at all.
    await rename(join(workDir, '.git'), join(workDir, '..', 'dot-git-gone'));
    await rm(join(workDir, '..', 'dot-git-gone'), { recursive: true, force: true });
    await store.put('auths/c6.json', enc('{"c":6}'));
    expect(await listed()).toEqual([...all, 'auths/c5.json', 'auths/c6.json']);
    // Three (or four, if the running store's pack loss needed one too) were moved aside; the last 3 are kept.
    expect(await brokenDirs()).toHaveLength(3);

    const said = lines.map((l) => JSON.parse(l) as { msg: string }).filter((l) => /is corrupt .*moved aside to .*git\.broken-.*cloning .* again/.test(l.msg));
    expect(said.length).toBeGreaterThanOrEqual(3);
    await expectNoForcedUpdate(remote);
  });

  it('makes the clone again from the remote after a restart with an empty disk', async () => {
    const remote = await newRemote(transport);
    const first = await open(remote);
    await first.store.put('auths/a.json', enc('{"a":1}'));
    await first.store.put('config/config.yaml', enc('x: 1\n'));
    await first.store.close();
    await rm(first.mirror, { recursive: true, force: true });
    const store = createGitStore({ url: remote.url, token: remote.token, username: remote.username, workDir: first.workDir, pollIntervalMs: POLL_MS });
    stores.push(store);
    await store.init();
    expect((await store.list()).entries.map((e) => e.key)).toEqual(['auths/a.json', 'config/config.yaml']);
    expect(await countOf(remote)).toBe(3);
  });

  it('never pushes a commit whose tree touches a path the batch did not name', async () => {
    const remote = await newRemote(transport);
    const { store, workDir } = await open(remote);
    await store.put('auths/a.json', enc('{"a":1}'));
    await store.put('auths/b.json', enc('{"b":1}'));
    await store.close();
    const before = await refOf(remote);
    // A clone whose index build is broken (read-tree skipped: CLIProxyAPI #4629's half-staged index).
    const clone = new GitClone({ url: remote.url, workDir, env: new GitEnv({ url: remote.url, token: remote.token, username: remote.username }) });
    await clone.init();
    const run = clone.git.run.bind(clone.git);
    clone.git.run = (args, o) => (args[0] === 'read-tree' ? Promise.resolve('') : run(args, o));
    const oid = await clone.writeBlob(enc('{"c":1}'));
    const err = await clone.commitLocked(clone.tip, new Map([['auths/c.json', oid]]), 'credsync: update auths/c.json').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as Error).message).toMatch(/refusing commit .* changes \d+ path\(s\) the batch did not name \(auths\/\.gitkeep, auths\/a\.json/);
    expect(await refOf(remote)).toBe(before);
    await clone.close();
  });
});

// ------------------------------------------------------------------ errors and secrets (smart HTTP)

describe.skipIf(!http.base)('git store errors and secrets over smart HTTP', () => {
  it('a wrong token is a configuration error with a hint, and never shows the token', async () => {
    const remote = await newRemote('http');
    const wrong = `wrong-${http.token}-x`;
    const err = await open({ ...remote, token: wrong }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/authentication to http:\/\/127\.0\.0\.1:\d+\/.* failed/);
    expect(msg).toContain('GITSTORE_GIT_USERNAME');
    expect(msg).toContain('GITSTORE_GIT_TOKEN');
    expect(msg).not.toContain(wrong);
    expect(msg).not.toContain(Buffer.from(`${http.user}:${wrong}`).toString('base64'));
    const noToken = await open({ ...remote, token: undefined }).catch((e: unknown) => e);
    expect(noToken).toBeInstanceOf(StoreConfigError);
  });

  it('a missing repository is a configuration error; an unreachable server an outage (StoreError)', async () => {
    const missing = await open({ url: `${http.base}/does-not-exist.git`, path: '', token: http.token, username: http.user }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(StoreConfigError);
    expect((missing as Error).message).toMatch(/repository .*does-not-exist\.git not found.*GITSTORE_GIT_URL/);
    const port = await freePort();
    const down = await open({ url: `http://127.0.0.1:${port}/x.git`, path: '', token: http.token, username: http.user }).catch((e: unknown) => e);
    expect(down).toBeInstanceOf(StoreError);
    expect(down).not.toBeInstanceOf(StoreConfigError);
    expect((down as Error).message).toMatch(/unreachable/);
  });

  it('an outage of the server is reported once to the watcher and followed by onReady when it is back', async () => {
    const remote = await newRemote('http');
    const proxy = await tcpProxy(Number(new URL(http.base).port));
    try {
      const url = remote.url.replace(http.base, `http://127.0.0.1:${proxy.port}`);
      const { store } = await open({ ...remote, url });
      let ready = 0;
      const errors: Error[] = [];
      const seen: Change[] = [];
      const stop = await store.watch!((c) => seen.push(c), { onReady: () => ready++, onError: (e) => errors.push(e) });
      try {
        await waitFor('ready', () => ready === 1, 5000);
        proxy.cut();
        await waitFor('error reported', () => errors.length === 1, 5000);
        await sleep(POLL_MS * 4);
        expect(errors).toHaveLength(1);
        expect(errors[0]).toBeInstanceOf(StoreError);
        expect(errors[0]).not.toBeInstanceOf(StoreConfigError);
        const putDuringOutage = await store.put('auths/x.json', enc('{"x":1}')).catch((e: unknown) => e);
        expect(putDuringOutage).toBeInstanceOf(StoreError);
        proxy.heal();
        await waitFor('ready again', () => ready === 2, 5000);
        const { store: other } = await open(remote);
        await other.put('auths/after.json', enc('{"a":1}'));
        await waitFor('event after the outage', () => seen.some((c) => c.key === 'auths/after.json'), 5000);
      } finally {
        await stop();
      }
    } finally {
      await proxy.close();
    }
  });

  it('keeps the token out of every file under the mirror and clone, every message and every log line', async () => {
    const remote = await newRemote('http');
    const { log, lines } = captureLog();
    const { store, mirror, workDir } = await open(remote, { log });
    const { store: other } = await open(remote);
    const messages: string[] = [];
    const v = await store.put('auths/a.json', enc('{"a":1}'));
    await other.put('auths/a.json', enc('{"a":2}'), { ifVersion: v.version });
    await store.put('auths/a.json', enc('{"a":3}'), { ifVersion: v.version }).catch((e: Error) => messages.push(e.message));
    await store.put('config/config.yaml', enc('p: 1\n'));
    await store.delete('auths/a.json');
    // Corruption and recovery are logged (with git's own messages): still no token.
    await rename(join(workDir, '.git', 'objects'), join(workDir, '..', 'objects-gone'));
    await rm(join(workDir, '..', 'objects-gone'), { recursive: true, force: true });
    await store.list();
    const stop = await store.watch!(() => {}, { onReady: () => {}, onError: (e) => messages.push(e.message) });
    await other.put('auths/b.json', enc('{"b":1}'));
    await sleep(POLL_MS * 3);
    await stop();
    const bad = createGitStore({ url: remote.url, token: `${http.token}x`, username: http.user, workDir: join(mirror, '.credsync', 'git-bad'), log });
    await bad.init().catch((e: Error) => messages.push(e.message));
    await bad.close();
    expect(messages.length).toBeGreaterThanOrEqual(2);
    const b64 = Buffer.from(`${http.user}:${http.token}`).toString('base64');
    for (const needle of [http.token, b64]) {
      expect(await filesContaining(join(mirror, '..'), needle)).toEqual([]);
      expect(lines.filter((l) => l.includes(needle))).toEqual([]);
      expect(messages.filter((m) => m.includes(needle))).toEqual([]);
    }
    expect(await readFile(join(workDir, '.git', 'config'), 'utf8')).not.toMatch(/extraheader|@127\.0\.0\.1/i);
    expect(lines.some((l) => /moved aside/.test(l))).toBe(true);
    // Credentials written into the URL are taken out of it before it reaches .git/config.
    const inUrl = await open({ url: remote.url.replace('http://', `http://${http.user}:${http.token}@`), path: remote.path }, { log });
    await inUrl.store.put('auths/url.json', enc('{"u":1}'));
    expect(inUrl.store.id).not.toContain(http.token);
    expect(await filesContaining(join(inUrl.mirror, '..'), http.token)).toEqual([]);
    expect(lines.filter((l) => l.includes(http.token))).toEqual([]);
  });

  it('ignores the user\'s global git config and stray GIT_* variables, and never writes to them', async () => {
    const remote = await newRemote('http');
    const home = await tempDir('credsync-git-home-');
    temps.push(home);
    // A global config that would break or redirect everything if it were read.
    const globalConfig = `[user]\n\tname = Global User\n\temail = global@example.invalid\n[url "http://127.0.0.1:1/"]\n\tinsteadOf = ${http.base}/\n[http]\n\textraHeader = X-Leak: global\n`;
    await writeFile(join(home.path, '.gitconfig'), globalConfig);
    const before = await stat(join(home.path, '.gitconfig'));
    const { log, lines } = captureLog();
    const baseEnv = { ...process.env, HOME: home.path, GIT_TRACE_CURL: '1', GIT_CURL_VERBOSE: '1', GIT_DIR: join(home.path, 'elsewhere'), GIT_CONFIG_PARAMETERS: "'user.name'='Param User'" };
    const { store } = await open(remote, { log, baseEnv });
    await store.put('auths/a.json', enc('{"a":1}'));
    const author = (await git(['log', '-1', '--format=%an <%ae>|%cn <%ce>', 'refs/heads/main'], { env: { GIT_DIR: remote.path } })).trim();
    expect(author).toBe('credsync <credsync@localhost>|credsync <credsync@localhost>');
    expect(await readFile(join(home.path, '.gitconfig'), 'utf8')).toBe(globalConfig);
    expect((await stat(join(home.path, '.gitconfig'))).mtimeMs).toBe(before.mtimeMs);
    expect(await readdir(home.path)).toEqual(['.gitconfig']);
    expect(lines.filter((l) => l.includes(http.token) || l.includes(Buffer.from(`${http.user}:${http.token}`).toString('base64')))).toEqual([]);
  });

  it('passes the token in the environment, never on the command line', async () => {
    const remote = await newRemote('http');
    const { store } = await open(remote);
    // While git runs for a write, no process on the machine has the token in its arguments.
    const seenArgs: string[] = [];
    let done = false;
    const watcher = (async () => {
      while (!done) {
        for (const pid of await readdir('/proc').catch(() => [] as string[])) {
          if (!/^\d+$/.test(pid)) continue;
          const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
          if (cmd.startsWith('git')) seenArgs.push(cmd.replace(/\0/g, ' '));
        }
        await sleep(1);
      }
    })();
    for (let i = 0; i < 5; i++) await store.put(`auths/p${i}.json`, enc(`{"p":${i}}`));
    await store.list();
    done = true;
    await watcher;
    expect(seenArgs.length).toBeGreaterThan(0);
    expect(seenArgs.filter((a) => a.includes(http.token) || a.includes(Buffer.from(`${http.user}:${http.token}`).toString('base64')))).toEqual([]);
  });
});

// ------------------------------------------------------------------ registry

describe('git store from the registry', () => {
  it('is loaded for a git spec with the clone in the context\'s workDir, and refuses to guess one', async () => {
    const remote = await newRemote('file');
    const dir = await tempDir();
    temps.push(dir);
    const workDir = join(dir.path, 'm', '.credsync', 'git');
    const store = await openStore({ kind: 'git', url: remote.url, username: 'git', pollIntervalMs: 300 }, { workDir });
    stores.push(store);
    expect(store.name).toBe('git');
    expect(store.capabilities).toEqual({ cas: 'enforced', watch: 'poll', pollIntervalMs: 300 });
    await store.init();
    expect((await stat(join(workDir, '.git'))).isDirectory()).toBe(true);
    await expect(openStore({ kind: 'git', url: remote.url, username: 'git' }, {})).rejects.toThrow(/no working directory/);
    const dflt = await openStore({ kind: 'git', url: remote.url, username: 'git' }, { workDir: join(dir.path, 'n', '.credsync', 'git') });
    stores.push(dflt);
    expect(dflt.capabilities.pollIntervalMs).toBe(2000);
  });
});

/** A TCP proxy that can be cut (connections refused and dropped) and healed, to play a network outage. */
async function tcpProxy(targetPort: number): Promise<{ port: number; cut(): void; heal(): void; close(): Promise<void> }> {
  let down = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (down) return client.destroy();
    const upstream = new Socket();
    sockets.add(client);
    sockets.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    upstream.connect(targetPort, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    cut() {
      down = true;
      for (const s of sockets) s.destroy();
    },
    heal() {
      down = false;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}
