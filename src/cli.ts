#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
// Command modules are imported when their command runs: `--help` and one-shot commands stay quick.
import { resolveConfig, type Config, type Flags, LOG_LEVELS } from './config/config.js';
import { createLogger } from './log.js';
import { ConfigError, InvalidKeyError, StoreConfigError, VerificationError, errorMessage } from './core/errors.js';

/** Exit codes (also in --help and README). */
export const EXIT = { ok: 0, failure: 1, usage: 2, verification: 3 } as const;

const EXIT_HELP = `
Exit codes:
  0  success
  1  runtime failure (store unreachable, an item could not be synced)
  2  usage or configuration error (bad flag, bad variable, bad store URL, store credentials or
     settings the store refuses: wrong keys, missing bucket, unmet OBJECTSTORE_CONDITIONAL_WRITES=require)
  3  verification failure (an item re-read after writing did not match)`;

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

type CommonOpts = Flags & { json?: boolean; ifEmpty?: boolean };

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
    .description("Keeps a proxy's config.yaml and OAuth credential files identical across instances and restarts,\nby mirroring a local directory against a shared store (PostgreSQL, S3 or a directory).")
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
    process.stderr.write(`credsync: ${errorMessage(err)}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    if (err instanceof ConfigError || err instanceof InvalidKeyError || err instanceof StoreConfigError) return EXIT.usage;
    if (err instanceof VerificationError) return EXIT.verification;
    return EXIT.failure;
  }
}

const code = await main(process.argv);
// Let piped stdout drain before exiting (process.exit would cut a large --json report short).
process.stdout.write('', () => process.exit(code));
