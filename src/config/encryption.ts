import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { secrets } from '../core/redact.js';
import { ENCRYPTION_MODES, KEY_BYTES, KID_PATTERN, type EncryptionMode, type EncryptionSettings, type SealKey } from '../stores/registry.js';
import type { EnvLookup } from './env.js';

const B64 = /^(?:[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+={0,2})$/;

/**
 * Parses `kid:base64key` entries (comma-separated, or one per line in a file; `#` starts a comment
 * line). Errors name the setting and the entry (its position and key id) — never the key material.
 * Every key is registered with the process scrubber so it can never be printed.
 */
export function parseKeyList(source: string, text: string): SealKey[] {
  const entries = text
    .split(/\r?\n/)
    .filter((line) => !line.trim().startsWith('#'))
    .flatMap((line) => line.split(','))
    .map((e) => e.trim())
    .filter((e) => e !== '');
  for (const e of entries) {
    const i = e.indexOf(':');
    secrets.add(i >= 0 ? e.slice(i + 1).trim() : e);
  }
  const keys: SealKey[] = [];
  entries.forEach((entry, n) => {
    const where = `${source} entry ${n + 1}`;
    const i = entry.indexOf(':');
    if (i < 0) throw new ConfigError(`${where}: expected kid:base64key (a key id, a colon, then 32 random bytes in base64; e.g. k1:$(openssl rand -base64 32)); the entry is not shown`);
    const kid = entry.slice(0, i).trim();
    const b64 = entry.slice(i + 1).trim();
    if (!KID_PATTERN.test(kid)) throw new ConfigError(`${where}: the key id must be 1-64 letters, digits, '.', '_' or '-' (the entry is not shown)`);
    const named = `${where} (key id ${kid})`;
    if (!B64.test(b64)) throw new ConfigError(`${named}: the key is not valid base64; generate one with: openssl rand -base64 32`);
    const key = Buffer.from(b64, b64.includes('-') || b64.includes('_') ? 'base64url' : 'base64');
    if (key.length !== KEY_BYTES) throw new ConfigError(`${named}: the key is ${key.length} bytes; AES-256 needs exactly ${KEY_BYTES} (generate one with: openssl rand -base64 32)`);
    if (keys.some((k) => k.kid === kid)) throw new ConfigError(`${named}: key id ${kid} appears twice; every key needs its own id`);
    keys.push({ kid, key });
  });
  return keys;
}

/**
 * `CREDSYNC_ENCRYPTION` (`off` | `on` | `require`; default `on` when keys are set, else `off`) and the
 * keys from `CREDSYNC_ENCRYPTION_KEYS` or `CREDSYNC_ENCRYPTION_KEYS_FILE` (not both).
 */
export function encryptionFromEnv(env: EnvLookup, cwd: string): EncryptionSettings {
  const inline = env('CREDSYNC_ENCRYPTION_KEYS');
  const file = env('CREDSYNC_ENCRYPTION_KEYS_FILE');
  if (inline && file) throw new ConfigError('CREDSYNC_ENCRYPTION_KEYS and CREDSYNC_ENCRYPTION_KEYS_FILE are both set; keep one');
  let keys: SealKey[] = [];
  if (inline) keys = parseKeyList('CREDSYNC_ENCRYPTION_KEYS', inline);
  else if (file) {
    const path = resolve(cwd, file);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new ConfigError(`CREDSYNC_ENCRYPTION_KEYS_FILE ${path}: cannot be read (${code}); mount the key file there or fix the path`);
    }
    keys = parseKeyList(`CREDSYNC_ENCRYPTION_KEYS_FILE ${path}`, text);
    if (keys.length === 0) throw new ConfigError(`CREDSYNC_ENCRYPTION_KEYS_FILE ${path}: holds no kid:base64key entry`);
  }
  const raw = env('CREDSYNC_ENCRYPTION')?.toLowerCase();
  let mode: EncryptionMode;
  if (raw === undefined) mode = keys.length ? 'on' : 'off';
  else if ((ENCRYPTION_MODES as readonly string[]).includes(raw)) mode = raw as EncryptionMode;
  else throw new ConfigError(`CREDSYNC_ENCRYPTION ${raw}: expected one of ${ENCRYPTION_MODES.join(', ')}`);
  if (mode !== 'off' && keys.length === 0) {
    throw new ConfigError(`CREDSYNC_ENCRYPTION=${mode} needs a key: set CREDSYNC_ENCRYPTION_KEYS=kid:base64key (or CREDSYNC_ENCRYPTION_KEYS_FILE)`);
  }
  return { mode, keys };
}

/** One line about the encryption settings for logs and `status` (key ids only). */
export function describeEncryption(s: EncryptionSettings): string {
  if (s.mode === 'off') return s.keys.length ? `off (keys ${s.keys.map((k) => k.kid).join(', ')} decrypt only)` : 'off';
  return `${s.mode}, primary key ${s.keys[0]!.kid}${s.keys.length > 1 ? `, also decrypting ${s.keys.slice(1).map((k) => k.kid).join(', ')}` : ''}`;
}
