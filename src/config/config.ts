import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { CONFLICT_POLICIES, type ConflictPolicy } from '../engine/conflict.js';
import { parseDeleteLimit, type DeleteLimit } from '../engine/guard.js';
import { describeUnknown, loadEnv, unknownVariables, type EnvLookup, type EnvVar } from './env.js';
import { parseDuration, parseSize } from './parse.js';
import { secrets } from '../core/redact.js';
import { secretsOf, specProblem } from '../stores/spec.js';
import type { EncryptionSettings } from '../stores/registry.js';
import { encryptionFromEnv } from './encryption.js';

export { parseDuration } from './parse.js';
import { defaultLocalDir, describeStore, parseStoreUrl, storeFromEnv, storeLocalSource, type StoreSpec } from './store-spec.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Command-line flags (all optional); they win over environment and `.env`. */
export interface Flags {
  store?: string;
  localDir?: string;
  httpAddr?: string;
  logLevel?: string;
  conflict?: string;
  maxDelete?: string;
  seedConfig?: string;
}

export interface Config {
  readonly store: StoreSpec;
  /** Redacted store description for logs and output. */
  readonly storeLabel: string;
  /** Which setting chose the store (flag, variable, or the built-in default). */
  readonly storeSource: string;
  readonly localDir: string;
  readonly http: { readonly host: string; readonly port: number } | null;
  readonly logLevel: LogLevel;
  readonly conflict: ConflictPolicy;
  readonly maxDelete: DeleteLimit;
  readonly debounceMs: number;
  readonly reconcileIntervalMs: number;
  readonly shutdownTimeoutMs: number;
  readonly seedConfig?: string;
  /** True when nothing chose a store: the built-in directory store under ./data/. */
  readonly isDefault: boolean;
  /** Which setting chose the mirror root (for messages about it). */
  readonly localDirSource: string;
  /** Which setting chose the HTTP address. */
  readonly httpSource: string;
  /** Largest item accepted from either side (`CREDSYNC_MAX_ITEM_BYTES`). */
  readonly maxItemBytes: number;
  /** Encryption at rest (`CREDSYNC_ENCRYPTION`, `CREDSYNC_ENCRYPTION_KEYS[_FILE]`). */
  readonly encryption: EncryptionSettings;
  /** Things worth a warning at start-up (unknown variables, risky settings). */
  readonly warnings: readonly string[];
}

/** Commands for which the built-in directory store is used when nothing names a store (the quick start). */
const DEFAULT_STORE_COMMANDS = new Set(['run']);
export const DEFAULT_MAX_ITEM_BYTES = 1024 * 1024;

export const DEFAULT_HTTP_ADDR = '127.0.0.1:8319';

/** `host:port`, `:port` (all interfaces), or `off` to disable the HTTP server. */
export function parseHttpAddr(name: string, raw: string): Config['http'] {
  const s = raw.trim();
  if (s === 'off' || s === 'false' || s === 'none') return null;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`${name} ${raw}: expected host:port (e.g. 127.0.0.1:8319, :8319) or off`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function pick<T extends string>(name: string, raw: string, allowed: readonly T[]): T {
  const r = z.enum(allowed as unknown as [T, ...T[]]).safeParse(raw);
  if (!r.success) throw new ConfigError(`${name} ${raw}: expected one of ${allowed.join(', ')}`);
  return r.data;
}

/**
 * flags > environment > `.env` > defaults. Throws ConfigError (exit code 2) naming the flag or
 * variable at fault. Pure apart from reading `.env` and checking the seed file exists.
 */
export function resolveConfig(
  flags: Flags,
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; lookup?: EnvLookup; command?: string } = {},
): Config {
  const cwd = opts.cwd ?? process.cwd();
  const env = opts.lookup ?? loadEnv(cwd, opts.env ?? process.env);
  const unknown = opts.lookup ? [] : unknownVariables(cwd, opts.env ?? process.env);
  const warnings = unknown.map(describeUnknown);
  const setting = (flag: string | undefined, flagName: string, envName: EnvVar): { raw: string; name: string } | undefined => {
    if (flag !== undefined && flag.trim() !== '') return { raw: flag.trim(), name: flagName };
    const v = env(envName);
    return v === undefined ? undefined : { raw: v, name: envName };
  };

  let store: StoreSpec;
  let storeSource: string;
  let isDefault = false;
  const url = setting(flags.store, '--store', 'CREDSYNC_STORE');
  if (url) {
    store = parseStoreUrl(url.raw, env, cwd);
    storeSource = url.name;
  } else {
    const fromEnv = storeFromEnv(env);
    if (fromEnv) {
      store = fromEnv.spec;
      storeSource = fromEnv.source;
    } else if (opts.command === undefined || DEFAULT_STORE_COMMANDS.has(opts.command)) {
      store = { kind: 'dir', path: resolve(cwd, env('WRITABLE_PATH') ?? cwd, 'data/store') };
      storeSource = 'default';
      isDefault = true;
    } else {
      // Falling back to a local directory here would let an init container start a proxy with no
      // credentials and exit 0: a misspelled variable must be an error, not an empty mirror.
      const hints = unknown.filter((u) => u.suggestion).map(describeUnknown);
      throw new ConfigError(
        `${opts.command}: no store configured: set PGSTORE_DSN (PostgreSQL), OBJECTSTORE_ENDPOINT (S3) or GITSTORE_GIT_URL (Git), ` +
          `or pass --store URL (file:///path for a directory)${hints.length ? `. ${hints.join('. ')}` : ''}`,
      );
    }
  }
  for (const x of secretsOf(store)) secrets.add(x);
  const problem = specProblem(store);
  if (problem) {
    throw new ConfigError(`${storeSource} ${describeStore(store)}: ${problem}; the value is not shown because it may contain a password — check ${storeSource}`);
  }
  if (store.kind === 'postgres' && /[?&]schema=/i.test(store.dsn) && storeSource === 'PGSTORE_DSN') {
    warnings.push('PGSTORE_DSN has a ?schema= parameter: credsync understands it, but CLIProxyAPI\'s Go driver fails on it ("unrecognized configuration parameter schema") — use PGSTORE_SCHEMA instead');
  }

  const local = setting(flags.localDir, '--local-dir', 'CREDSYNC_LOCAL_DIR');
  const localDir = local ? resolve(cwd, local.raw) : defaultLocalDir(store, env, cwd);
  if (store.kind === 'dir' && resolve(store.path) === resolve(localDir)) {
    throw new ConfigError(`local dir ${localDir}: is the store directory itself; give the mirror its own directory`);
  }

  const http = setting(flags.httpAddr, '--http-addr', 'CREDSYNC_HTTP_ADDR');
  const level = setting(flags.logLevel, '--log-level', 'CREDSYNC_LOG_LEVEL');
  const conflict = setting(flags.conflict, '--conflict', 'CREDSYNC_CONFLICT');
  const maxDelete = setting(flags.maxDelete, '--max-delete', 'CREDSYNC_MAX_DELETE');
  const debounce = env('CREDSYNC_DEBOUNCE');
  const interval = env('CREDSYNC_RECONCILE_INTERVAL');
  const shutdown = env('CREDSYNC_SHUTDOWN_TIMEOUT');
  const seed = setting(flags.seedConfig, '--seed-config', 'CREDSYNC_SEED_CONFIG');
  const maxItem = env('CREDSYNC_MAX_ITEM_BYTES');
  const encryption = encryptionFromEnv(env, cwd);

  const reconcileIntervalMs = interval ? parseDuration('CREDSYNC_RECONCILE_INTERVAL', interval) : 60_000;
  if (reconcileIntervalMs < 1000) throw new ConfigError(`CREDSYNC_RECONCILE_INTERVAL ${interval}: must be at least 1s`);
  let seedConfig: string | undefined;
  if (seed) {
    seedConfig = resolve(cwd, seed.raw);
    if (!existsSync(seedConfig)) throw new ConfigError(`${seed.name} ${seed.raw}: ${seedConfig} does not exist; give an existing YAML file, or leave ${seed.name} unset`);
  } else if (existsSync(resolve(cwd, 'config.example.yaml'))) seedConfig = resolve(cwd, 'config.example.yaml');

  return {
    store,
    storeLabel: describeStore(store),
    storeSource,
    localDir,
    http: http ? parseHttpAddr(http.name, http.raw) : parseHttpAddr('default', DEFAULT_HTTP_ADDR),
    logLevel: level ? pick(level.name, level.raw, LOG_LEVELS) : 'info',
    conflict: conflict ? pick(conflict.name, conflict.raw, CONFLICT_POLICIES) : 'newest',
    maxDelete: maxDelete ? withName(maxDelete.name, () => parseDeleteLimit(maxDelete.raw)) : { percent: 50 },
    debounceMs: debounce ? parseDuration('CREDSYNC_DEBOUNCE', debounce) : 25,
    reconcileIntervalMs,
    shutdownTimeoutMs: shutdown ? parseDuration('CREDSYNC_SHUTDOWN_TIMEOUT', shutdown) : 10_000,
    seedConfig,
    isDefault,
    localDirSource: local ? local.name : storeLocalSource(store, env),
    httpSource: http ? http.name : 'the default',
    maxItemBytes: maxItem ? parseSize('CREDSYNC_MAX_ITEM_BYTES', maxItem) : DEFAULT_MAX_ITEM_BYTES,
    encryption,
    warnings,
  };
}

function withName<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(err.message.replace(/^--max-delete/, name), { cause: err });
    throw err;
  }
}
