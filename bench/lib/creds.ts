/**
 * Realistic credential files, shaped like CLIProxyAPI's auth files (claude, codex, gemini, qwen):
 * 1–2 KB of JSON each, JWT-like tokens, timestamps the conflict policy reads.
 */
import { randomBytes } from 'node:crypto';
import { canonicalJson } from '../../src/core/canonical.js';

export type Cred = Record<string, unknown>;

const KINDS = ['claude', 'codex', 'gemini', 'qwen'] as const;

const b64 = (bytes: number): string => randomBytes(bytes).toString('base64url');

function jwt(claims: Record<string, unknown>, padBytes: number): string {
  const header = Buffer.from(JSON.stringify({ alg: 'RS256', kid: b64(6), typ: 'JWT' })).toString('base64url');
  const payload = Buffer.from(JSON.stringify({ ...claims, pad: b64(padBytes) })).toString('base64url');
  return `${header}.${payload}.${b64(256)}`;
}

function iso(msFromNow: number): string {
  return new Date(Date.now() + msFromNow).toISOString();
}

/** File name (relative to auths/) of credential `i`. */
export function credId(i: number): string {
  const kind = KINDS[i % KINDS.length]!;
  return `${kind}-user${String(i).padStart(5, '0')}@example.com.json`;
}

/** A fresh credential for index `i`. */
export function makeCred(i: number): Cred {
  const kind = KINDS[i % KINDS.length]!;
  const email = `user${String(i).padStart(5, '0')}@example.com`;
  switch (kind) {
    case 'claude':
      return {
        type: 'claude',
        email,
        access_token: `sk-ant-oat01-${b64(72)}`,
        refresh_token: `sk-ant-ort01-${b64(72)}`,
        id_token: jwt({ sub: b64(12), email, iss: 'https://claude.ai' }, 240),
        expired: iso(8 * 3600_000),
        last_refresh: iso(0),
      };
    case 'codex':
      return {
        type: 'codex',
        email,
        account_id: `${b64(6)}-${b64(4)}-${b64(4)}`,
        id_token: jwt({ sub: b64(12), email, 'https://api.openai.com/auth': { chatgpt_plan_type: 'plus', chatgpt_account_id: b64(12) } }, 180),
        access_token: jwt({ sub: b64(12), scp: ['openid', 'profile', 'email', 'offline_access'] }, 120),
        refresh_token: `rt_${b64(48)}`,
        expired: iso(10 * 24 * 3600_000),
        last_refresh: iso(0),
      };
    case 'gemini':
      return {
        type: 'gemini',
        email,
        project_id: `project-${b64(6).toLowerCase()}`,
        auto: false,
        checked: true,
        token: {
          access_token: `ya29.${b64(160)}`,
          refresh_token: `1//${b64(75)}`,
          token_type: 'Bearer',
          expiry: iso(3600_000),
          client_id: `${String(100000 + i)}-${b64(24).toLowerCase()}.apps.googleusercontent.com`,
          scopes: [
            'https://www.googleapis.com/auth/cloud-platform',
            'https://www.googleapis.com/auth/userinfo.email',
            'https://www.googleapis.com/auth/userinfo.profile',
          ],
        },
        last_refresh: iso(0),
      };
    case 'qwen':
      return {
        type: 'qwen',
        email,
        access_token: b64(180),
        refresh_token: b64(120),
        resource_url: 'portal.qwen.ai',
        expired: iso(6 * 3600_000),
        last_refresh: iso(0),
        metadata: { device: b64(16), region: 'intl', client: 'cli-proxy-api' },
      };
  }
}

/** The same credential after a token refresh (new access token, new timestamps). */
export function refreshed(c: Cred, seq: number): Cred {
  const out: Cred = { ...c, last_refresh: new Date().toISOString() };
  if (c.token && typeof c.token === 'object') {
    out.token = { ...(c.token as Record<string, unknown>), access_token: `ya29.${b64(160)}`, expiry: iso(3600_000) };
  } else {
    out.access_token = `${String(c.type)}-${seq}-${b64(150)}`;
    out.expired = iso(8 * 3600_000);
  }
  return out;
}

/** What the proxy writes: indented JSON (key order is the proxy's, not the store's). */
export function fileText(c: Cred): string {
  return `${JSON.stringify(c, null, 2)}\n`;
}

/** Canonical form (sorted keys, no whitespace): equal for the proxy's file and the JSONB round trip. */
export function canonical(c: unknown): string {
  return canonicalJson(c);
}

/** Canonical form of JSON text, or null when it does not parse (e.g. caught mid-write). */
export function canonicalOfText(text: string): string | null {
  try {
    return canonicalJson(JSON.parse(text));
  } catch {
    return null;
  }
}

export const SAMPLE_CONFIG = `# proxy config (bench)
port: 8317
auth-dir: ./auths
debug: false
request-retry: 3
quota-exceeded:
  switch-project: true
  switch-preview-model: true
api-keys:
  - bench-key-1
  - bench-key-2
`;
