import { validateContent } from '../core/canonical.js';
import { ConfigError, ConflictError } from '../core/errors.js';
import type { Key } from '../core/keys.js';
import { forEachLimit } from '../core/limit.js';
import type { Store } from '../core/store.js';
import { openItem, rejectionReason, seal, type Classification, type EncryptionSettings } from '../stores/registry.js';
import type { OperatorDeps } from './migrate.js';
import { chunks, openSide, readBatch, since, specOfUrl, WRITE_PARALLEL } from './operator.js';
import { keyLines, plural, progress, type KeyNote } from './output.js';

export interface RewrapOptions {
  /** Store URL; default: the environment's store. */
  readonly store?: string;
  readonly dryRun: boolean;
  readonly json: boolean;
  /** Test seam: runs after the first read of every item and before anything is written. */
  readonly afterRead?: () => Promise<void>;
}

/** Re-reads of one key after a conflicting write (a daemon wrote it meanwhile). */
const MAX_ATTEMPTS = 5;

export interface RewrapResult {
  /** Plaintext items now encrypted under the primary key. */
  readonly encrypted: Key[];
  /** Items moved from another key id to the primary. */
  readonly rewrapped: Array<{ key: Key; from: string }>;
  /** With CREDSYNC_ENCRYPTION=off and keys: encrypted items written back in plaintext. */
  readonly decrypted: Key[];
  readonly unchanged: Key[];
  /** Items that cannot be read with these keys (missing key id, tampered): left as they are. */
  readonly failed: KeyNote[];
  /** Plaintext items whose content is invalid: left as they are. */
  readonly invalid: KeyNote[];
  /** Items that kept changing through every retry. */
  readonly busy: Key[];
  /** Items deleted while rewrap ran. */
  readonly vanished: Key[];
  /** Per key id: how many items it holds when rewrap is done (plaintext as `plaintext`). */
  readonly after: Record<string, number>;
}

/**
 * `rewrap`: every item of the store under the primary key — plaintext items encrypted, items under
 * other key ids re-encrypted (with `CREDSYNC_ENCRYPTION=off` and keys: every item decrypted). Each write
 * is conditional on the version read, so daemons can keep running: a conflict re-reads that item and
 * tries again. The plaintext never changes, so the daemons see equal hashes: nothing is pulled or pushed.
 */
export async function runRewrap(o: RewrapOptions, deps: OperatorDeps): Promise<number> {
  const start = Date.now();
  const { io, log } = deps;
  const settings = deps.encryption?.() ?? { mode: 'off', keys: [] };
  if (settings.keys.length === 0) {
    throw new ConfigError('rewrap: no encryption key: set CREDSYNC_ENCRYPTION_KEYS (or CREDSYNC_ENCRYPTION_KEYS_FILE), the new primary key first');
  }
  const spec = o.store ? specOfUrl(o.store, deps.cwd ?? process.cwd()) : deps.envStore();
  const side = await openSide(spec, log);
  const target = settings.mode === 'off' ? 'plaintext' : `key id ${settings.keys[0]!.kid}`;
  const r: RewrapResult = { encrypted: [], rewrapped: [], decrypted: [], unchanged: [], failed: [], invalid: [], busy: [], vanished: [], after: {} };
  const count = (label: string): void => void (r.after[label] = (r.after[label] ?? 0) + 1);
  let bar = progress(io, 'rewrap', 0);
  try {
    const { entries } = await side.store.list();
    const keys = entries.map((e) => e.key).sort();
    io.err(`rewrap ${side.label}: ${plural(keys.length, 'item')} → ${target}${o.dryRun ? ' (dry run: nothing is written)' : ''}`);
    bar = progress(io, 'rewrap', keys.length);
    const first = new Map<Key, { version: string; data: Uint8Array }>();
    for (const group of chunks(keys)) {
      for (const [k, it] of await readBatch(side.store, group)) first.set(k, it);
    }
    await o.afterRead?.();
    await forEachLimit(keys, WRITE_PARALLEL, async (key) => {
      await rewrapOne(side.store, settings, key, first.get(key) ?? null, o.dryRun, r, count);
      bar.tick(1);
    });
    bar.stop();
    const code = r.failed.length || r.busy.length ? 1 : 0;
    const counts = {
      total: keys.length,
      encrypted: r.encrypted.length,
      rewrapped: r.rewrapped.length,
      decrypted: r.decrypted.length,
      unchanged: r.unchanged.length,
      failed: r.failed.length,
      invalid: r.invalid.length,
      busy: r.busy.length,
      vanished: r.vanished.length,
    };
    if (o.json) io.out(JSON.stringify({ command: 'rewrap', store: side.label, target, dryRun: o.dryRun, durationMs: since(start), exitCode: code, counts, after: r.after, items: r }));
    else {
      const w = o.dryRun ? 'would ' : '';
      io.out(
        [
          `rewrap ${side.label} → ${target}${o.dryRun ? ' (dry run)' : ''}: ${w}encrypt ${counts.encrypted}, ${w}re-encrypt ${counts.rewrapped}, ${w}decrypt ${counts.decrypted}, unchanged ${counts.unchanged}, failed ${counts.failed}, invalid ${counts.invalid}, busy ${counts.busy}`,
          `  ${o.dryRun ? 'now' : 'after'}: ${Object.entries(r.after).sort().map(([k, n]) => `${k} ${n}`).join(', ') || 'empty store'}`,
          ...keyLines('failed', r.failed),
          ...keyLines('invalid', r.invalid),
          ...keyLines('busy (kept changing; run rewrap again)', r.busy),
        ].join('\n'),
      );
    }
    return code;
  } finally {
    bar.stop();
    await side.close().catch(() => {});
  }
}

function labelOf(c: Classification): string {
  return c.state === 'plain' ? 'plaintext' : c.state === 'malformed' ? 'malformed' : `key ${c.kid}`;
}

async function rewrapOne(
  store: Store,
  s: EncryptionSettings,
  key: Key,
  firstRead: { version: string; data: Uint8Array } | null,
  dryRun: boolean,
  r: RewrapResult,
  count: (label: string) => void,
): Promise<void> {
  let item = firstRead;
  for (let attempt = 1; ; attempt++) {
    if (!item) {
      r.vanished.push(key);
      return;
    }
    const opened = openItem(s.keys, key, item.data);
    const c = opened.classification;
    const why = rejectionReason(key, c, 'on', true);
    if (why !== null || !opened.data) {
      r.failed.push({ key, reason: why ?? 'cannot be read' });
      count(labelOf(c));
      return;
    }
    const wantPlain = s.mode === 'off';
    const done = wantPlain ? c.state === 'plain' : c.state === 'primary';
    if (done) {
      r.unchanged.push(key);
      count(labelOf(c));
      return;
    }
    if (c.state === 'plain') {
      const v = validateContent(key, opened.data);
      if (!v.ok) {
        r.invalid.push({ key, reason: v.reason });
        count('plaintext');
        return;
      }
    }
    const out = wantPlain ? opened.data : seal(s.keys[0]!, key, opened.data);
    if (!dryRun) {
      try {
        await store.put(key, out, { ifVersion: item.version });
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
        if (attempt >= MAX_ATTEMPTS) {
          r.busy.push(key);
          count(labelOf(c));
          return;
        }
        const again = await store.get(key);
        item = again ? { version: again.version, data: again.data } : null;
        continue;
      }
    }
    if (wantPlain) r.decrypted.push(key);
    else if (c.state === 'plain') r.encrypted.push(key);
    else r.rewrapped.push({ key, from: 'kid' in c ? c.kid : '' });
    count(dryRun ? labelOf(c) : wantPlain ? 'plaintext' : `key ${s.keys[0]!.kid}`);
    return;
  }
}
