/**
 * Two real `credsync run` processes on one Git remote served over smart HTTP with a token
 * (GITSTORE_GIT_URL + GITSTORE_GIT_USERNAME + GITSTORE_GIT_TOKEN, CLIProxyAPI's variables), each with
 * its own mirror: propagation within the poll interval, no echo commits, simultaneous edits, a human's
 * commit and CLIProxyAPI's orphan rewrite, the token nowhere on disk or in the logs, and a restart with
 * an empty disk.
 *
 * Needs dist/ (npm test builds it). The server comes from the global setup (inject('gitHttp')); outside
 * CI the tests skip, saying why, when it cannot be had; in CI that is a failure.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { processGroup, type Daemon } from '../../support/daemon.js';
import { git, newBareRepo } from '../../support/git-server.js';
import { tempDir } from '../../support/tmp.js';
import { sleep, waitFor } from '../../support/wait.js';
import { authPath, conflictFiles, cred, exists, fileSig, readJson, stderrTails, waitGone, waitJson, writeAuth, writeConfig, configPath } from '../postgres/helpers.js';

const http = inject('gitHttp');

/** Files under `dir` containing `needle` (grep -r; exit 1 = none). */
function grepFiles(needle: string, dir: string): Promise<string[]> {
  return new Promise((resolve, reject) =>
    execFile('grep', ['-rlF', '--', needle, dir], (err, stdout) => {
      if (err && (err as { code?: number }).code !== 1) reject(err);
      else resolve(stdout.split('\n').filter(Boolean));
    }),
  );
}
const POLL_MS = 300;

describe.skipIf(!http.base)(`two daemons on one Git remote over smart HTTP${http.base ? '' : ` (skipped: ${http.skipReason})`}`, () => {
  const group = processGroup('all');
  let dir: { path: string; remove(): Promise<void> };
  let repo: { name: string; path: string };
  let a: Daemon;
  let b: Daemon;
  let mirrorA: string;
  let mirrorB: string;

  const envFor = (mirror: string): Record<string, string> => ({
    GITSTORE_GIT_URL: `${http.base}/${repo.name}.git`,
    GITSTORE_GIT_USERNAME: http.user,
    GITSTORE_GIT_TOKEN: http.token,
    GITSTORE_POLL_INTERVAL: `${POLL_MS}ms`,
    CREDSYNC_LOCAL_DIR: mirror,
    CREDSYNC_DEBOUNCE: '20ms',
    CREDSYNC_RECONCILE_INTERVAL: '60s',
    CREDSYNC_LOG_LEVEL: 'info',
  });
  const start = (mirror: string, name: string): Promise<Daemon> => group.start({ env: envFor(mirror), name, readyTimeoutMs: 20_000 });
  const gitEnv = (): NodeJS.ProcessEnv => ({ GIT_DIR: repo.path });
  const commits = async (): Promise<number> => Number((await git(['rev-list', '--count', 'refs/heads/main'], { env: gitEnv() })).trim());
  const tip = async (): Promise<string> => (await git(['rev-parse', 'refs/heads/main'], { env: gitEnv() })).trim();
  const showAt = async (path: string): Promise<string> => git(['show', `refs/heads/main:${path}`], { env: gitEnv() });
  /** Every tip the server ever had, in order (its reflog): each must be an ancestor of the next. */
  const serverTips = async (): Promise<Array<[string, string]>> =>
    (await readFile(join(repo.path, 'logs', 'refs', 'heads', 'main'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ').slice(0, 2) as [string, string]);

  /** Waits until the remote's tip stays put for `ms`. */
  const settled = async (ms = POLL_MS * 4): Promise<void> => {
    let last = await tip();
    let since = Date.now();
    await waitFor(
      'remote to settle',
      async () => {
        const now = await tip();
        if (now !== last) {
          last = now;
          since = Date.now();
        }
        return Date.now() - since >= ms;
      },
      20_000,
      50,
    );
  };

  beforeAll(async () => {
    dir = await tempDir('credsync-e2e-git-');
    repo = await newBareRepo(http.root, 'e2e');
    mirrorA = join(dir.path, 'a');
    mirrorB = join(dir.path, 'b');
    a = await start(mirrorA, 'A');
    b = await start(mirrorB, 'B');
  });
  afterAll(async () => {
    await group.killAll();
    await dir.remove();
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') console.error(stderrTails([a, b]));
  });

  it('initialises the empty remote with CLIProxyAPI\'s layout', async () => {
    const files = (await git(['ls-tree', '-r', '--name-only', 'refs/heads/main'], { env: gitEnv() })).split('\n').filter(Boolean);
    expect(files).toEqual(expect.arrayContaining(['auths/.gitkeep', 'config/.gitkeep']));
    expect(await commits()).toBe(1);
  });

  it('a new credential reaches the other mirror within the poll interval + 1 s, as one commit', async () => {
    const before = await commits();
    const lat: number[] = [];
    for (let i = 0; i < 3; i++) {
      const id = `claude-new${i}@x.com.json`;
      const t0 = Date.now();
      await writeAuth(mirrorA, id, cred(id));
      lat.push(await waitJson(authPath(mirrorB, id), cred(id), POLL_MS + 1000 + 2000, t0));
    }
    console.info(`git e2e propagation A→B: ${lat.join(', ')} ms (poll ${POLL_MS} ms)`);
    for (const ms of lat) expect(ms).toBeLessThanOrEqual(POLL_MS + 1000);
    await settled();
    expect(await commits()).toBe(before + 3);
    const subject = (await git(['log', '-1', '--format=%an|%s', 'refs/heads/main'], { env: gitEnv() })).trim();
    expect(subject).toBe('credsync|credsync: update auths/claude-new2@x.com.json');
  });

  it('edits and deletions propagate both ways', async () => {
    const id = 'codex-edit@x.com.json';
    await writeAuth(mirrorB, id, cred(id));
    await waitJson(authPath(mirrorA, id), cred(id), 5000);
    const edited = cred(id, { access_token: 'at-edited', last_refresh: '2025-02-01T00:00:00Z' });
    await writeAuth(mirrorA, id, edited);
    await waitJson(authPath(mirrorB, id), edited, POLL_MS + 1000 + 2000);
    await unlink(authPath(mirrorB, id));
    await waitGone(authPath(mirrorA, id), POLL_MS + 1000 + 2000);
    await writeConfig(mirrorA, 'port: 8317\napi-keys:\n  - k1\n');
    await waitFor('config propagated', async () => (await readFile(configPath(mirrorB), 'utf8').catch(() => '')) === 'port: 8317\napi-keys:\n  - k1\n', 5000);
    await settled();
    await expect(showAt(`auths/${id}`)).rejects.toThrow();
    expect(await showAt('config/config.yaml')).toBe('port: 8317\napi-keys:\n  - k1\n');
  });

  it('makes no echo commits: the commit count stays put while nothing changes', async () => {
    await settled();
    const before = await commits();
    const sigA = await fileSig(authPath(mirrorA, 'claude-new0@x.com.json'));
    await sleep(POLL_MS * 8);
    expect(await commits()).toBe(before);
    expect(await fileSig(authPath(mirrorA, 'claude-new0@x.com.json'))).toEqual(sigA);
  });

  it('simultaneous edits of one credential: the newer last_refresh wins on both mirrors, the loser is kept', async () => {
    const id = 'claude-race@x.com.json';
    await writeAuth(mirrorA, id, cred(id));
    await waitJson(authPath(mirrorB, id), cred(id), 5000);
    await settled();
    const older = cred(id, { access_token: 'at-from-A', last_refresh: '2025-03-01T00:00:00Z' });
    const newer = cred(id, { access_token: 'at-from-B', last_refresh: '2025-03-02T00:00:00Z' });
    await Promise.all([writeAuth(mirrorA, id, older), writeAuth(mirrorB, id, newer)]);
    await waitJson(authPath(mirrorA, id), newer, 10_000);
    await waitJson(authPath(mirrorB, id), newer, 10_000);
    await settled();
    expect(JSON.parse(await showAt(`auths/${id}`))).toEqual(newer);
    const kept = [...(await conflictFiles(mirrorA)), ...(await conflictFiles(mirrorB))];
    // The loser is kept under .credsync/conflicts/ (outside auths/, so the proxy never loads it).
    expect(kept.some((f) => f.text.includes('at-from-A'))).toBe(true);
  });

  it('picks up a human commit pushed with git, and a CLIProxyAPI orphan rewrite with the same content changes nothing', async () => {
    const scratch = await tempDir('credsync-e2e-git-human-');
    try {
      const wt = join(scratch.path, 'w');
      await git(['clone', '-q', repo.path, wt]);
      const body = cred('human@x.com.json', { note: 'added by an operator' });
      await writeFile(join(wt, 'auths', 'human@x.com.json'), JSON.stringify(body));
      await git(['add', '-A'], { cwd: wt });
      await git(['commit', '-q', '-m', 'operator: add human@x.com.json'], { cwd: wt });
      await git(['push', '-q', 'origin', 'HEAD:refs/heads/main'], { cwd: wt });
      await waitJson(authPath(mirrorA, 'human@x.com.json'), body, POLL_MS + 3000);
      await waitJson(authPath(mirrorB, 'human@x.com.json'), body, POLL_MS + 3000);
      await settled();

      // CLIProxyAPI's save: the whole tree as one parentless commit, force-pushed.
      const names = (await readdir(join(mirrorA, 'auths'))).filter((n) => n.endsWith('.json'));
      const sigs = await Promise.all(names.map((n) => fileSig(join(mirrorA, 'auths', n))));
      const sigsB = await Promise.all(names.map((n) => fileSig(join(mirrorB, 'auths', n))));
      await git(['fetch', '-q', 'origin'], { cwd: wt });
      await git(['reset', '-q', '--hard', 'origin/main'], { cwd: wt });
      const tree = (await git(['write-tree'], { cwd: wt })).trim();
      const orphan = (await git(['commit-tree', tree, '-m', 'Sync auth human@x.com.json'], { cwd: wt })).trim();
      await git(['push', '-q', '--force', 'origin', `${orphan}:refs/heads/main`], { cwd: wt });
      expect(await commits()).toBe(1);
      await sleep(POLL_MS * 8);
      expect(await tip()).toBe(orphan); // nobody wrote: no echo of the rewrite
      expect(await Promise.all(names.map((n) => fileSig(join(mirrorA, 'auths', n))))).toEqual(sigs);
      expect(await Promise.all(names.map((n) => fileSig(join(mirrorB, 'auths', n))))).toEqual(sigsB);
      // The next write builds on the orphan: a plain fast-forward.
      const id = 'after-rewrite@x.com.json';
      await writeAuth(mirrorB, id, cred(id));
      await waitJson(authPath(mirrorA, id), cred(id), POLL_MS + 3000);
      await settled();
      expect(await commits()).toBe(2);
      await git(['merge-base', '--is-ancestor', orphan, 'refs/heads/main'], { env: gitEnv() });
    } finally {
      await scratch.remove();
    }
  });

  it('never forced an update on the server: every tip was an ancestor of the next (except the test\'s own rewrite)', async () => {
    const updates = await serverTips();
    const ours = updates.filter(([oldTip]) => !/^0+$/.test(oldTip));
    let forced = 0;
    for (const [oldTip, newTip] of ours) {
      const ff = await git(['merge-base', '--is-ancestor', oldTip, newTip], { env: gitEnv() }).then(
        () => true,
        () => false,
      );
      if (!ff) forced++;
    }
    expect(forced).toBe(1); // the orphan force-push the test itself made as CLIProxyAPI
  });

  it('the token is in no file of either mirror (.credsync included) and in no log line', async () => {
    const b64 = Buffer.from(`${http.user}:${http.token}`).toString('base64');
    for (const needle of [http.token, b64]) {
      for (const m of [mirrorA, mirrorB]) {
        expect(await grepFiles(needle, m)).toEqual([]);
      }
      expect(a.stderr.includes(needle) || b.stderr.includes(needle)).toBe(false);
    }
    expect(await exists(join(mirrorA, '.credsync', 'git', '.git'))).toBe(true);
    expect(await readFile(join(mirrorA, '.credsync', 'git', '.git', 'config'), 'utf8')).not.toMatch(/extraheader|@127/i);
  });

  it('a restart with an empty mirror pulls everything and deletes nothing', async () => {
    await settled();
    const before = await commits();
    const filesBefore = (await git(['ls-tree', '-r', '--name-only', 'refs/heads/main'], { env: gitEnv() })).split('\n').filter(Boolean).sort();
    const names = (await readdir(join(mirrorA, 'auths'))).filter((n) => n.endsWith('.json')).sort();
    await b.stop();
    await rm(mirrorB, { recursive: true, force: true });
    b = await start(mirrorB, 'B2');
    for (const n of names) expect(await readJson(join(mirrorB, 'auths', n))).toEqual(await readJson(join(mirrorA, 'auths', n)));
    expect(await readFile(configPath(mirrorB), 'utf8')).toBe(await readFile(configPath(mirrorA), 'utf8'));
    await sleep(POLL_MS * 4);
    expect(await commits()).toBe(before);
    expect((await git(['ls-tree', '-r', '--name-only', 'refs/heads/main'], { env: gitEnv() })).split('\n').filter(Boolean).sort()).toEqual(filesBefore);
    expect((await readdir(join(mirrorA, 'auths'))).filter((n) => n.endsWith('.json')).sort()).toEqual(names);
  });
});
