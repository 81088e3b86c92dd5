import { ConfigError } from '../core/errors.js';
import type { EnvLookup } from './env.js';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOCAL_SUBDIR, type StoreSpec } from '../stores/spec.js';
import { redactUrl } from '../core/redact.js';

export { describeStore, type StoreSpec } from '../stores/spec.js';

/**
 * Parses a store URL (`--store`, `CREDSYNC_STORE`): `file:///path`, `postgres://…[?schema=…]`,
 * `s3://bucket/prefix?endpoint=…&region=…`, `git+https://…[#branch]`, `git+file:///…`.
 * S3 and Git credentials come from the OBJECTSTORE_* / GITSTORE_* variables.
 */
export function parseStoreUrl(raw: string, env: EnvLookup, cwd: string): StoreSpec {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(`store ${redactUrl(raw)}: not a URL (expected file:///path, postgres://…, s3://bucket/prefix?endpoint=…, git+https://…)`);
  }
  switch (u.protocol) {
    case 'file:':
      return { kind: 'dir', path: resolve(cwd, fileURLToPath(u)) };
    case 'postgres:':
    case 'postgresql:': {
      const schema = u.searchParams.get('schema') ?? undefined;
      u.searchParams.delete('schema');
      return { kind: 'postgres', dsn: u.toString(), schema: schema?.trim() || undefined };
    }
    case 's3:': {
      const endpoint = u.searchParams.get('endpoint') ?? env('OBJECTSTORE_ENDPOINT');
      if (!endpoint) throw new ConfigError(`store ${redactUrl(raw)}: missing ?endpoint= (or OBJECTSTORE_ENDPOINT)`);
      const prefix = u.pathname.replace(/^\/+|\/+$/g, '');
      return {
        kind: 's3',
        endpoint,
        bucket: u.hostname,
        prefix: prefix || undefined,
        region: u.searchParams.get('region') ?? env('OBJECTSTORE_REGION'),
        accessKey: env('OBJECTSTORE_ACCESS_KEY'),
        secretKey: env('OBJECTSTORE_SECRET_KEY'),
      };
    }
    default:
      if (u.protocol.startsWith('git+')) {
        const branch = decodeURIComponent(u.hash.replace(/^#/, '')) || undefined;
        u.hash = '';
        return { kind: 'git', url: u.toString().replace(/^git\+/, ''), username: env('GITSTORE_GIT_USERNAME') ?? 'git', token: env('GITSTORE_GIT_TOKEN'), branch };
      }
      throw new ConfigError(`store ${redactUrl(raw)}: unsupported scheme ${u.protocol} (expected file:, postgres:, s3:, git+https: or git+file:)`);
  }
}

/** CLIProxyAPI's selection: PGSTORE_DSN → OBJECTSTORE_ENDPOINT → GITSTORE_GIT_URL; null when none is set. */
export function storeFromEnv(env: EnvLookup): { spec: StoreSpec; source: string } | null {
  const dsn = env('PGSTORE_DSN');
  if (dsn) return { spec: { kind: 'postgres', dsn, schema: env('PGSTORE_SCHEMA') }, source: 'PGSTORE_DSN' };
  const endpoint = env('OBJECTSTORE_ENDPOINT');
  if (endpoint) {
    const bucket = env('OBJECTSTORE_BUCKET');
    const accessKey = env('OBJECTSTORE_ACCESS_KEY');
    const secretKey = env('OBJECTSTORE_SECRET_KEY');
    const missing = [!bucket && 'OBJECTSTORE_BUCKET', !accessKey && 'OBJECTSTORE_ACCESS_KEY', !secretKey && 'OBJECTSTORE_SECRET_KEY'].filter(Boolean);
    if (missing.length) throw new ConfigError(`store OBJECTSTORE_ENDPOINT: ${missing.join(', ')} must be set too`);
    if (!/^https?:\/\//i.test(endpoint) && /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint)) {
      throw new ConfigError(`store OBJECTSTORE_ENDPOINT: scheme must be http:// or https://`);
    }
    return {
      spec: { kind: 's3', endpoint: /^https?:\/\//i.test(endpoint) ? endpoint : `https://${endpoint}`, bucket: bucket!, accessKey, secretKey, prefix: env('OBJECTSTORE_PREFIX'), region: env('OBJECTSTORE_REGION') },
      source: 'OBJECTSTORE_ENDPOINT',
    };
  }
  const gitUrl = env('GITSTORE_GIT_URL');
  if (gitUrl) {
    return { spec: { kind: 'git', url: gitUrl, username: env('GITSTORE_GIT_USERNAME') ?? 'git', token: env('GITSTORE_GIT_TOKEN'), branch: env('GITSTORE_GIT_BRANCH') }, source: 'GITSTORE_GIT_URL' };
  }
  return null;
}

/** `<*_LOCAL_PATH | WRITABLE_PATH | cwd>/<pgstore|objectstore|gitstore>` exactly as CLIProxyAPI computes it. */
export function defaultLocalDir(spec: StoreSpec, env: EnvLookup, cwd: string): string {
  const own = spec.kind === 'postgres' ? env('PGSTORE_LOCAL_PATH') : spec.kind === 's3' ? env('OBJECTSTORE_LOCAL_PATH') : spec.kind === 'git' ? env('GITSTORE_LOCAL_PATH') : undefined;
  return resolve(cwd, own ?? env('WRITABLE_PATH') ?? cwd, LOCAL_SUBDIR[spec.kind]);
}
