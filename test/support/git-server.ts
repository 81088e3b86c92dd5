/**
 * Git remotes for tests: bare repositories made by the tests, served over file:// and over smart HTTP
 * with Basic auth by git's own `git http-backend`, started with the shared scripts
 * (`start-git-http.sh ROOT PORT USER TOKEN`, `stop-git-http.sh ROOT`; see ../shared/servers/README.md).
 *
 * The global setup starts one server per run and hands it to the tests (inject('gitHttp')). The token is
 * a planted, unique string: tests grep for it in every file and message credsync produced.
 * No vitest import here: bench/ uses it too.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './proc.js';

const execFileAsync = promisify(execFile);

declare module 'vitest' {
  export interface ProvidedContext {
    /** The smart-HTTP git server of this test run; `base` is '' when none could be had (`skipReason` says why). */
    gitHttp: GitHttpInfo;
  }
}

export interface GitHttpInfo {
  /** `http://127.0.0.1:PORT` */
  readonly base: string;
  /** Repositories live in `<root>/repos/<name>.git`. */
  readonly root: string;
  readonly user: string;
  readonly token: string;
  readonly skipReason: string;
}

/** Where the shared server scripts are: $CREDSYNC_SERVER_SCRIPTS, ../shared/servers next to the repository, /work/shared/servers. */
export function serverScriptsDir(): string | null {
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const candidates = [process.env.CREDSYNC_SERVER_SCRIPTS, join(repo, '..', 'shared', 'servers'), '/work/shared/servers'];
  for (const c of candidates) if (c && existsSync(join(c, 'start-git-http.sh'))) return c;
  return null;
}

/** Environment for the git commands tests run themselves (never the user's config). */
export const TEST_GIT_ENV: NodeJS.ProcessEnv = {
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_TERMINAL_PROMPT: '0',
  GIT_AUTHOR_NAME: 'Human Operator',
  GIT_AUTHOR_EMAIL: 'human@example.invalid',
  GIT_COMMITTER_NAME: 'Human Operator',
  GIT_COMMITTER_EMAIL: 'human@example.invalid',
  LC_ALL: 'C',
};

/** Runs git with the test environment; resolves stdout. */
export async function git(args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<string> {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^GIT_/.test(k)) clean[k] = v;
  const child = execFileAsync('git', args, { cwd: o.cwd ?? tmpdir(), env: { ...clean, ...TEST_GIT_ENV, ...o.env }, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' });
  if (o.input !== undefined) {
    child.child.stdin!.end(o.input);
  }
  return (await child).stdout;
}

export interface GitHttpServer extends GitHttpInfo {
  stop(): Promise<void>;
}

/** Starts the shared smart-HTTP server (Basic auth with a fresh planted token) in a temporary ROOT. */
export async function startGitHttp(): Promise<GitHttpServer> {
  const scripts = serverScriptsDir();
  if (!scripts) throw new Error('start-git-http.sh not found (set CREDSYNC_SERVER_SCRIPTS, or have ../shared/servers next to the repository)');
  const root = await mkdtemp(join(tmpdir(), 'credsync-git-http-'));
  const port = await freePort();
  const user = 'credsync-test';
  const token = `planted-git-token-${randomBytes(9).toString('hex')}`;
  let out: string;
  try {
    out = (await execFileAsync('bash', [join(scripts, 'start-git-http.sh'), root, String(port), user, token], { encoding: 'utf8', timeout: 30_000 })).stdout;
  } catch (err) {
    await execFileAsync('bash', [join(scripts, 'stop-git-http.sh'), root]).catch(() => {});
    await rm(root, { recursive: true, force: true });
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`start-git-http.sh failed: ${(e.stdout ?? '').trim().split('\n').pop() ?? ''} ${(e.stderr ?? e.message).trim().split('\n').slice(-3).join(' ')}`);
  }
  const m = /GIT_HTTP_BASE=(\S+)/.exec(out);
  if (!m) throw new Error(`start-git-http.sh printed no GIT_HTTP_BASE: ${out}`);
  return {
    base: m[1]!,
    root,
    user,
    token,
    skipReason: '',
    async stop() {
      await execFileAsync('bash', [join(scripts, 'stop-git-http.sh'), root]).catch(() => {});
      await rm(root, { recursive: true, force: true });
    },
  };
}

let seq = 0;

/** A new empty bare repository `<root>/repos/<name>.git` (initial branch `main`, every ref update logged). */
export async function newBareRepo(root: string, prefix = 'r'): Promise<{ name: string; path: string }> {
  const name = `${prefix}-${process.pid}-${++seq}-${randomBytes(3).toString('hex')}`;
  const path = join(root, 'repos', `${name}.git`);
  await git(['init', '-q', '--bare', '--initial-branch=main', path]);
  // The server-side reflog: every update of every ref, so tests can prove no update was forced.
  await git(['config', 'core.logAllRefUpdates', 'always'], { env: { GIT_DIR: path } });
  return { name, path };
}
