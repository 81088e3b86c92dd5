#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
// Command modules are imported when their command runs: `--help` and one-shot commands stay quick.
import { resolveConfig, type Config, type Flags, LOG_LEVELS } from './config/config.js';
import { createLogger, out, say } from './log.js';
import { ConfigError, GuardError, InvalidKeyError, StoreConfigError, VerificationError, errorMessage } from './core/errors.js';

/** Exit codes (also in --help and README). */
export const EXIT = { ok: 0, failure: 1, usage: 2, verification: 3, guard: 4 } as const;

const EXIT_HELP = `
Exit codes:
  0  success
  1  runtime failure: store unreachable, an item rejected or not synced; status --exit-code: not all in sync
  2  usage or configuration error: bad flag, variable or store URL, wrong credentials, missing
     database/bucket/branch, address in use, unwritable mirror (the message names the setting)
  3  verification failure: an item re-read after writing did not match
  4  refused by a guard: deletions beyond --max-delete, an empty store pulled into an empty mirror`;

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

type CommonOpts = Flags & { json?: boolean; ifEmpty?: boolean; dryRun?: boolean; allowEmpty?: boolean; exitCode?: boolean };

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
    .description("Keeps a proxy's config.yaml and OAuth credential files identical across instances and restarts,\nby mirroring a local directory against a shared store (PostgreSQL or a directory).")
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

  return program;
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
