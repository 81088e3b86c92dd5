import { GitError, simpleGit, type SimpleGitOptions } from 'simple-git';
import { GitFailure, type GitEnv } from './env.js';

export interface RunOptions {
  /** Bytes written to the process's stdin (then closed). Never empty: pass nothing instead. */
  readonly input?: string | Buffer;
  /** A temporary index (GIT_INDEX_FILE) instead of the clone's own. */
  readonly indexFile?: string;
  /**
   * Where the command runs: against the clone (GIT_DIR/GIT_WORK_TREE set; the default), another git
   * directory, `outside` any repository (a GIT_DIR that does not exist, so git never discovers a parent
   * repository), or `init` (no GIT_DIR at all: only for `git init <path>` / `git clone … <path>`).
   */
  readonly at?: 'clone' | 'outside' | 'init' | { readonly gitDir: string; readonly workTree?: string };
  /** Send the auth header (network commands). Default: true. */
  readonly auth?: boolean;
  /** Kill the process after this long without output (default 120 s). */
  readonly timeoutMs?: number;
  /** Working directory (default: the clone's work tree, or `/` outside a repository). */
  readonly cwd?: string;
}

const TRACE_LINE = /^(remote: )?\d\d:\d\d:\d\d\.\d+ \S+\s+trace: .*$/gm;

/**
 * Runs the machine's `git` through simple-git with our environment (env.ts). Every failure becomes a
 * GitFailure whose output is already scrubbed of the token. One simple-git instance per command: each
 * may have its own stdin and environment, and the lock in clone.ts is what orders them.
 */
export class GitRunner {
  constructor(
    private readonly genv: GitEnv,
    readonly gitDir: string,
    readonly workTree: string,
  ) {}

  private instance(args: string[], o: RunOptions): ReturnType<typeof simpleGit> {
    const at = o.at ?? 'clone';
    const dirs =
      at === 'clone'
        ? { gitDir: this.gitDir, workTree: this.workTree }
        : at === 'outside'
          ? { gitDir: `${this.gitDir}.none` }
          : at === 'init'
            ? {}
            : at;
    const env = this.genv.env({ ...dirs, indexFile: o.indexFile, auth: o.auth });
    // simple-git waits 50 ms after a process that printed nothing (read-tree, update-index, a fetch with
    // nothing new …). GIT_TRACE's one line on stderr per command spares that wait; it names the command
    // and its arguments (never a header or the environment) and is dropped from every message.
    env.GIT_TRACE = '1';
    const command = args[0] ?? '';
    const options: Partial<SimpleGitOptions> = {
      baseDir: o.cwd ?? (at === 'clone' ? this.workTree : '/'),
      binary: 'git',
      maxConcurrentProcesses: 1,
      trimmed: false,
      timeout: { block: o.timeoutMs ?? 120_000 },
      // Done when the process's streams close, never "50 ms after exit": on a busy machine that cut
      // output short (a push's status lines, a cat-file batch).
      completion: { onClose: true, onExit: false },
      // Our environment names GIT_CONFIG_GLOBAL, GIT_CONFIG_COUNT and GIT_SSH_COMMAND on purpose.
      allowEnvironment: Object.keys(env),
      unsafe: { allowUnsafeConfigPaths: true, allowUnsafeConfigEnvCount: true, allowUnsafeSshCommand: true },
      errors: (error, result) => {
        if (result.exitCode === 0 && !(error instanceof Error)) return undefined;
        const text = Buffer.concat([...result.stdOut, ...result.stdErr]).toString('utf8').replace(TRACE_LINE, '').replace(/\n{2,}/g, '\n');
        const extra = error instanceof Error && !text.includes(error.message) ? `\n${error.message}` : '';
        // simple-git passes its own GitError through untouched (anything else is re-wrapped as text).
        const failure = new GitFailure(command, result.exitCode, this.genv.scrub(text + extra));
        return Object.assign(new GitError(undefined, failure.message), { failure });
      },
    };
    if (o.input !== undefined) {
      const input = o.input;
      options.input = () => input;
    }
    return simpleGit(options).env(env);
  }

  /** Runs `git ...args`; resolves stdout (utf-8). */
  async run(args: string[], o: RunOptions = {}): Promise<string> {
    try {
      return await this.instance(args, o).raw(args);
    } catch (err) {
      throw this.normalise(args, err);
    }
  }

  /** `git cat-file ...args` with binary stdout. */
  async catFile(args: string[], o: RunOptions = {}): Promise<Buffer> {
    try {
      return (await this.instance(['cat-file', ...args], o).binaryCatFile(args)) as Buffer;
    } catch (err) {
      throw this.normalise(['cat-file', ...args], err);
    }
  }

  private normalise(args: string[], err: unknown): GitFailure {
    if (err instanceof GitFailure) return err;
    const inner = (err as { failure?: unknown } | null)?.failure;
    if (inner instanceof GitFailure) return inner;
    // A spawn or timeout problem reported by simple-git itself.
    const msg = err instanceof Error ? err.message : String(err);
    return new GitFailure(args[0] ?? '', null, this.genv.scrub(msg));
  }
}
