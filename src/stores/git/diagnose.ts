import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Diagnosis } from '../../core/store.js';
import { GitEnv, classifyGitOutput, gitReason, type GitEnvOptions } from './env.js';

function git(genv: GitEnv, args: string[], o: { gitDir?: string; cwd?: string } = {}): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile('git', args, { env: genv.env({ gitDir: o.gitDir }), cwd: o.cwd ?? tmpdir(), timeout: 30_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      resolve({ ok: !err, out: genv.scrub(`${stdout}${stderr}`) });
    });
  });
}

/**
 * `doctor`'s Git checks, with the store's own environment (the token only in it): read rights
 * (`ls-remote`), the branch, and push rights (`push --dry-run` of a throwaway ref, which asks the
 * server for receive-pack without changing anything). Never throws; messages are scrubbed.
 */
export async function diagnoseGit(o: GitEnvOptions & { branch?: string }): Promise<Diagnosis[]> {
  const genv = new GitEnv(o);
  const out: Diagnosis[] = [];
  const fixFor = (text: string): string =>
    classifyGitOutput(text) === 'auth'
      ? 'check GITSTORE_GIT_USERNAME and GITSTORE_GIT_TOKEN (a token with repository read and write access)'
      : classifyGitOutput(text) === 'no-repo'
        ? 'check GITSTORE_GIT_URL: the repository does not exist or is not visible to these credentials'
        : 'check GITSTORE_GIT_URL and the network path to the server';
  const ls = await git(genv, ['ls-remote', '--symref', o.url]);
  if (!ls.ok) {
    out.push({ status: 'fail', check: 'git read (ls-remote)', detail: `${genv.where}: ${gitReason(ls.out)}`, fix: fixFor(ls.out) });
    return out;
  }
  const head = /^ref: refs\/heads\/(\S+)\s+HEAD$/m.exec(ls.out)?.[1];
  const branch = o.branch || head;
  const heads = [...ls.out.matchAll(/^[0-9a-f]{40}\s+refs\/heads\/(\S+)$/gm)].map((m) => m[1]!);
  out.push({ status: 'ok', check: 'git read (ls-remote)', detail: `${genv.where}: ${heads.length} branch(es)` });
  if (heads.length === 0) out.push({ status: 'ok', check: 'git branch', detail: 'the remote is empty: credsync initialises it with the CLIProxyAPI layout on first start' });
  else if (branch && heads.includes(branch)) out.push({ status: 'ok', check: 'git branch', detail: `${branch} exists` });
  else out.push({ status: 'fail', check: 'git branch', detail: `branch ${branch ?? '(remote default)'} not found (branches: ${heads.slice(0, 5).join(', ')})`, fix: 'set GITSTORE_GIT_BRANCH to an existing branch, or leave it empty for the remote default' });

  const dir = await mkdtemp(join(tmpdir(), 'credsync-doctor-git-'));
  try {
    const gitDir = join(dir, 'probe.git');
    await git(genv, ['init', '--bare', '--quiet', gitDir]);
    const tree = (await git(genv, ['hash-object', '-t', 'tree', '-w', '/dev/null'], { gitDir })).out.trim();
    const commit = await git(genv, ['commit-tree', '-m', 'credsync doctor probe (never pushed)', tree], { gitDir });
    const ref = `refs/credsync/doctor-${randomBytes(4).toString('hex')}`;
    const push = await git(genv, ['push', '--dry-run', '--porcelain', o.url, `${commit.out.trim()}:${ref}`], { gitDir });
    out.push(
      push.ok
        ? { status: 'ok', check: 'git push rights', detail: `${genv.where}: the server accepts a push from these credentials (dry run, nothing written)` }
        : { status: 'fail', check: 'git push rights', detail: `${genv.where}: ${gitReason(push.out)}`, fix: fixFor(push.out) },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}
