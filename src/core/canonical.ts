import { createHash } from 'node:crypto';
import { parseDocument } from 'yaml';
import { keyKind, type Key } from './keys.js';

/**
 * Canonical forms, so that representation differences never look like changes:
 * - auth files: JSON with keys sorted recursively and no whitespace (PostgreSQL JSONB reorders keys);
 * - config: the bytes with CRLF/CR turned into LF.
 * The content hash is SHA-256 (hex) of the canonical form.
 */

export type Validation =
  | { readonly ok: true; readonly hash: string; readonly canonical: Uint8Array }
  | { readonly ok: false; readonly reason: string };

function sortValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortValue);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value as Record<string, unknown>).sort()) {
      out[k] = sortValue((value as Record<string, unknown>)[k]);
    }
    return out;
  }
  return value;
}

export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortValue(value));
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function toLf(text: string): string {
  return text.replace(/\r\n?/g, '\n');
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function decode(data: Uint8Array): string | null {
  try {
    return decoder.decode(data);
  } catch {
    return null;
  }
}

/** Parses an auth file. Returns the object, or the reason it is not acceptable. */
export function parseAuth(data: Uint8Array): { ok: true; value: Record<string, unknown> } | { ok: false; reason: string } {
  const text = decode(data);
  if (text === null) return { ok: false, reason: 'not valid UTF-8' };
  if (text.trim() === '') return { ok: false, reason: 'empty file' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // Never the parser's message: V8 quotes the text around the error, which may be a token.
    const at = /at position (\d+)/.exec((err as Error).message);
    return { ok: false, reason: at ? `not valid JSON (error at byte ${at[1]})` : 'not valid JSON' };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const what = Array.isArray(value) ? 'an array' : value === null ? 'null' : `a ${typeof value}`;
    return { ok: false, reason: `not a JSON object (found ${what})` };
  }
  return { ok: true, value: value as Record<string, unknown> };
}

function validateConfig(data: Uint8Array): Validation {
  const text = decode(data);
  if (text === null) return { ok: false, reason: 'not valid UTF-8' };
  if (text.trim() === '') return { ok: false, reason: 'empty file' };
  // parseDocument collects errors and warnings instead of printing them: the yaml library's warnings
  // and messages quote source lines, which may hold API keys. Reasons carry codes and positions only.
  const parsed = parseDocument(text, { uniqueKeys: false, prettyErrors: false });
  const first = parsed.errors[0];
  if (first) {
    const pos = first.linePos?.[0];
    return { ok: false, reason: `not valid YAML (${first.code}${pos ? ` at line ${pos.line}, column ${pos.col}` : ''})` };
  }
  let doc: unknown;
  try {
    doc = parsed.toJS({ maxAliasCount: 1000 });
  } catch {
    return { ok: false, reason: 'not valid YAML (unresolved or excessive aliases)' };
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    return { ok: false, reason: 'not a YAML mapping' };
  }
  const canonical = Buffer.from(toLf(text), 'utf8');
  return { ok: true, hash: sha256(canonical), canonical };
}

/**
 * The validation gate: is `data` acceptable content for `key`, and what is its canonical hash?
 * Pure; the same function judges local files and items arriving from a store.
 */
export function validateContent(key: Key, data: Uint8Array): Validation {
  if (keyKind(key) === 'config') return validateConfig(data);
  const parsed = parseAuth(data);
  if (!parsed.ok) return parsed;
  const canonical = Buffer.from(canonicalJson(parsed.value), 'utf8');
  return { ok: true, hash: sha256(canonical), canonical };
}

/** Canonical hash of valid content; null when the content is not acceptable. */
export function contentHash(key: Key, data: Uint8Array): string | null {
  const v = validateContent(key, data);
  return v.ok ? v.hash : null;
}
