import { InvalidKeyError } from './errors.js';

/**
 * A key is the item's path relative to the mirror root, "/"-separated:
 * `config/config.yaml` or `auths/<id>` where `<id>` ends in `.json` (any case). Every id CLIProxyAPI's
 * stores accept is a key when it is safe: dot-files (`auths/.hidden.json`, `auths/team/.dot.json`) and
 * `UPPER.JSON` are; traversal, control characters, backslashes, empty segments, more than 255 bytes
 * and any segment starting with `.credsync` are not.
 * Every store maps keys onto its own namespace (PostgreSQL: `config` / auth id; S3: object key).
 */
export type Key = string;

export const CONFIG_KEY: Key = 'config/config.yaml';
export const AUTH_PREFIX = 'auths/';
export const MAX_KEY_BYTES = 255;

export type KeyKind = 'config' | 'auth';

/** No segment of a key may start with this (any case): credsync's own files and temp files. */
export const RESERVED_PREFIX = '.credsync';

/** Why `key` is not acceptable, or null when it is. Pure; never touches the file system. */
export function keyProblem(key: string): string | null {
  if (typeof key !== 'string' || key.length === 0) return 'empty key';
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) return `longer than ${MAX_KEY_BYTES} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'contains a control character';
  if (key.includes('\\')) return 'contains a backslash';
  if (key.startsWith('/')) return 'is absolute (leading "/")';
  if (/^[A-Za-z]:/.test(key)) return 'has a drive letter';
  const segments = key.split('/');
  for (const s of segments) {
    if (s === '') return 'has an empty path segment';
    if (s === '..') return 'has a ".." segment';
    if (s === '.') return 'has a "." segment';
  }
  if (key === CONFIG_KEY) return null;
  if (!key.startsWith(AUTH_PREFIX)) return `is neither ${CONFIG_KEY} nor under ${AUTH_PREFIX}`;
  if (segments.length < 2) return 'has no file name';
  const last = segments[segments.length - 1]!;
  // CLIProxyAPI loads any file whose name ends in ".json" in any case (`UPPER.JSON`), dot-files included.
  if (!last.toLowerCase().endsWith('.json')) return 'does not end in .json';
  // Reserved: `.credsync/` (state, conflicts, store work dirs) and `.credsync-*` (temp files, locks).
  if (segments.some((s) => s.toLowerCase().startsWith(RESERVED_PREFIX))) return `has a segment starting with "${RESERVED_PREFIX}" (reserved for credsync)`;
  return null;
}

/** Returns `key` unchanged when valid; throws InvalidKeyError otherwise. */
export function validateKey(key: string): Key {
  const problem = keyProblem(key);
  if (problem) throw new InvalidKeyError(key, problem);
  return key;
}

export function isValidKey(key: string): boolean {
  return keyProblem(key) === null;
}

export function keyKind(key: Key): KeyKind {
  return key === CONFIG_KEY ? 'config' : 'auth';
}

/** `auths/team/x.json` → `team/x.json` (the CLIProxyAPI auth id). Throws for the config key. */
export function authIdOf(key: Key): string {
  if (!key.startsWith(AUTH_PREFIX)) throw new InvalidKeyError(key, `not under ${AUTH_PREFIX}`);
  return key.slice(AUTH_PREFIX.length);
}

/** CLIProxyAPI auth id → key, validated. */
export function keyOfAuthId(id: string): Key {
  return validateKey(AUTH_PREFIX + id);
}
