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
