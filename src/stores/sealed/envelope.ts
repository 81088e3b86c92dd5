import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * The encryption envelope: what a store holds in place of an item's content when encryption at rest
 * is on. A JSON object (so PostgreSQL's JSONB column, S3 objects and Git files all keep a valid type):
 *
 *   {"$credsync":"enc.v1","alg":"A256GCM","ct":"<base64url>","iv":"<base64url>","kid":"<key id>"}
 *
 * - AES-256-GCM, a fresh random 96-bit IV per write, a 16-byte tag appended to the ciphertext in `ct`
 *   (`ct` = ciphertext ‖ tag); `authTagLength: 16` is set on both cipher and decipher so a truncated
 *   tag never authenticates.
 * - Additional authenticated data: `credsync/enc.v1/A256GCM/<kid>/<item key>` (NUL-separated), so an
 *   envelope copied onto another row or object, or relabelled with another key id, fails to decrypt.
 * - The member `$credsync` is reserved: a JSON object with a `$credsync` member whose value starts
 *   with `enc.` is an envelope, never a credential.
 */

export const ENVELOPE_FORMAT = 'enc.v1';
export const ENVELOPE_ALG = 'A256GCM';
export const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** One configured key: its id and its 32 bytes. */
export interface SealKey {
  readonly kid: string;
  readonly key: Uint8Array;
}

export interface Envelope {
  readonly format: string;
  readonly alg: string;
  readonly kid: string;
  readonly iv: string;
  readonly ct: string;
}

/** Key ids: letters, digits, `.`, `_`, `-`; 1–64 characters (they appear in stored envelopes and messages). */
export const KID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

function aad(kid: string, key: string): Buffer {
  return Buffer.from(['credsync', ENVELOPE_FORMAT, ENVELOPE_ALG, kid, key].join('\u0000'), 'utf8');
}

/** Seals `plaintext` for `itemKey` under `k`: the envelope's JSON text as bytes (members in canonical order). */
export function seal(k: SealKey, itemKey: string, plaintext: Uint8Array): Uint8Array {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', k.key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad(k.kid, itemKey));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  // Members sorted by name, no whitespace: the canonical form, so hashes of the stored text are stable.
  const text = `{"$credsync":"${ENVELOPE_FORMAT}","alg":"${ENVELOPE_ALG}","ct":"${ct.toString('base64url')}","iv":"${iv.toString('base64url')}","kid":${JSON.stringify(k.kid)}}`;
  return Buffer.from(text, 'utf8');
}

/**
 * What stored bytes are: `plain` (an ordinary item), `sealed` (a well-formed envelope) or `malformed`
 * (claims to be an envelope — has the `$credsync` marker — but cannot be one: unknown format or
 * algorithm, missing members). Cheap for plaintext that does not mention the marker.
 */
export type Inspection =
  | { readonly state: 'plain' }
  | { readonly state: 'sealed'; readonly envelope: Envelope }
  | { readonly state: 'malformed'; readonly reason: string };

const MARKER = Buffer.from('"$credsync"', 'utf8');

export function inspect(data: Uint8Array): Inspection {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.indexOf(MARKER) < 0) return { state: 'plain' };
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch {
    return { state: 'plain' }; // not JSON at all (a YAML config mentioning the marker): an ordinary item
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { state: 'plain' };
  const o = v as Record<string, unknown>;
  const format = o['$credsync'];
  if (typeof format !== 'string' || !format.startsWith('enc.')) return { state: 'plain' };
  if (format !== ENVELOPE_FORMAT) return { state: 'malformed', reason: `encrypted in format ${JSON.stringify(format.slice(0, 20))}, which this version of credsync does not know (it reads ${ENVELOPE_FORMAT})` };
  const { alg, kid, iv, ct } = o;
  if (alg !== ENVELOPE_ALG) return { state: 'malformed', reason: `encrypted with an unknown algorithm (${JSON.stringify(String(alg).slice(0, 20))}; expected ${ENVELOPE_ALG})` };
  if (typeof kid !== 'string' || !KID_PATTERN.test(kid)) return { state: 'malformed', reason: 'encryption envelope without a valid key id' };
  if (typeof iv !== 'string' || typeof ct !== 'string') return { state: 'malformed', reason: `encryption envelope (key id ${kid}) without iv or ct` };
  return { state: 'sealed', envelope: { format, alg, kid, iv, ct } };
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Decrypts an envelope for `itemKey`; null when it does not authenticate (tampered, moved, wrong key). */
export function unseal(k: SealKey, itemKey: string, env: Envelope): Uint8Array | null {
  if (!B64URL.test(env.iv) || !B64URL.test(env.ct)) return null;
  const iv = Buffer.from(env.iv, 'base64url');
  const ct = Buffer.from(env.ct, 'base64url');
  if (iv.length !== IV_BYTES || ct.length < TAG_BYTES) return null;
  try {
    const d = createDecipheriv('aes-256-gcm', k.key, iv, { authTagLength: TAG_BYTES });
    d.setAAD(aad(env.kid, itemKey));
    d.setAuthTag(ct.subarray(ct.length - TAG_BYTES));
    return Buffer.concat([d.update(ct.subarray(0, ct.length - TAG_BYTES)), d.final()]);
  } catch {
    return null;
  }
}
