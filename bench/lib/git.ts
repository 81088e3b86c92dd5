/**
 * Git remotes for the benchmarks: the shared smart-HTTP server (Basic auth, git's own http-backend),
 * bare repositories in it, plain `git` clones for the floors, and what a remote holds (commits, bytes).
 */
import { execFile } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { git, startGitHttp, type GitHttpServer } from '../../test/support/git-server.js';
import { onCleanup } from './cleanup.js';

export { git, newBareRepo } from '../../test/support/git-server.js';

const execFileAsync = promisify(execFile);

/** The shared smart-HTTP server, stopped at cleanup. */
export async function obtainGitHttp(): Promise<GitHttpServer> {
  const server = await startGitHttp();
  onCleanup(`stop git http server ${server.base}`, () => server.stop());
  return server;
}

/** The environment of a daemon selecting the Git store the CLIProxyAPI way (URL, user, token). */
export function gitEnv(server: GitHttpServer, repo: string, localDir: string, pollMs: number): Record<string, string> {
  return {
    GITSTORE_GIT_URL: `${server.base}/${repo}.git`,
    GITSTORE_GIT_USERNAME: server.user,
    GITSTORE_GIT_TOKEN: server.token,
    GITSTORE_POLL_INTERVAL: `${pollMs}ms`,
    CREDSYNC_LOCAL_DIR: localDir,
  };
}

/** Plain git against the server with the token as a header in the environment (the floors' client). */
export function authedGit(server: GitHttpServer): (args: string[], cwd: string) => Promise<string> {
  const header = `Authorization: Basic ${Buffer.from(`${server.user}:${server.token}`).toString('base64')}`;
  const env = { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.extraHeader', GIT_CONFIG_VALUE_0: header };
  return (args, cwd) => git(args, { cwd, env });
}

/** Commits on the branch of a bare repository. */
export async function commitCount(repoPath: string, branch = 'main'): Promise<number> {
  return Number((await git(['rev-list', '--count', `refs/heads/${branch}`], { env: { GIT_DIR: repoPath } })).trim());
}

/** Bytes of everything under `objects/` (loose objects and packs, as received). */
export async function objectBytes(repoPath: string): Promise<number> {
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += (await stat(p)).size;
    }
  };
  await walk(join(repoPath, 'objects'));
  return total;
}

/** Bytes of the repository's objects after `git gc` (what it costs once the server has packed it). */
export async function packedBytes(repoPath: string): Promise<number> {
  await execFileAsync('git', ['gc', '-q', '--prune=now'], { env: { ...process.env, GIT_DIR: repoPath, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' } });
  return objectBytes(repoPath);
}

export type { GitHttpServer };
