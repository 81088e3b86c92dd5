import { describe, it, expect } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/core/errors.js';
import { tempDir } from '../support/tmp.js';

const cfg = (flags: Parameters<typeof resolveConfig>[0], env: Record<string, string>, cwd = '/srv') => resolveConfig(flags, { cwd, env });

describe('configuration', () => {
  it('defaults to the built-in directory store and a mirror under ./data/', () => {
    const c = cfg({}, {});
    expect(c.store).toEqual({ kind: 'dir', path: '/srv/data/store' });
    expect(c.localDir).toBe('/srv/data/mirror');
    expect(c.isDefault).toBe(true);
    expect(c.http).toEqual({ host: '127.0.0.1', port: 8319 });
    expect(c.conflict).toBe('newest');
    expect(c.maxDelete).toEqual({ percent: 50 });
  });

  it('selects stores in CLIProxyAPI order: PGSTORE_DSN, then OBJECTSTORE_ENDPOINT, then GITSTORE_GIT_URL', () => {
    const all = { PGSTORE_DSN: 'postgres://u:p@h/db', OBJECTSTORE_ENDPOINT: 'http://s3', OBJECTSTORE_BUCKET: 'b', OBJECTSTORE_ACCESS_KEY: 'a', OBJECTSTORE_SECRET_KEY: 's', GITSTORE_GIT_URL: 'https://g/r.git' };
    expect(cfg({}, all).store.kind).toBe('postgres');
    expect(cfg({}, { ...all, PGSTORE_DSN: '   ' }).store.kind).toBe('s3');
    expect(cfg({}, { GITSTORE_GIT_URL: 'https://g/r.git' }).store).toEqual({ kind: 'git', url: 'https://g/r.git', username: 'git', token: undefined, branch: undefined });
  });

  it('computes the mirror root exactly as CLIProxyAPI: <*_LOCAL_PATH|WRITABLE_PATH|cwd>/pgstore', () => {
    expect(cfg({}, { PGSTORE_DSN: 'postgres://h/db' }).localDir).toBe('/srv/pgstore');
    expect(cfg({}, { PGSTORE_DSN: 'postgres://h/db', WRITABLE_PATH: '/w' }).localDir).toBe('/w/pgstore');
    expect(cfg({}, { PGSTORE_DSN: 'postgres://h/db', WRITABLE_PATH: '/w', PGSTORE_LOCAL_PATH: '/p' }).localDir).toBe('/p/pgstore');
    expect(cfg({}, { PGSTORE_DSN: 'postgres://h/db', CREDSYNC_LOCAL_DIR: '/exact' }).localDir).toBe('/exact');
    expect(cfg({ localDir: 'rel' }, { CREDSYNC_LOCAL_DIR: '/exact' }).localDir).toBe('/srv/rel');
  });

  it('accepts lower-case variable names like CLIProxyAPI', () => {
    expect(cfg({}, { pgstore_dsn: 'postgres://h/db', pgstore_schema: 'cs' }).store).toEqual({ kind: 'postgres', dsn: 'postgres://h/db', schema: 'cs' });
  });

  it('flags beat the environment, which beats .env', async () => {
    const d = await tempDir();
    try {
      await writeFile(join(d.path, '.env'), 'CREDSYNC_CONFLICT=store\nCREDSYNC_MAX_DELETE=10\nCREDSYNC_LOG_LEVEL=debug\n');
      const c = resolveConfig({ conflict: 'local' }, { cwd: d.path, env: { CREDSYNC_MAX_DELETE: '20%' } });
      expect(c.conflict).toBe('local');
      expect(c.maxDelete).toEqual({ percent: 20 });
      expect(c.logLevel).toBe('debug');
    } finally {
      await d.remove();
    }
  });

  it('parses store URLs, taking the schema out of the DSN', () => {
    expect(cfg({ store: 'postgres://u:pw@db:5432/app?schema=cred&sslmode=disable' }, {}).store).toEqual({ kind: 'postgres', dsn: 'postgres://u:pw@db:5432/app?sslmode=disable', schema: 'cred' });
    expect(cfg({ store: 'file:///data/store' }, {}).store).toEqual({ kind: 'dir', path: '/data/store' });
    expect(cfg({}, { CREDSYNC_STORE: 'file:///x', PGSTORE_DSN: 'postgres://h/db' }).store.kind).toBe('dir');
  });

  it('redacts passwords in the store label', () => {
    const c = cfg({}, { PGSTORE_DSN: 'postgres://user:hunter2@db/app' });
    expect(c.storeLabel).toBe('postgres://user:***@db/app');
    expect(JSON.stringify(c.storeLabel)).not.toContain('hunter2');
  });

  it.each([
    [{ store: 'ftp://x' }, {}, /store ftp:\/\/x: unsupported scheme ftp:/],
    [{ store: 'not a url' }, {}, /not a URL/],
    [{}, { CREDSYNC_CONFLICT: 'random' }, /CREDSYNC_CONFLICT random: expected one of newest, store, local/],
    [{ maxDelete: 'lots' }, {}, /--max-delete lots: expected a percentage/],
    [{}, { CREDSYNC_MAX_DELETE: '150%' }, /CREDSYNC_MAX_DELETE 150%: a percentage must be between/],
    [{}, { CREDSYNC_HTTP_ADDR: 'localhost' }, /CREDSYNC_HTTP_ADDR localhost: expected host:port/],
    [{}, { CREDSYNC_RECONCILE_INTERVAL: 'often' }, /CREDSYNC_RECONCILE_INTERVAL often: expected a duration/],
    [{}, { OBJECTSTORE_ENDPOINT: 'http://s3' }, /OBJECTSTORE_BUCKET must be set/],
    [{}, { OBJECTSTORE_ENDPOINT: 'ftp://s3', OBJECTSTORE_BUCKET: 'b' }, /OBJECTSTORE_ENDPOINT=ftp:\/\/s3: the scheme must be http:\/\//],
    [{}, { OBJECTSTORE_ENDPOINT: 'http://s3', OBJECTSTORE_BUCKET: 'b', OBJECTSTORE_ACCESS_KEY: 'AK' }, /OBJECTSTORE_SECRET_KEY is not set/],
    [{}, { OBJECTSTORE_ENDPOINT: 'http://s3', OBJECTSTORE_BUCKET: 'b', OBJECTSTORE_CONDITIONAL_WRITES: 'maybe' }, /OBJECTSTORE_CONDITIONAL_WRITES maybe: expected one of auto, require, off/],
    [{}, { GITSTORE_GIT_URL: 'ftp://host/repo.git' }, /GITSTORE_GIT_URL=ftp:\/\/host\/repo.git: unsupported scheme/],
    [{}, { GITSTORE_GIT_URL: 'https://h/r.git', CREDSYNC_GIT_AUTHOR: 'nobody' }, /CREDSYNC_GIT_AUTHOR nobody: expected "Name <email>"/],
    [{ store: 'file:///srv/m', localDir: '/srv/m' }, {}, /is the store directory itself/],
  ])('rejects %j %j with a message naming the setting', (flags, env, msg) => {
    expect(() => cfg(flags, env)).toThrow(ConfigError);
    expect(() => cfg(flags, env)).toThrow(msg);
  });

  it('turns the HTTP server off with "off" and parses durations', () => {
    const c = cfg({ httpAddr: 'off' }, { CREDSYNC_DEBOUNCE: '40ms', CREDSYNC_SHUTDOWN_TIMEOUT: '3s', CREDSYNC_RECONCILE_INTERVAL: '2m' });
    expect(c.http).toBeNull();
    expect(c.debounceMs).toBe(40);
    expect(c.shutdownTimeoutMs).toBe(3000);
    expect(c.reconcileIntervalMs).toBe(120_000);
    expect(cfg({ httpAddr: ':9000' }, {}).http).toEqual({ host: '0.0.0.0', port: 9000 });
  });
});

describe('S3 and Git settings', () => {
  it('reads every OBJECTSTORE_* setting, keys optional (default credential chain)', () => {
    const c = resolveConfig({}, { cwd: '/nonexistent-cwd', lookup: (n) => ({ OBJECTSTORE_ENDPOINT: 's3.example.com', OBJECTSTORE_BUCKET: 'b', OBJECTSTORE_PREFIX: '/team/', OBJECTSTORE_POLL_INTERVAL: '250ms', OBJECTSTORE_CREATE_BUCKET: 'false' })[n as string] });
    expect(c.store).toMatchObject({ kind: 's3', endpoint: 'https://s3.example.com', bucket: 'b', prefix: 'team', region: 'us-east-1', createBucket: false, conditionalWrites: 'auto', pollIntervalMs: 250 });
    expect(c.store).not.toHaveProperty('accessKey');
    expect(c.localDir).toBe('/nonexistent-cwd/objectstore');
  });

  it('moves credentials out of a Git URL so the token never reaches .git/config or a message', () => {
    const c = resolveConfig({}, { cwd: '/w', lookup: (n) => ({ GITSTORE_GIT_URL: 'https://bob:tok3nSECRET@git.example.com/r.git' })[n as string] });
    expect(c.store).toMatchObject({ kind: 'git', url: 'https://git.example.com/r.git', username: 'bob', token: 'tok3nSECRET' });
    expect(c.storeLabel).not.toContain('tok3nSECRET');
    expect(c.localDir).toBe('/w/gitstore');
  });
});
