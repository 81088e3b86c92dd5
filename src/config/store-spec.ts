import { ConfigError } from '../core/errors.js';
import type { EnvLookup } from './env.js';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOCAL_SUBDIR, type StoreSpec } from '../stores/spec.js';
import { redactUrl } from '../core/redact.js';
import { parseBool, parseChoice, parseDuration } from './parse.js';

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
      if (!endpoint) throw new ConfigError(`store ${redactUrl(raw)}: missing ?endpoint= (or OBJECTSTORE_ENDPOINT); e.g. s3://bucket/prefix?endpoint=https://s3.example.com`);
      if (!u.hostname) throw new ConfigError(`store ${redactUrl(raw)}: missing bucket name (s3://BUCKET/prefix?endpoint=…)`);
      const prefix = decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '');
      return s3Spec(env, {
        endpoint: { raw: endpoint, name: u.searchParams.has('endpoint') ? 'the store URL\'s endpoint' : 'OBJECTSTORE_ENDPOINT' },
        bucket: u.hostname,
        prefix: prefix || undefined,
        region: u.searchParams.get('region') ?? undefined,
      });
    }
    default:
      if (u.protocol.startsWith('git+')) {
        const branch = decodeURIComponent(u.hash.replace(/^#/, '')) || undefined;
        u.hash = '';
        return gitSpec(env, u.toString().replace(/^git\+/, ''), branch);
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
    if (!bucket) throw new ConfigError('store OBJECTSTORE_ENDPOINT: OBJECTSTORE_BUCKET must be set too (the bucket holding config/ and auths/)');
    return { spec: s3Spec(env, { endpoint: { raw: endpoint, name: 'OBJECTSTORE_ENDPOINT' }, bucket, prefix: env('OBJECTSTORE_PREFIX') }), source: 'OBJECTSTORE_ENDPOINT' };
  }
  const gitUrl = env('GITSTORE_GIT_URL');
  if (gitUrl) return { spec: gitSpec(env, gitUrl, env('GITSTORE_GIT_BRANCH')), source: 'GITSTORE_GIT_URL' };
  return null;
}

/** `<*_LOCAL_PATH | WRITABLE_PATH | cwd>/<pgstore|objectstore|gitstore>` exactly as CLIProxyAPI computes it. */
export function defaultLocalDir(spec: StoreSpec, env: EnvLookup, cwd: string): string {
  const own = spec.kind === 'postgres' ? env('PGSTORE_LOCAL_PATH') : spec.kind === 's3' ? env('OBJECTSTORE_LOCAL_PATH') : spec.kind === 'git' ? env('GITSTORE_LOCAL_PATH') : undefined;
  return resolve(cwd, own ?? env('WRITABLE_PATH') ?? cwd, LOCAL_SUBDIR[spec.kind]);
}

/**
 * The S3 settings shared by `OBJECTSTORE_*` and `s3://` URLs. Endpoint: `http://` = no TLS,
 * `https://` or no scheme = TLS, anything else is an error. Keys: both or neither.
 */
function s3Spec(
  env: EnvLookup,
  o: { endpoint: { raw: string; name: string }; bucket: string; prefix?: string; region?: string },
): Extract<StoreSpec, { kind: 's3' }> {
  const raw = o.endpoint.raw.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) && !/^https?:\/\//i.test(raw)) {
    throw new ConfigError(`store ${o.endpoint.name}=${redactUrl(raw)}: the scheme must be http:// (no TLS) or https:// (or none, meaning https)`);
  }
  const accessKey = env('OBJECTSTORE_ACCESS_KEY');
  const secretKey = env('OBJECTSTORE_SECRET_KEY');
  if (Boolean(accessKey) !== Boolean(secretKey)) {
    const missing = accessKey ? 'OBJECTSTORE_SECRET_KEY' : 'OBJECTSTORE_ACCESS_KEY';
    throw new ConfigError(`store ${o.endpoint.name}: ${missing} is not set; set both OBJECTSTORE_ACCESS_KEY and OBJECTSTORE_SECRET_KEY, or neither to use the AWS default credential chain`);
  }
  const vhs = env('OBJECTSTORE_VIRTUAL_HOSTED_STYLE');
  const create = env('OBJECTSTORE_CREATE_BUCKET');
  const cond = env('OBJECTSTORE_CONDITIONAL_WRITES');
  const poll = env('OBJECTSTORE_POLL_INTERVAL');
  const pollIntervalMs = poll ? parseDuration('OBJECTSTORE_POLL_INTERVAL', poll) : undefined;
  if (pollIntervalMs !== undefined && pollIntervalMs < 100) throw new ConfigError(`OBJECTSTORE_POLL_INTERVAL ${poll}: must be at least 100ms`);
  return {
    kind: 's3',
    endpoint: /^https?:\/\//i.test(raw) ? raw : `https://${raw}`,
    bucket: o.bucket,
    ...(accessKey && secretKey ? { accessKey, secretKey } : {}),
    prefix: o.prefix?.replace(/^\/+|\/+$/g, '') || undefined,
    region: o.region ?? env('OBJECTSTORE_REGION') ?? 'us-east-1',
    virtualHostedStyle: vhs ? parseBool('OBJECTSTORE_VIRTUAL_HOSTED_STYLE', vhs) : false,
    createBucket: create ? parseBool('OBJECTSTORE_CREATE_BUCKET', create) : true,
    conditionalWrites: cond ? parseChoice('OBJECTSTORE_CONDITIONAL_WRITES', cond, ['auto', 'require', 'off'] as const) : 'auto',
    ...(pollIntervalMs !== undefined ? { pollIntervalMs } : {}),
  };
}

/** The Git settings shared by `GITSTORE_*` and `git+…` URLs. */
function gitSpec(env: EnvLookup, url: string, branch: string | undefined): Extract<StoreSpec, { kind: 'git' }> {
  let parsed: URL | null = null;
  try {
    parsed = new URL(url);
  } catch {
    // scp-like ssh addresses (git@host:path) are not URLs; git understands them.
  }
  if (parsed && !['https:', 'http:', 'file:', 'ssh:'].includes(parsed.protocol)) {
    throw new ConfigError(`store GITSTORE_GIT_URL=${redactUrl(url)}: unsupported scheme ${parsed.protocol} (expected https://, http://, file:// or ssh://)`);
  }
  // Credentials written into an http(s) URL are moved out of it: the URL ends up in the clone's
  // .git/config and in messages, the token must end up in neither.
  let urlUser: string | undefined;
  let urlToken: string | undefined;
  if (parsed && (parsed.password || parsed.username) && (parsed.protocol === 'https:' || parsed.protocol === 'http:')) {
    urlUser = decodeURIComponent(parsed.username) || undefined;
    urlToken = decodeURIComponent(parsed.password) || undefined;
    parsed.username = '';
    parsed.password = '';
    url = parsed.toString();
  }
  const poll = env('GITSTORE_POLL_INTERVAL');
  const pollIntervalMs = poll ? parseDuration('GITSTORE_POLL_INTERVAL', poll) : undefined;
  if (pollIntervalMs !== undefined && pollIntervalMs < 200) throw new ConfigError(`GITSTORE_POLL_INTERVAL ${poll}: must be at least 200ms`);
  const author = env('CREDSYNC_GIT_AUTHOR');
  if (author && !/^[^<>]+<[^<>\s]+>$/.test(author)) throw new ConfigError(`CREDSYNC_GIT_AUTHOR ${author}: expected "Name <email>"`);
  return {
    kind: 'git',
    url,
    username: env('GITSTORE_GIT_USERNAME') ?? urlUser ?? 'git',
    token: env('GITSTORE_GIT_TOKEN') ?? urlToken,
    branch: branch?.trim() || undefined,
    ...(author ? { author } : {}),
    ...(pollIntervalMs !== undefined ? { pollIntervalMs } : {}),
  };
}

/** The setting that chose the default mirror root, for messages (e.g. "PGSTORE_LOCAL_PATH/pgstore"). */
export function storeLocalSource(spec: StoreSpec, env: EnvLookup): string {
  const own = spec.kind === 'postgres' ? 'PGSTORE_LOCAL_PATH' : spec.kind === 's3' ? 'OBJECTSTORE_LOCAL_PATH' : spec.kind === 'git' ? 'GITSTORE_LOCAL_PATH' : undefined;
  const parent = own && env(own as 'PGSTORE_LOCAL_PATH') ? own : env('WRITABLE_PATH') ? 'WRITABLE_PATH' : 'the working directory';
  return `${parent}/${LOCAL_SUBDIR[spec.kind]}`;
}
