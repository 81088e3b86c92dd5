import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { ConfigError } from '../core/errors.js';

/** Reads variables like CLIProxyAPI: UPPER or lower case name; empty or whitespace-only counts as unset. */
export type EnvLookup = (name: EnvVar) => string | undefined;

/**
 * `.env` in `cwd` first, real environment variables winning over it. A missing `.env` is fine;
 * an unreadable one is a ConfigError. Does not modify `process.env`.
 */
function readDotenv(cwd: string): Record<string, string> {
  const path = join(cwd, '.env');
  try {
    return parseDotenv(readFileSync(path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new ConfigError(`read ${path}: ${(err as Error).message}`, { cause: err });
    return {};
  }
}

export function loadEnv(cwd: string, env: NodeJS.ProcessEnv = process.env): EnvLookup {
  const fileVars = readDotenv(cwd);
  const pick = (source: Record<string, string | undefined>, name: string): string | undefined => {
    for (const n of [name, name.toLowerCase()]) {
      const v = source[n];
      if (v !== undefined && v.trim() !== '') return v.trim();
    }
    return undefined;
  };
  return (name) => pick(env, name) ?? pick(fileVars, name);
}

/** Every variable credsync reads (kept in step with .env.example by a test). */
export const ENV_VARS = [
  'PGSTORE_DSN',
  'PGSTORE_SCHEMA',
  'PGSTORE_LOCAL_PATH',
  'OBJECTSTORE_ENDPOINT',
  'OBJECTSTORE_BUCKET',
  'OBJECTSTORE_ACCESS_KEY',
  'OBJECTSTORE_SECRET_KEY',
  'OBJECTSTORE_LOCAL_PATH',
  'OBJECTSTORE_PREFIX',
  'OBJECTSTORE_REGION',
  'OBJECTSTORE_VIRTUAL_HOSTED_STYLE',
  'OBJECTSTORE_CREATE_BUCKET',
  'OBJECTSTORE_CONDITIONAL_WRITES',
  'OBJECTSTORE_POLL_INTERVAL',
  'GITSTORE_GIT_URL',
  'GITSTORE_GIT_USERNAME',
  'GITSTORE_GIT_TOKEN',
  'GITSTORE_GIT_BRANCH',
  'GITSTORE_LOCAL_PATH',
  'GITSTORE_POLL_INTERVAL',
  'CREDSYNC_GIT_AUTHOR',
  'WRITABLE_PATH',
  'CREDSYNC_STORE',
  'CREDSYNC_LOCAL_DIR',
  'CREDSYNC_HTTP_ADDR',
  'CREDSYNC_LOG_LEVEL',
  'CREDSYNC_CONFLICT',
  'CREDSYNC_MAX_DELETE',
  'CREDSYNC_DEBOUNCE',
  'CREDSYNC_RECONCILE_INTERVAL',
  'CREDSYNC_SHUTDOWN_TIMEOUT',
  'CREDSYNC_SEED_CONFIG',
  'CREDSYNC_MAX_ITEM_BYTES',
  'CREDSYNC_ENCRYPTION',
  'CREDSYNC_ENCRYPTION_KEYS',
  'CREDSYNC_ENCRYPTION_KEYS_FILE',
] as const;
export type EnvVar = (typeof ENV_VARS)[number];

/**
 * Standard variables read by the PostgreSQL driver itself, not by credsync's configuration:
 * `PGPASSWORD` supplies the password when the DSN has none (no URL-escaping needed).
 */
export const DRIVER_ENV_VARS = ['PGPASSWORD'] as const;

const OUR_PREFIXES = ['PGSTORE_', 'OBJECTSTORE_', 'GITSTORE_', 'CREDSYNC_'];
/** Variables of ours that are read elsewhere (tests, benchmarks), not by credsync itself. */
const IGNORED_PREFIXES = ['CREDSYNC_TEST_', 'CREDSYNC_BENCH_'];

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

export interface UnknownVariable {
  readonly name: string;
  /** Where it was found: the environment or `.env`. */
  readonly from: 'environment' | '.env';
  /** The known variable it most likely means, if any is close. */
  readonly suggestion?: EnvVar;
}

/**
 * Variables with one of our prefixes (`PGSTORE_`, `OBJECTSTORE_`, `GITSTORE_`, `CREDSYNC_`) that
 * credsync does not read — most often a typo (`PGSTORE_DNS`) that would otherwise be ignored silently.
 */
export function unknownVariables(cwd: string, env: NodeJS.ProcessEnv = process.env): UnknownVariable[] {
  const known = new Set<string>(ENV_VARS);
  const out: UnknownVariable[] = [];
  const seen = new Set<string>();
  const check = (raw: string, from: UnknownVariable['from']): void => {
    const name = raw.toUpperCase();
    if (known.has(name) || seen.has(name)) return;
    if (!OUR_PREFIXES.some((p) => name.startsWith(p)) || IGNORED_PREFIXES.some((p) => name.startsWith(p))) return;
    seen.add(name);
    let best: EnvVar | undefined;
    let bestD = Infinity;
    for (const k of ENV_VARS) {
      const dd = distance(name, k);
      if (dd < bestD) {
        bestD = dd;
        best = k;
      }
    }
    out.push(bestD <= Math.max(2, Math.floor(name.length / 5)) && best ? { name, from, suggestion: best } : { name, from });
  };
  for (const k of Object.keys(env)) check(k, 'environment');
  let fileVars: Record<string, string> = {};
  try {
    fileVars = readDotenv(cwd);
  } catch {
    // loadEnv reports an unreadable .env
  }
  for (const k of Object.keys(fileVars)) check(k, '.env');
  return out;
}

export function describeUnknown(u: UnknownVariable): string {
  return `${u.name} (in the ${u.from}) is not a credsync setting${u.suggestion ? `; did you mean ${u.suggestion}?` : ''}`;
}
