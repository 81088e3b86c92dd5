import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { sha256, validateContent } from '../core/canonical.js';
import { ConfigError } from '../core/errors.js';
import type { Key } from '../core/keys.js';
import { ARCHIVE_FORMAT, MANIFEST_NAME, Spool, writeArchiveFile, type Manifest, type ManifestItem } from './archive.js';
import type { OperatorDeps } from './migrate.js';
import type { EncryptionSettings } from '../stores/registry.js';
import { chunks, openSide, readBatch, since, specOfUrl } from './operator.js';
import { keyLines, plural, progress, type KeyNote } from './output.js';

export interface BackupOptions {
  /** Store URL; default: the environment's store. */
  readonly from?: string;
  /** Archive path, or `-` for stdout. */
  readonly out: string;
  readonly json: boolean;
  /** Archive plaintext (decrypted with the configured keys); warns. Default: the store's bytes as they are. */
  readonly decrypt?: boolean;
}

export function credsyncVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/**
 * `backup`: one tar.gz of the store — `manifest.json` first (format, credsync version, store kind and
 * redacted id, creation time, per item key/size/SHA-256/version), then the items at their keys.
 * Items whose content is invalid are left out and reported (the archive always restores).
 */
export async function runBackup(o: BackupOptions, deps: OperatorDeps): Promise<number> {
  const start = Date.now();
  const { io, log } = deps;
  const cwd = deps.cwd ?? process.cwd();
  const spec = o.from ? specOfUrl(o.from, cwd) : deps.envStore();
  const out = o.out === '-' ? '-' : resolve(cwd, o.out);
  if (out === '-' && process.stdout.isTTY) throw new ConfigError('backup --out -: stdout is a terminal; redirect it to a file or a pipe (or give --out FILE)');
  let seal: EncryptionSettings | undefined;
  if (o.decrypt) {
    const settings = deps.encryption?.() ?? { mode: 'off' as const, keys: [] };
    if (settings.keys.length === 0) throw new ConfigError('backup --decrypt: needs CREDSYNC_ENCRYPTION_KEYS (or CREDSYNC_ENCRYPTION_KEYS_FILE)');
    seal = { mode: 'on', keys: settings.keys };
    io.err('backup --decrypt: the archive will hold credentials in plaintext; keep it as safe as the keys themselves');
  }
  // Without --decrypt the store is read as it is (no wrapper): encrypted items are archived as ciphertext.
  const side = await openSide(spec, log, seal);
  const spool = await Spool.create();
  const invalid: KeyNote[] = [];
  const vanished: Key[] = [];
  const items: Array<ManifestItem & { offset: number }> = [];
  let bar = progress(io, 'backup', 0);
  try {
    const { entries, skipped } = await side.store.list();
    const keys = entries.map((e) => e.key).sort();
    io.err(`backup ${side.label} → ${out === '-' ? 'stdout' : out}: ${plural(keys.length, 'item')}`);
    bar = progress(io, 'backup', keys.length);
    for (const group of chunks(keys)) {
      const got = await readBatch(side.store, group);
      for (const key of group) {
        const it = got.get(key);
        if (!it) {
          vanished.push(key);
          continue;
        }
        const v = validateContent(key, it.data);
        if (!v.ok) {
          invalid.push({ key, reason: it.problem ?? v.reason });
          continue;
        }
        const { offset } = await spool.append(it.data);
        items.push({ key, size: it.data.length, sha256: sha256(it.data), version: it.version, offset });
      }
      bar.tick(group.length);
    }
    bar.stop();
    const manifest: Manifest = {
      format: ARCHIVE_FORMAT,
      credsyncVersion: credsyncVersion(),
      store: { kind: spec.kind, id: side.label },
      createdAt: new Date().toISOString(),
      items: items.map(({ key, size, sha256: h, version }) => ({ key, size, sha256: h, ...(version !== undefined ? { version } : {}) })),
    };
    let bytes = 0;
    await writeArchiveFile(out, process.stdout, async (w) => {
      const m = Buffer.from(JSON.stringify(manifest, null, 1));
      await w.member(MANIFEST_NAME, m, new Date(manifest.createdAt));
      for (const it of items) {
        const data = await spool.read(it.offset, it.size);
        bytes += data.length;
        await w.member(it.key, data);
      }
    });
    const result = {
      command: 'backup',
      store: side.label,
      out: out === '-' ? '-' : out,
      durationMs: since(start),
      exitCode: 0,
      counts: { archived: items.length, bytes, invalid: invalid.length, skipped: skipped.length, vanished: vanished.length },
      items: { archived: items.map((i) => i.key), invalid, skipped: skipped.map((s) => ({ key: s.id, reason: s.reason })), vanished },
    };
    // With --out -, stdout carries the archive: the result goes to stderr.
    const print = out === '-' ? io.err : io.out;
    if (o.json) print(JSON.stringify(result));
    else
      print(
        [
          `backup ${side.label} → ${result.out}: archived ${items.length} (${bytes} bytes), invalid ${invalid.length} (not archived), skipped ${skipped.length}, vanished ${vanished.length}`,
          ...keyLines('invalid', invalid),
          ...keyLines('skipped', result.items.skipped),
        ].join('\n'),
      );
    return 0;
  } finally {
    bar.stop();
    await spool.dispose();
    await side.close().catch(() => {});
  }
}
