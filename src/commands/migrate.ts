import type { Logger } from 'pino';
import { ConfigError } from '../core/errors.js';
import type { StoreSpec } from '../config/store-spec.js';
import type { EncryptionSettings } from '../stores/registry.js';
import { parseDeleteLimit, type DeleteLimit } from '../engine/guard.js';
import { copyCounts, copyExitCode, copyItems, formatCopy, type CopyMode, type CopySource } from './copy.js';
import { openSide, sameStore, specOfUrl, since, type OpenedStore } from './operator.js';
import { plural, progress, type Io } from './output.js';
import { cliproxySource, storeSource } from './sources.js';

export interface MigrateOptions {
  /** Source store URL; default: the environment's store (unless importing a CLIProxyAPI directory). */
  readonly from?: string;
  /** Target store URL; default: the environment's store. */
  readonly to?: string;
  /** Import a plain CLIProxyAPI file-store deployment: its flat auth directory … */
  readonly fromCliproxyDir?: string;
  /** … and the config.yaml it runs with. */
  readonly fromCliproxyConfig?: string;
  readonly mode: CopyMode;
  readonly dryRun: boolean;
  readonly json: boolean;
  readonly maxDelete?: DeleteLimit;
  /**
   * `encrypt`: the target is written through the encryption wrapper (primary key); `decrypt`: the source
   * is read through it and the target written in plaintext. Either way an encrypted source is decrypted
   * with the configured keys. Default: bytes as they are (ciphertext stays ciphertext).
   */
  readonly encryption?: 'encrypt' | 'decrypt';
}

export interface OperatorDeps {
  readonly log: Logger;
  readonly io: Io;
  /** The store the environment selects (flags > env > .env), resolved only when needed. */
  readonly envStore: () => StoreSpec;
  /** Encryption settings from the environment (`CREDSYNC_ENCRYPTION*`), resolved only when needed. */
  readonly encryption?: () => EncryptionSettings;
  readonly cwd?: string;
}

/**
 * `migrate`: copies every item from one store (or a CLIProxyAPI file deployment) to another, then
 * re-reads every item from the target and compares canonical hashes with the source.
 * Returns 0, 1 (items failed), 3 (verification failed); throws GuardError (4) or config errors (2).
 */
export async function runMigrate(o: MigrateOptions, deps: OperatorDeps): Promise<number> {
  const start = Date.now();
  const { io, log } = deps;
  const cwd = deps.cwd ?? process.cwd();
  if (o.fromCliproxyDir !== undefined && o.from) throw new ConfigError('migrate: give either --from or --from-cliproxy-dir, not both');
  if (o.fromCliproxyConfig && o.fromCliproxyDir === undefined) throw new ConfigError('migrate --from-cliproxy-config: needs --from-cliproxy-dir too');
  if (o.fromCliproxyDir === undefined && !o.from && !o.to) throw new ConfigError('migrate: give --from and/or --to (the other side defaults to the store the environment selects)');
  const fromSpec = o.fromCliproxyDir === undefined ? (o.from ? specOfUrl(o.from, cwd) : deps.envStore()) : undefined;
  const toSpec = o.to ? specOfUrl(o.to, cwd) : deps.envStore();
  if (fromSpec && sameStore(fromSpec, toSpec)) throw new ConfigError('migrate: --from and --to name the same store');

  let sealFrom: EncryptionSettings | undefined;
  let sealTo: EncryptionSettings | undefined;
  if (o.encryption) {
    const settings = deps.encryption?.() ?? { mode: 'off' as const, keys: [] };
    if (settings.keys.length === 0) throw new ConfigError(`migrate --${o.encryption}: needs CREDSYNC_ENCRYPTION_KEYS (or CREDSYNC_ENCRYPTION_KEYS_FILE)`);
    // Reading: decrypt what can be decrypted, plaintext accepted. Writing: sealed (encrypt) or plaintext (decrypt).
    sealFrom = { mode: 'on', keys: settings.keys };
    sealTo = o.encryption === 'encrypt' ? { mode: settings.mode === 'require' ? 'require' : 'on', keys: settings.keys } : undefined;
    if (o.encryption === 'decrypt') log.warn('migrate --decrypt: the target will hold credentials in plaintext');
  }
  let from: OpenedStore | undefined;
  let to: OpenedStore | undefined;
  const p = { stop: () => {} };
  try {
    let source: CopySource;
    if (fromSpec) {
      from = await openSide(fromSpec, log, sealFrom);
      source = await storeSource(from.store, from.label);
    } else {
      source = await cliproxySource(o.fromCliproxyDir!, o.fromCliproxyConfig, cwd);
    }
    to = await openSide(toSpec, log, sealTo);
    io.err(`migrate ${source.label} → ${to.label}: ${plural(source.keys.length, 'item')}, mode ${o.mode}${o.dryRun ? ' (dry run: nothing is written)' : ''}`);
    const bar = progress(io, 'migrate', source.keys.length);
    p.stop = bar.stop;
    const r = await copyItems(source, to.store, { mode: o.mode, dryRun: o.dryRun, maxDelete: o.maxDelete ?? parseDeleteLimit('50%'), command: 'migrate', log, progress: bar });
    bar.stop();
    const code = copyExitCode(r);
    const result = { command: 'migrate', mode: o.mode, dryRun: o.dryRun, from: source.label, to: to.label, durationMs: since(start), exitCode: code, counts: copyCounts(r), items: r };
    if (o.json) io.out(JSON.stringify(result));
    else {
      const c = result.counts;
      io.out(
        [
          `migrate ${source.label} → ${to.label} (${o.mode}${o.dryRun ? ', dry run' : ''}): ${o.dryRun ? 'would create' : 'created'} ${c.created}, ${o.dryRun ? 'would update' : 'updated'} ${c.updated}, ${o.dryRun ? 'would delete' : 'deleted'} ${c.deleted}, unchanged ${c.unchanged}, kept ${c.kept}, invalid ${c.invalid}, skipped ${c.skipped}, conflicts ${c.conflicts}, failed ${c.failed + c.rejected}${o.dryRun ? '' : `; verified ${c.verified}, mismatched ${c.mismatched}`}`,
          ...formatCopy(r, o.dryRun),
        ].join('\n'),
      );
    }
    if (r.mismatched.length) io.err(`migrate ${to.label}: verification failed for ${plural(r.mismatched.length, 'item')}: ${r.mismatched.slice(0, 20).map((m) => m.key).join(', ')}`);
    if (r.invalid.length) io.err(`migrate ${source.label}: ${plural(r.invalid.length, 'invalid item')} not copied: ${r.invalid.slice(0, 20).map((m) => m.key).join(', ')}`);
    return code;
  } finally {
    p.stop();
    await to?.close().catch(() => {});
    await from?.close().catch(() => {});
  }
}
