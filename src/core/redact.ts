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

