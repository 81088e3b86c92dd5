import { ConfigError, StoreConfigError, StoreError } from '../../core/errors.js';
import { redactUrl } from '../../core/redact.js';

/**
 * Everything a git process gets from us: an environment built from an allowlist (never the user's
 * global or system git config, never an inherited GIT_TRACE that would print headers), the commit
 * identity, and the token — passed per command through GIT_CONFIG_COUNT/KEY/VALUE as an
 * `http.<origin>/.extraHeader`, so it is in no file, no URL and no command line.
 */

export interface GitIdentity {
  readonly name: string;
  readonly email: string;
}

export const DEFAULT_AUTHOR = 'credsync <credsync@localhost>';

/** `Name <email>` → identity. */
export function parseAuthor(raw: string | undefined): GitIdentity {
  const m = /^\s*([^<>]+?)\s*<([^<>\s]+)>\s*$/.exec(raw ?? DEFAULT_AUTHOR);
  if (!m) throw new ConfigError(`CREDSYNC_GIT_AUTHOR ${raw}: expected "Name <email>"`);
  return { name: m[1]!, email: m[2]! };
}

/** Variables passed through from our own environment (proxies, CAs, ssh); everything else is dropped. */
const PASS_THROUGH = [
  'PATH', 'HOME', 'USER', 'LOGNAME', 'TMPDIR', 'SSH_AUTH_SOCK',
  'http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'no_proxy', 'NO_PROXY', 'all_proxy', 'ALL_PROXY',
  'SSL_CERT_FILE', 'SSL_CERT_DIR', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'GIT_SSL_CAPATH',
  'GIT_SSH_COMMAND', 'GIT_SSH', 'GIT_SSH_VARIANT',
];

/** Config every command runs with (besides the auth header). */
const COMMAND_CONFIG: Array<[string, string]> = [
  // Background maintenance would leave a detached child behind: gc runs only when we ask, after a push.
  ['maintenance.auto', 'false'],
  ['gc.autoDetach', 'false'],
  ['core.autocrlf', 'false'],
  ['commit.gpgSign', 'false'],
  ['advice.detachedHead', 'false'],
  // A stalled transfer is abandoned (an outage) rather than hanging the pass.
  ['http.lowSpeedLimit', '1000'],
  ['http.lowSpeedTime', '60'],
];

export interface GitEnvOptions {
  readonly url: string;
  readonly username?: string;
  readonly token?: string;
  readonly author?: string;
  /** Defaults to process.env (tests pass their own). */
  readonly baseEnv?: NodeJS.ProcessEnv;
}

export class GitEnv {
  readonly identity: GitIdentity;
  /** Strings that must never appear in a message: the token and every encoding of it we send. */
  private readonly secrets: string[] = [];
  private readonly header: [string, string] | null = null;
  private readonly passed: Record<string, string> = {};

  constructor(readonly o: GitEnvOptions) {
    this.identity = parseAuthor(o.author);
    const base = o.baseEnv ?? process.env;
    for (const k of PASS_THROUGH) {
      const v = base[k];
      if (v !== undefined && v !== '') this.passed[k] = v;
    }
    // No prompt ever waits for a human: ssh too runs in batch mode unless the operator chose a command.
    if (!this.passed.GIT_SSH_COMMAND && !this.passed.GIT_SSH) this.passed.GIT_SSH_COMMAND = 'ssh -o BatchMode=yes';
    const token = o.token ?? '';
    if (token) {
      const user = o.username || 'git';
      const basic = Buffer.from(`${user}:${token}`, 'utf8').toString('base64');
      this.secrets.push(token, basic, Buffer.from(token, 'utf8').toString('base64'), encodeURIComponent(token));
      const http = /^https?:\/\//i.test(o.url);
      if (http) {
        // Scoped to the remote's origin: a redirect to another host never receives the token.
        const u = new URL(o.url);
        this.header = [`http.${u.protocol}//${u.host}/.extraHeader`, `Authorization: Basic ${basic}`];
      }
    }
    this.secrets = [...new Set(this.secrets.filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
  }

  /** True when a token is configured but the URL is not http(s): the token is then unused. */
  get tokenUnused(): boolean {
    return Boolean(this.o.token) && !this.header;
  }

  /** The environment of one git process. `repo` sets GIT_DIR/GIT_WORK_TREE (no discovery of a parent repository). */
  env(o: { gitDir?: string; workTree?: string; indexFile?: string; auth?: boolean } = {}): Record<string, string> {
    const config: Array<[string, string]> = [...COMMAND_CONFIG];
    if (o.auth !== false && this.header) config.push(this.header);
    const env: Record<string, string> = {
      ...this.passed,
      LC_ALL: 'C',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: this.identity.name,
      GIT_AUTHOR_EMAIL: this.identity.email,
      GIT_COMMITTER_NAME: this.identity.name,
      GIT_COMMITTER_EMAIL: this.identity.email,
      GIT_CONFIG_COUNT: String(config.length),
    };
    config.forEach(([k, v], i) => {
      env[`GIT_CONFIG_KEY_${i}`] = k;
      env[`GIT_CONFIG_VALUE_${i}`] = v;
    });
    if (o.gitDir) env.GIT_DIR = o.gitDir;
    if (o.workTree) env.GIT_WORK_TREE = o.workTree;
    if (o.indexFile) env.GIT_INDEX_FILE = o.indexFile;
    return env;
  }

  /** Removes the token (and its encodings) from any text, and passwords from URLs. */
  scrub(text: string): string {
    let out = text;
    for (const s of this.secrets) out = out.split(s).join('***');
    return out.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+:[^@\s/]*@/gi, '$1***@');
  }

  /** The remote as shown in messages (never with credentials). */
  get where(): string {
    return redactUrl(this.o.url);
  }
}

/** What went wrong, judged from git's (English, LC_ALL=C) error output. */
export type GitFailureKind = 'auth' | 'no-repo' | 'network' | 'corrupt' | 'missing-ref' | 'other';

const PATTERNS: Array<[GitFailureKind, RegExp]> = [
  ['auth', /Authentication failed|could not read (Username|Password)|terminal prompts disabled|returned error: 40[13]\b|HTTP 40[13]\b|Permission denied \(|Host key verification failed|invalid credentials|access denied|not authorized/i],
  ['no-repo', /repository '.*' not found|Repository not found|does not appear to be a git repository|returned error: 404\b|No such repository/i],
  ['missing-ref', /couldn't find remote ref|Remote branch .* not found/i],
  [
    'corrupt',
    /not a git repository|directory that does not exist|index file (corrupt|smaller than expected)|bad (signature|index file|object|tree|HEAD)|unknown index entry format|packfile .*(not found|cannot be accessed)|pack(file)? .*(corrupt|missing|truncated)|unable to read (tree|commit|[0-9a-f]{40})|missing (blob|tree|commit|object)|(loose )?object .* is corrupt|object file .* is empty|invalid object|did not receive expected object|could not parse (commit|object)|broken link|fatal: not a (tree|commit) object|is not a valid object|unable to (find|read) [0-9a-f]{40}|ambiguous argument 'HEAD'|Could not read [0-9a-f]{40}|failed to read object|corrupt (object|tree|commit)|inflate returned|unable to unpack/i,
  ],
  ['network', /Could not resolve|Failed to connect|Couldn't connect|Connection (refused|reset|timed out|closed)|Operation timed out|timed out after|unable to access|Empty reply from server|RPC failed|early EOF|remote end hung up|SSL|TLS|Recv failure|Send failure|returned error: 5\d\d\b|Could not read from remote repository|transfer closed|Network is unreachable|No route to host|unexpected disconnect|The requested URL returned error/i],
];

export function classifyGitOutput(text: string): GitFailureKind {
  for (const [kind, re] of PATTERNS) if (re.test(text)) return kind;
  return 'other';
}

/** The lines of git's output worth showing (fatal/error/remote lines), shortened. */
export function gitReason(text: string): string {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !/^hint:/.test(l));
  const important = lines.filter((l) => /^(fatal|error|remote|!|warning):?/i.test(l));
  const pick = [...new Set(important.length ? important : lines)].slice(0, 3).join('; ');
  return pick.length > 400 ? `${pick.slice(0, 400)}…` : pick || 'git failed without a message';
}

/** A failed git process: exit code and its scrubbed output. */
export class GitFailure extends Error {
  override name = 'GitFailure';
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    /** stdout + stderr, scrubbed. */
    readonly output: string,
  ) {
    super(`git ${command} failed${exitCode === null ? '' : ` (exit ${exitCode})`}: ${gitReason(output)}`);
  }

  get kind(): GitFailureKind {
    return classifyGitOutput(this.output);
  }
}

/** Turns a git failure into the store boundary's error classes (messages already scrubbed). */
export function storeErrorOf(err: unknown, ctx: { op: string; key?: string; where: string; branch?: string }): StoreError {
  if (err instanceof StoreError) return err;
  if (!(err instanceof GitFailure)) {
    const msg = err instanceof Error ? err.message : String(err);
    return new StoreError('git', ctx.op, ctx.key, msg, { cause: err });
  }
  const reason = gitReason(err.output);
  switch (err.kind) {
    case 'auth':
      return new StoreConfigError('git', ctx.op, `authentication to ${ctx.where} failed (${reason})`, 'check GITSTORE_GIT_USERNAME and GITSTORE_GIT_TOKEN (a token with read and write access to the repository); for ssh:// URLs check the key and GIT_SSH_COMMAND', { cause: err });
    case 'no-repo':
      return new StoreConfigError('git', ctx.op, `repository ${ctx.where} not found (${reason})`, 'check GITSTORE_GIT_URL (and that the token can see the repository)', { cause: err });
    case 'missing-ref':
      return new StoreConfigError('git', ctx.op, `branch ${ctx.branch ?? '?'} not found at ${ctx.where}`, 'check GITSTORE_GIT_BRANCH (empty = the remote\'s default branch)', { cause: err });
    case 'network':
      return new StoreError('git', ctx.op, ctx.key, `${ctx.where} unreachable: ${reason}`, { cause: err });
    default:
      return new StoreError('git', ctx.op, ctx.key, reason, { cause: err });
  }
}
