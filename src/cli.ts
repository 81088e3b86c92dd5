#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
// Command modules are imported when their command runs: `--help` and one-shot commands stay quick.
import { resolveConfig, type Config, type Flags, LOG_LEVELS } from './config/config.js';
import { createLogger } from './log.js';
import { ConfigError, GuardError, InvalidKeyError, StoreConfigError, VerificationError, errorMessage } from './core/errors.js';
import { parseDeleteLimit } from './engine/guard.js';

/** Exit codes (also in --help and README), the same for every command. */
export const EXIT = { ok: 0, failure: 1, usage: 2, verification: 3, guard: 4 } as const;

const EXIT_HELP = `
Exit codes:
  0  success
  1  runtime failure (store unreachable, an item could not be synced or written, a doctor check failed)
  2  usage or configuration error (bad flag, bad variable, bad store URL, wrong store credentials or permissions)
  3  verification failure (an archive that does not verify, an item re-read after writing that does not match)
  4  refused by a guard (--max-delete, restore --mode mirror onto a non-empty store without --force)`;

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

type CommonOpts = Flags & { json?: boolean; ifEmpty?: boolean };

/** Options every command understands; flags win over environment and .env. */
function common(cmd: Command): Command {
  return cmd
    .option('--store <url>', 'store URL: file:///path, postgres://…[?schema=…] (env CREDSYNC_STORE; default: PGSTORE_DSN, OBJECTSTORE_*, GITSTORE_* or ./data/store)')
    .option('--local-dir <dir>', 'mirror root the proxy reads (env CREDSYNC_LOCAL_DIR; default <*_LOCAL_PATH|WRITABLE_PATH|cwd>/pgstore …)')
    .addOption(new Option('--conflict <policy>', 'who wins when both sides changed (env CREDSYNC_CONFLICT)').choices(['newest', 'store', 'local']))
    .option('--max-delete <limit>', 'most deletions one reconcile may propagate: 50% or a count (env CREDSYNC_MAX_DELETE)')
    .addOption(new Option('--log-level <level>', 'log level (env CREDSYNC_LOG_LEVEL)').choices([...LOG_LEVELS]))
    .option('--seed-config <file>', 'config to seed an empty store with (env CREDSYNC_SEED_CONFIG; default ./config.example.yaml if present)')
    .addHelpText('after', EXIT_HELP);
}

function setup(opts: CommonOpts): { config: Config; log: ReturnType<typeof createLogger> } {
  const config = resolveConfig(opts);
  return { config, log: createLogger(config.logLevel) };
}

const out = (s: string): void => {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
};

/** First SIGTERM/SIGINT resolves (graceful flush); a second one exits at once. */
function shutdownSignal(): Promise<string> {
  return new Promise((resolve) => {
    let seen = false;
    const on = (sig: NodeJS.Signals): void => {
      if (seen) {
        process.stderr.write(`credsync: second ${sig}: exiting without flushing\n`);
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
    .description("Keeps a proxy's config.yaml and OAuth credential files identical across instances and restarts,\nby mirroring a local directory against a shared store (PostgreSQL or a directory).")
    .version(version, '-V, --version')
    .showHelpAfterError('(run credsync --help for usage)')
    .addHelpText('after', EXIT_HELP)
    .exitOverride();

  common(program.command('run'))
    .description('run the daemon: reconcile, then keep mirror and store in sync until SIGTERM/SIGINT (flushes, then exits 0)')
    .option('--http-addr <addr>', 'health/readiness/metrics listener host:port, or off (env CREDSYNC_HTTP_ADDR; default 127.0.0.1:8319)')
    .action(async (opts: CommonOpts) => {
      const { config, log } = setup(opts);
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
    if (mode === 'pull') cmd.option('--if-empty', 'do nothing when the mirror already holds a config or a credential');
    cmd.option('--json', 'machine-readable report on stdout').action(async (opts: CommonOpts) => {
      const { config, log } = setup(opts);
      const { runOnce } = await import('./commands/once.js');
      setCode(await runOnce(mode, config, log, { json: opts.json, ifEmpty: opts.ifEmpty }, out));
    });
  }

  common(program.command('status'))
    .description('per item: in sync / local only / store only / differs / rejected, plus pending pushes; changes nothing')
    .option('--json', 'machine-readable output on stdout')
    .action(async (opts: CommonOpts) => {
      const { config, log } = setup({ ...opts, logLevel: opts.logLevel ?? 'warn' });
      const { runStatus } = await import('./commands/status.js');
      setCode(await runStatus(config, log, { json: opts.json }, out));
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

async function operatorDeps(opts: OperatorOpts): Promise<import('./commands/migrate.js').OperatorDeps & { localDir: () => string }> {
  const flags: Flags = { store: opts.store, localDir: opts.localDir, logLevel: opts.logLevel };
  const level = opts.logLevel ?? process.env.CREDSYNC_LOG_LEVEL?.trim() ?? 'warn';
  const log = createLogger((LOG_LEVELS as readonly string[]).includes(level) ? (level as Config['logLevel']) : 'warn');
  const { processIo } = await import('./commands/output.js');
  let cached: Config | undefined;
  const config = (): Config => (cached ??= resolveConfig(flags));
  return { log, io: processIo(), envStore: () => config().store, localDir: () => config().localDir };
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
    .action(async (opts: OperatorOpts) => {
      const deps = await operatorDeps(opts);
      const { runMigrate } = await import('./commands/migrate.js');
      const dir = opts.fromCliproxyDir === true ? '~/.cli-proxy-api' : opts.fromCliproxyDir;
      setCode(
        await runMigrate(
          { from: opts.from, to: opts.to, fromCliproxyDir: dir, fromCliproxyConfig: opts.fromCliproxyConfig, mode: opts.mode ?? 'fill-missing', dryRun: Boolean(opts.dryRun), json: Boolean(opts.json), maxDelete: opts.maxDelete ? parseDeleteLimit(opts.maxDelete) : undefined },
          deps,
        ),
      );
    });

  operator(program.command('backup'), 'credsync backup --from "postgres://app@db/credsync" --out credsync-$(date +%F).tar.gz')
    .description('write one tar.gz archive of the store: manifest.json (SHA-256 per item) first, then every item at its key; 0600, written atomically')
    .requiredOption('--out <file>', 'archive path, or - for stdout')
    .option('--from <url>', 'store URL (default: the store the environment selects)')
    .option('--store <url>', 'alias of --from')
    .action(async (opts: OperatorOpts) => {
      const deps = await operatorDeps(opts);
      const { runBackup } = await import('./commands/backup.js');
      setCode(await runBackup({ from: opts.from ?? opts.store, out: opts.out!, json: Boolean(opts.json) }, deps));
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
      const deps = await operatorDeps(opts);
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
      const deps = await operatorDeps(opts);
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
      const deps = await operatorDeps(opts);
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
    process.stderr.write(`credsync: ${errorMessage(err)}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    if (err instanceof ConfigError || err instanceof InvalidKeyError || err instanceof StoreConfigError) return EXIT.usage;
    if (err instanceof VerificationError) return EXIT.verification;
    if (err instanceof GuardError) return EXIT.guard;
    return EXIT.failure;
  }
}

const code = await main(process.argv);
// Let piped stdout drain before exiting (process.exit would cut a large --json report short).
process.stdout.write('', () => process.exit(code));
