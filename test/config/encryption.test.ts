import { describe, it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../../src/core/errors.js';
import { secrets } from '../../src/core/redact.js';
import { encryptionFromEnv, parseKeyList } from '../../src/config/encryption.js';
import { resolveConfig } from '../../src/config/config.js';
import type { EnvLookup } from '../../src/config/env.js';
import { tempDir } from '../support/tmp.js';

const b64 = (n = 32): string => randomBytes(n).toString('base64');
const lookup = (vars: Record<string, string>): EnvLookup => (name) => vars[name];

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('encryption keys', () => {
  it('parses kid:base64key entries, first = primary; default mode on when keys are set, off otherwise', () => {
    const a = b64();
    const b = randomBytes(32).toString('base64url');
    const s = encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION_KEYS: `new:${a}, old:${b}` }), '/');
    expect(s.mode).toBe('on');
    expect(s.keys.map((k) => k.kid)).toEqual(['new', 'old']);
    expect(Buffer.from(s.keys[0]!.key).toString('base64')).toBe(a);
    expect(Buffer.from(s.keys[1]!.key).toString('base64url')).toBe(b);
    expect(encryptionFromEnv(lookup({}), '/')).toEqual({ mode: 'off', keys: [] });
    expect(encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION_KEYS: `k:${a}`, CREDSYNC_ENCRYPTION: 'require' }), '/').mode).toBe('require');
    expect(encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION_KEYS: `k:${a}`, CREDSYNC_ENCRYPTION: 'off' }), '/').mode).toBe('off');
  });

  it('refuses wrong lengths, bad base64, duplicate ids and entries without an id, naming the entry but never the key', () => {
    const short = b64(16);
    const good = b64();
    const cases: Array<[string, RegExp, string[]]> = [
      [`k1:${good},k2:${short}`, /entry 2 \(key id k2\): the key is 16 bytes; AES-256 needs exactly 32/, [short]],
      [`k1:${good},k1:${b64()}`, /entry 2 \(key id k1\): key id k1 appears twice/, [good]],
      [`k1:not*base64!`, /entry 1 \(key id k1\): the key is not valid base64/, ['not*base64!']],
      [`${good}`, /entry 1: expected kid:base64key/, [good]],
      [`bad id:${good}`, /entry 1: the key id must be/, [good]],
    ];
    for (const [value, re, hidden] of cases) {
      const err = configError(() => encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION_KEYS: value }), '/'));
      expect(err.message).toMatch(re);
      expect(err.message).toMatch(/^CREDSYNC_ENCRYPTION_KEYS entry/);
      for (const h of hidden) expect(err.message).not.toContain(h);
    }
    // Every key registered with the scrubber: it can never be printed.
    expect(secrets.scrub(`x ${good} y`)).toBe('x *** y');
  });

  it('reads a key file (one per line or comma-separated, # comments); an unreadable file is named; both settings is an error', async () => {
    const d = await tempDir();
    try {
      const a = b64();
      const b = b64();
      const f = join(d.path, 'keys');
      await writeFile(f, `# rotated 2026-12\nk2:${a}\n\nk1:${b}, k0:${b64()}\n`);
      const s = encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION_KEYS_FILE: 'keys' }), d.path);
      expect(s.keys.map((k) => k.kid)).toEqual(['k2', 'k1', 'k0']);
      expect(configError(() => encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION_KEYS_FILE: 'missing' }), d.path)).message).toMatch(
        /CREDSYNC_ENCRYPTION_KEYS_FILE .*missing: cannot be read \(ENOENT\)/,
      );
      await writeFile(join(d.path, 'empty'), '# nothing\n');
      expect(configError(() => encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION_KEYS_FILE: 'empty' }), d.path)).message).toMatch(/holds no kid:base64key entry/);
      await writeFile(join(d.path, 'short'), `k9:${b64(31)}\n`);
      await chmod(join(d.path, 'short'), 0o600);
      expect(configError(() => encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION_KEYS_FILE: 'short' }), d.path)).message).toMatch(/entry 1 \(key id k9\): the key is 31 bytes/);
      expect(configError(() => encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION_KEYS_FILE: 'keys', CREDSYNC_ENCRYPTION_KEYS: `k:${a}` }), d.path)).message).toMatch(/both set/);
    } finally {
      await d.remove();
    }
  });

  it('on or require without a key, or an unknown mode, is a configuration error', () => {
    expect(configError(() => encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION: 'on' }), '/')).message).toMatch(/CREDSYNC_ENCRYPTION=on needs a key: set CREDSYNC_ENCRYPTION_KEYS/);
    expect(configError(() => encryptionFromEnv(lookup({ CREDSYNC_ENCRYPTION: 'yes', CREDSYNC_ENCRYPTION_KEYS: `k:${b64()}` }), '/')).message).toMatch(/expected one of off, on, require/);
  });

  it('resolveConfig carries the settings', () => {
    const c = resolveConfig({ store: 'file:///tmp/x-store' }, { lookup: lookup({ CREDSYNC_ENCRYPTION_KEYS: `k:${b64()}` }), cwd: '/tmp' });
    expect(c.encryption.mode).toBe('on');
    expect(parseKeyList('X', '').length).toBe(0);
  });
});
