#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
// Command modules are imported when their command runs: `--help` and one-shot commands stay quick.
import { resolveConfig, type Config, type Flags, LOG_LEVELS } from './config/config.js';
import { createLogger, out, say } from './log.js';
import { ConfigError, GuardError, InvalidKeyError, StoreConfigError, VerificationError, errorMessage } from './core/errors.js';
import { parseDeleteLimit } from './engine/guard.js';

/** Exit codes (also in --help and README), the same for every command. */
export const EXIT = { ok: 0, failure: 1, usage: 2, verification: 3, guard: 4 } as const;

const EXIT_HELP = `
Exit codes:
  0  success
  1  runtime failure: store unreachable, an item rejected or not synced, a doctor check failed;
     status --exit-code: not all in sync
  2  usage or configuration error: bad flag, variable or store URL, wrong credentials, missing
     database/bucket/branch, OBJECTSTORE_CONDITIONAL_WRITES=require unmet, address in use, unwritable
     mirror (the message names the setting)
  3  verification failure: an archive that does not verify, an item re-read after writing that does not match
  4  refused by a guard: deletions beyond --max-delete, an empty store pulled into an empty mirror,
     restore --mode mirror onto a non-empty store without --force`;

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

type CommonOpts = Flags & { json?: boolean; ifEmpty?: boolean; dryRun?: boolean; allowEmpty?: boolean; exitCode?: boolean };

/** Options every command understands; flags win over environment and .env. */
function common(cmd: Command): Command {
  return cmd
    .option('--store <url>', 'store URL: file:///path, postgres://…[?schema=…], s3://bucket/prefix?endpoint=… (env CREDSYNC_STORE; default: PGSTORE_DSN, OBJECTSTORE_*, GITSTORE_* or ./data/store)')
    .option('--local-dir <dir>', 'mirror root the proxy reads (env CREDSYNC_LOCAL_DIR; default <*_LOCAL_PATH|WRITABLE_PATH|cwd>/pgstore …)')
    .addOption(new Option('--conflict <policy>', 'who wins when both sides changed (env CREDSYNC_CONFLICT)').choices(['newest', 'store', 'local']))
    .option('--max-delete <limit>', 'most deletions one reconcile may propagate: 50% or a count (env CREDSYNC_MAX_DELETE)')
    .addOption(new Option('--log-level <level>', 'log level (env CREDSYNC_LOG_LEVEL)').choices([...LOG_LEVELS]))
    .option('--seed-config <file>', 'config to seed an empty store with (env CREDSYNC_SEED_CONFIG; default ./config.example.yaml if present)')
    .addHelpText('after', EXIT_HELP);
}

function setup(opts: CommonOpts, command: string): { config: Config; log: ReturnType<typeof createLogger> } {
  const config = resolveConfig(opts, { command });
  const log = createLogger(config.logLevel);
  for (const w of config.warnings) log.warn(w);
  return { config, log };
}

/** First SIGTERM/SIGINT resolves (graceful flush); a second one exits at once. */
function shutdownSignal(): Promise<string> {
  return new Promise((resolve) => {
    let seen = false;
    const on = (sig: NodeJS.Signals): void => {
      if (seen) {
        say('warn', `second ${sig}: exiting without flushing`);
        process.exit(sig === 'SIGINT' ? 130 : 143);
      }
      seen = true;
      resolve(sig);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

function buildProgram(setCode: (code: number) => void): Command {
  const program = new Command('credsync')
    .description("Keeps a proxy's config.yaml and OAuth credential files identical across instances and restarts,\nby mirroring a local directory against a shared store (PostgreSQL, S3 or a directory).")
    .version(version, '-V, --version')
    .showHelpAfterError('(run credsync --help for usage)')
    .addHelpText('after', EXIT_HELP)
    .exitOverride();

  common(program.command('run'))
    .description('run the daemon: reconcile, then keep mirror and store in sync until SIGTERM/SIGINT (flushes, then exits 0)')
    .option('--http-addr <addr>', 'health/readiness/metrics listener host:port, or off (env CREDSYNC_HTTP_ADDR; default 127.0.0.1:8319)')
    .action(async (opts: CommonOpts) => {
      const { config, log } = setup(opts, 'run');
      const { runDaemon } = await import('./commands/run.js');
      setCode(await runDaemon(config, log, shutdownSignal()));
    });

  const oneShot: Array<{ mode: 'pull' | 'push' | 'sync'; description: string }> = [
    { mode: 'pull', description: 'one reconcile that only brings store → mirror (init containers); never deletes in the store' },
    { mode: 'push', description: 'one reconcile that only brings mirror → store' },
    { mode: 'sync', description: 'one full two-way reconcile, then exit' },
  ];
  for (const { mode, description } of oneShot) {
    const cmd = common(program.command(mode)).description(description);
    if (mode === 'pull') {
      cmd.option('--if-empty', 'do nothing when the mirror already holds a config or a credential');
      cmd.option('--allow-empty', 'succeed even when the store is empty and so is the mirror (otherwise exit 4: an init container must not start a proxy with nothing)');
    }
    cmd
      .option('--dry-run', 'print the plan per key and change nothing (neither store nor mirror)')
      .option('--json', 'machine-readable report on stdout')
      .action(async (opts: CommonOpts) => {
        const { config, log } = setup(opts, mode);
        const { runOnce } = await import('./commands/once.js');
        setCode(await runOnce(mode, config, log, { json: opts.json, ifEmpty: opts.ifEmpty, dryRun: opts.dryRun, allowEmpty: opts.allowEmpty }, out));
      });
  }

  program
    .command('status')
    .argument('[key]', 'one item to explain, e.g. auths/claude-a@b.com.json')
    .description('per item: in sync / local only / store only / differs / rejected, plus pending pushes; creates and changes nothing.\nWith the store down it shows what the state file knows (pending pushes, last sync) and exits 1.')
    .option('--store <url>', 'store URL (env CREDSYNC_STORE; default: PGSTORE_DSN, OBJECTSTORE_*, GITSTORE_*)')
    .option('--local-dir <dir>', 'mirror root (env CREDSYNC_LOCAL_DIR)')
    .addOption(new Option('--log-level <level>', 'log level (env CREDSYNC_LOG_LEVEL; default warn here)').choices([...LOG_LEVELS]))
    .option('--exit-code', 'exit 1 when anything differs, is rejected or pending (like git diff --exit-code)')
    .option('--json', 'machine-readable output on stdout')
    .addHelpText('after', EXIT_HELP)
    .action(async (key: string | undefined, opts: CommonOpts) => {
      const { config, log } = setup({ ...opts, logLevel: opts.logLevel ?? 'warn' }, 'status');
      const { runStatus } = await import('./commands/status.js');
      setCode(await runStatus(config, log, { json: opts.json, exitCode: opts.exitCode, key }, out));
    });

  addOperatorCommands(program, setCode);
  return program;
}

type OperatorOpts = {
  from?: string;
  to?: string;
  store?: string;
  localDir?: string;
  fromCliproxyDir?: string | true;
  fromCliproxyConfig?: string;
  mode?: 'fill-missing' | 'overwrite' | 'mirror';
  dryRun?: boolean;
  force?: boolean;
  json?: boolean;
  yes?: boolean;
  maxDelete?: string;
  logLevel?: string;
  out?: string;
  in?: string;
  expired?: boolean;
  disabled?: boolean;
  conflicts?: boolean;
  olderThan?: string;
  expect?: string;
  encrypt?: boolean;
  decrypt?: boolean;
};

/** Options shared by the operator commands. */
function operator(cmd: Command, example: string): Command {
  return cmd
    .addOption(new Option('--log-level <level>', 'log level on stderr (env CREDSYNC_LOG_LEVEL; default warn for these commands)').choices([...LOG_LEVELS]))
    .option('--json', 'one result object on stdout (notes and progress on stderr)')
    .addHelpText('after', `\nExample:\n  ${example}\n${EXIT_HELP}`);
}

const modeOption = (dflt: string): Option =>
  new Option('--mode <mode>', 'fill-missing: never overwrite; overwrite: replace differing items; mirror: also delete target items the source lacks (delete guard applies)').choices(['fill-missing', 'overwrite', 'mirror']).default(dflt);

async function operatorDeps(opts: OperatorOpts, command: string): Promise<import('./commands/migrate.js').OperatorDeps & { localDir: () => string }> {
  const flags: Flags = { store: opts.store, localDir: opts.localDir, logLevel: opts.logLevel };
  const level = opts.logLevel ?? process.env.CREDSYNC_LOG_LEVEL?.trim() ?? 'warn';
  const log = createLogger((LOG_LEVELS as readonly string[]).includes(level) ? (level as Config['logLevel']) : 'warn');
  const { processIo } = await import('./commands/output.js');
  let cached: Config | undefined;
  // The environment's store only when asked for (no --from/--to): then a missing store is an error, never the built-in default.
  const config = (): Config => (cached ??= resolveConfig(flags, { command }));
  const { encryptionFromEnv } = await import('./config/encryption.js');
  const { loadEnv } = await import('./config/env.js');
  // Encryption settings come from the environment whatever --from/--to name (they are not the store's).
  const encryption = (): ReturnType<typeof encryptionFromEnv> => encryptionFromEnv(loadEnv(process.cwd()), process.cwd());
  return { log, io: processIo(), envStore: () => config().store, encryption, localDir: () => config().localDir };
}

function addOperatorCommands(program: Command, setCode: (code: number) => void): void {
  operator(program.command('migrate'), 'credsync migrate --from file:///srv/credsync --to "postgres://app@db/credsync?schema=proxy" --dry-run')
    .description('copy every item between two stores (or import a CLIProxyAPI file deployment), then re-read and verify every item by hash')
    .option('--from <url>', 'source store URL (default: the store the environment selects)')
    .option('--to <url>', 'target store URL (default: the store the environment selects)')
    .option('--from-cliproxy-dir [dir]', "import CLIProxyAPI's flat auth directory (*.json) instead of --from (default dir ~/.cli-proxy-api)")
    .option('--from-cliproxy-config <file>', 'with --from-cliproxy-dir: the config.yaml that proxy runs with (becomes config/config.yaml)')
    .addOption(modeOption('fill-missing'))
    .option('--dry-run', 'print the plan per key; change nothing')
    .option('--max-delete <limit>', 'mirror mode: most target items it may delete, 50% or a count (default 50%)')
    .option('--encrypt', 'write the target encrypted under the primary key of CREDSYNC_ENCRYPTION_KEYS (the source is decrypted if it is encrypted)')
    .option('--decrypt', 'read the source through CREDSYNC_ENCRYPTION_KEYS and write the target in plaintext')
    .action(async (opts: OperatorOpts) => {
      if (opts.encrypt && opts.decrypt) throw new ConfigError('migrate: --encrypt and --decrypt contradict each other');
      const deps = await operatorDeps(opts, 'migrate');
      const { runMigrate } = await import('./commands/migrate.js');
      const dir = opts.fromCliproxyDir === true ? '~/.cli-proxy-api' : opts.fromCliproxyDir;
      setCode(
        await runMigrate(
          { from: opts.from, to: opts.to, fromCliproxyDir: dir, fromCliproxyConfig: opts.fromCliproxyConfig, mode: opts.mode ?? 'fill-missing', dryRun: Boolean(opts.dryRun), json: Boolean(opts.json), maxDelete: opts.maxDelete ? parseDeleteLimit(opts.maxDelete) : undefined, encryption: opts.encrypt ? 'encrypt' : opts.decrypt ? 'decrypt' : undefined },
          deps,
        ),
      );
    });

  operator(program.command('backup'), 'credsync backup --from "postgres://app@db/credsync" --out credsync-$(date +%F).tar.gz')
    .description('write one tar.gz archive of the store: manifest.json (SHA-256 per item) first, then every item at its key; 0600, written atomically')
    .requiredOption('--out <file>', 'archive path, or - for stdout')
    .option('--from <url>', 'store URL (default: the store the environment selects)')
    .option('--store <url>', 'alias of --from')
    .option('--decrypt', 'archive plaintext, decrypted with CREDSYNC_ENCRYPTION_KEYS (default: the store\'s bytes as they are: ciphertext stays ciphertext)')
    .action(async (opts: OperatorOpts) => {
      const deps = await operatorDeps(opts, 'backup');
      const { runBackup } = await import('./commands/backup.js');
      setCode(await runBackup({ from: opts.from ?? opts.store, out: opts.out!, json: Boolean(opts.json), decrypt: Boolean(opts.decrypt) }, deps));
    });

  operator(program.command('rewrap'), 'CREDSYNC_ENCRYPTION_KEYS=k2:…,k1:… credsync rewrap --dry-run')
    .description('re-encrypt every item of the store under the primary (first) key of CREDSYNC_ENCRYPTION_KEYS, encrypting plaintext items (with CREDSYNC_ENCRYPTION=off: decrypt every item); each write conditional on the version read, safe while daemons run')
    .option('--store <url>', 'store URL (default: the store the environment selects)')
    .option('--dry-run', 'count what would change; write nothing')
    .action(async (opts: OperatorOpts) => {
      const deps = await operatorDeps(opts, 'rewrap');
      const { runRewrap } = await import('./commands/rewrap.js');
      setCode(await runRewrap({ store: opts.store, dryRun: Boolean(opts.dryRun), json: Boolean(opts.json) }, deps));
    });

  operator(program.command('restore'), 'credsync restore --in credsync-2026-01-31.tar.gz --to "postgres://app@db/credsync" --dry-run')
    .description('verify an archive completely (nothing is written if any check fails: exit 3), then restore it into a store and verify by re-reading')
    .requiredOption('--in <file>', 'archive path, or - for stdin')
    .option('--to <url>', 'target store URL (default: the store the environment selects)')
    .addOption(modeOption('fill-missing'))
    .option('--dry-run', 'verify and print the plan per key; change nothing')
    .option('--force', '--mode mirror: allow replacing a non-empty target')
    .option('--max-delete <limit>', 'mirror mode: most target items it may delete, 50% or a count (default 50%)')
    .action(async (opts: OperatorOpts) => {
      const deps = await operatorDeps(opts, 'restore');
      const { runRestore } = await import('./commands/restore.js');
      setCode(
        await runRestore(
          { in: opts.in!, to: opts.to, mode: opts.mode ?? 'fill-missing', dryRun: Boolean(opts.dryRun), force: Boolean(opts.force), json: Boolean(opts.json), maxDelete: opts.maxDelete ? parseDeleteLimit(opts.maxDelete) : undefined },
          deps,
        ),
      );
    });

  operator(program.command('prune'), 'credsync prune --expired --older-than 7d            # lists; add --yes to delete')
    .description('delete credentials expired past --older-than that have no refresh_token (--expired) or are disabled (--disabled), and old conflict copies (--conflicts); a dry run unless --yes')
    .option('--expired', 'credentials whose expiry (expired, expire, expires_at, expiresAt, expiry, expires) is past and that have no refresh_token')
    .option('--disabled', 'credentials with "disabled": true')
    .option('--conflicts', "conflict copies in <mirror>/.credsync/conflicts/ older than --older-than")
    .option('--older-than <duration>', 'how long past expiry / how old (90s, 30m, 12h, 7d, 2w)', '0')
    .option('--yes', 'delete (without it: a dry run listing what would go)')
    .option('--dry-run', 'list only (the default)')
    .option('--store <url>', 'store URL (default: the store the environment selects)')
    .option('--local-dir <dir>', 'mirror whose conflict copies --conflicts removes (default: as for run)')
    .option('--max-delete <limit>', 'most credentials one prune may delete, 50% or a count (default 50%)')
    .action(async (opts: OperatorOpts) => {
      if (opts.yes && opts.dryRun) throw new ConfigError('prune: --yes and --dry-run contradict each other');
      const deps = await operatorDeps(opts, 'prune');
      const { runPrune } = await import('./commands/prune.js');
      const { parseAge } = await import('./commands/operator.js');
      setCode(
        await runPrune(
          {
            store: opts.store,
            expired: Boolean(opts.expired),
            disabled: Boolean(opts.disabled),
            conflicts: Boolean(opts.conflicts),
            olderThanMs: parseAge('--older-than', opts.olderThan ?? '0'),
            yes: Boolean(opts.yes),
            json: Boolean(opts.json),
            maxDelete: opts.maxDelete ? parseDeleteLimit(opts.maxDelete) : undefined,
          },
          deps,
        ),
      );
    });

  operator(program.command('doctor'), 'PGSTORE_DSN=postgres://app@db/credsync credsync doctor --expect postgres')
    .description('check a deployment: configuration, store reachability and permissions, clock skew, the mirror, invalid and duplicate items; one line per check with the fix; exit 1 when a check fails')
    .option('--store <url>', 'store URL (default: the store the environment selects)')
    .option('--local-dir <dir>', 'mirror root (default: as for run)')
    .addOption(new Option('--expect <kind>', 'fail unless the selected store is of this kind').choices(['postgres', 's3', 'git', 'dir']))
    .action(async (opts: OperatorOpts) => {
      const deps = await operatorDeps(opts, 'doctor');
      const { runDoctor } = await import('./commands/doctor.js');
      setCode(await runDoctor({ json: Boolean(opts.json), expect: opts.expect, flags: { store: opts.store, localDir: opts.localDir } }, deps));
    });
}

async function main(argv: string[]): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram((c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok;
      return EXIT.usage; // commander already printed the message
    }
    const debug = process.env.CREDSYNC_LOG_LEVEL === 'debug' || process.env.CREDSYNC_LOG_LEVEL === 'trace';
    const code =
      err instanceof ConfigError || err instanceof InvalidKeyError || err instanceof StoreConfigError
        ? EXIT.usage
        : err instanceof VerificationError
          ? EXIT.verification
          : err instanceof GuardError
            ? EXIT.guard
            : EXIT.failure;
    say('fatal', errorMessage(err), { exitCode: code, ...(debug && err instanceof Error && err.stack ? { stack: err.stack } : {}) });
    return code;
  }
}

const code = await main(process.argv);
// Let piped stdout drain before exiting (process.exit would cut a large --json report short).
process.stdout.write('', () => process.exit(code));
