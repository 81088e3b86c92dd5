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
export function loadEnv(cwd: string, env: NodeJS.ProcessEnv = process.env): EnvLookup {
  let fileVars: Record<string, string> = {};
  const path = join(cwd, '.env');
  try {
    fileVars = parseDotenv(readFileSync(path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new ConfigError(`read ${path}: ${(err as Error).message}`, { cause: err });
  }
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
] as const;
export type EnvVar = (typeof ENV_VARS)[number];
