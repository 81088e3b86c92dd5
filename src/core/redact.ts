/**
 * The one redaction path: every message, log line, metric label or file that may carry a store
 * address goes through these. They never throw.
 */

/** Query parameters whose values are secrets in any store URL. */
const SECRET_PARAM = /pass|secret|token|key|signature|credential/i;

export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    const secretParams = [...u.searchParams.keys()].filter((k) => SECRET_PARAM.test(k));
    if (!u.password && secretParams.length === 0) return raw; // nothing to hide: show it as the user wrote it
    if (u.password) u.password = '***';
    for (const k of secretParams) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return raw.replace(/\/\/([^:/@]+):[^@/]*@/, '//$1:***@');
  }
}


/**
 * What a connection string that could not be parsed may show: its scheme and the host, if one can be
 * found after the last `@` — nothing else (the rest may be a password with a typo in it).
 */
export function unparseableLabel(raw: string): string {
  const s = raw.trim();
  const scheme = /^["']?([a-z][a-z0-9+.-]*):\/+/i.exec(s);
  const afterAt = s.includes('@') ? s.slice(s.lastIndexOf('@') + 1) : scheme ? s.slice(scheme.index + scheme[0].length) : '';
  const host = /^[\w.-]+(?::\d{1,5})?/.exec(afterAt)?.[0];
  const kvHost = /(?:^|\s)host\s*=\s*([\w.-]+)/i.exec(s)?.[1];
  if (scheme) return `${scheme[1]}://${host ? `…@${host}` : '…'} (unparseable; rest hidden)`;
  return kvHost ? `host=${kvHost} … (unparseable; rest hidden)` : '<unparseable; hidden>';
}

/**
 * The process-wide list of secrets (passwords, keys, tokens) known from the configuration. Every
 * line credsync prints — logs, command output, HTTP responses, error messages — passes through
 * `scrub`, so a secret that slips into a driver's message is still never shown.
 */
export class Scrubber {
  private readonly secrets = new Set<string>();
  private pattern: RegExp | null = null;

  /** Registers a secret and its URL-encoded and base64 forms. Strings shorter than 4 characters are ignored (too common to scrub). */
  add(secret: string | undefined): void {
    if (!secret || secret.length < 4) return;
    for (const form of [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')]) {
      if (form.length >= 4) this.secrets.add(form);
    }
    const escaped = [...this.secrets].sort((a, b) => b.length - a.length).map((x) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    this.pattern = new RegExp(escaped.join('|'), 'g');
  }

  scrub(text: string): string {
    return this.pattern ? text.replace(this.pattern, '***') : text;
  }

  get size(): number {
    return this.secrets.size;
  }
}

/** The one scrubber of this process. */
export const secrets = new Scrubber();

/**
 * Replaces every occurrence of each secret (and its URL-encoded form) in `text` with `***`.
 * For messages that come from a server or a driver and may echo what it was sent (an access key id
 * in an error body, a credential in a URL). Secrets shorter than 3 characters are ignored: replacing
 * them would mangle ordinary words without protecting anything.
 */
export function scrubSecrets(text: string, secrets: ReadonlyArray<string | undefined>): string {
  let out = text;
  for (const s of secrets) {
    if (!s || s.length < 3) continue;
    out = out.split(s).join('***');
    const enc = encodeURIComponent(s);
    if (enc !== s) out = out.split(enc).join('***');
  }
  return out;
}
