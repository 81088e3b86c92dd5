import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { sha256 } from '../core/canonical.js';
import { GuardError, VerificationError } from '../core/errors.js';
import type { Key } from '../core/keys.js';
import { parseDeleteLimit, type DeleteLimit } from '../engine/guard.js';
import { archiveMembers, verifyArchive, type Manifest } from './archive.js';
import { copyCounts, copyExitCode, copyItems, formatCopy, type CopyMode, type CopySource, type SourceItem } from './copy.js';
import type { OperatorDeps } from './migrate.js';
import { BATCH_SIZE, openSide, since, specOfUrl, type OpenedStore } from './operator.js';
import { plural, progress } from './output.js';
import { FILE_MODE } from '../fs/atomic.js';

export interface RestoreOptions {
  /** Archive path, or `-` for stdin. */
  readonly in: string;
  /** Target store URL; default: the environment's store. */
  readonly to?: string;
  readonly mode: CopyMode;
  readonly dryRun: boolean;
  /** `--mode mirror` on a non-empty target needs it. */
  readonly force: boolean;
  readonly json: boolean;
  readonly maxDelete?: DeleteLimit;
}

/** A verified archive as a copy source; members are re-checked against the manifest while streaming. */
function archiveSource(path: string, manifest: Manifest, label: string): CopySource {
  const byKey = new Map(manifest.items.map((i) => [i.key, i]));
  return {
    label,
    keys: manifest.items.map((i) => i.key).sort(),
    skipped: [],
    async *batches() {
      let batch: SourceItem[] = [];
      let first = true;
      for await (const m of archiveMembers(path)) {
        if (first) {
          first = false;
          continue;
        }
        const want = byKey.get(m.name);
        if (!want || !m.data || sha256(m.data) !== want.sha256) {
          throw new VerificationError(`restore ${label}: member ${JSON.stringify(m.name)} changed after verification; stopped`);
        }
        batch.push({ key: m.name as Key, data: m.data });
        if (batch.length >= BATCH_SIZE) {
          yield batch;
          batch = [];
        }
      }
      if (batch.length) yield batch;
    },
  };
}

/**
 * `restore`: verifies the whole archive before writing anything (exit 3, nothing written, on any
 * problem), then copies it into the target with migrate's modes and verification.
 */
export async function runRestore(o: RestoreOptions, deps: OperatorDeps): Promise<number> {
  const start = Date.now();
  const { io, log } = deps;
  const cwd = deps.cwd ?? process.cwd();
  const toSpec = o.to ? specOfUrl(o.to, cwd) : deps.envStore();
  let spoolDir: string | undefined;
  let path: string;
  if (o.in === '-') {
    spoolDir = await mkdtemp(join(tmpdir(), 'credsync-restore-'));
    path = join(spoolDir, 'archive.tar.gz');
    await pipeline(process.stdin, createWriteStream(path, { mode: FILE_MODE, flags: 'wx' }));
  } else {
    path = resolve(cwd, o.in);
  }
  const label = o.in === '-' ? 'stdin' : path;
  let to: OpenedStore | undefined;
  const bar = { stop: () => {} };
  try {
    const check = await verifyArchive(path);
    if (check.problems.length || !check.manifest) {
      const result = { command: 'restore', archive: label, dryRun: o.dryRun, verified: false, durationMs: since(start), exitCode: 3, problems: check.problems };
      if (o.json) io.out(JSON.stringify(result));
      else io.out([`restore ${label}: archive verification failed; nothing written`, ...check.problems.slice(0, 50).map((p) => `  ${p}`)].join('\n'));
      throw new VerificationError(`restore ${label}: archive verification failed (${plural(check.problems.length, 'problem')}, first: ${check.problems[0] ?? 'no manifest'}); nothing written`);
    }
    const manifest = check.manifest;
    io.err(`restore ${label}: verified ${plural(manifest.items.length, 'item')} (backup of ${manifest.store.kind} ${manifest.store.id} at ${manifest.createdAt})`);
    to = await openSide(toSpec, log);
    if (o.mode === 'mirror' && !o.force) {
      const { entries } = await to.store.list();
      if (entries.length) throw new GuardError(`restore ${to.label}: the target holds ${plural(entries.length, 'item')} and --mode mirror replaces them; add --force to do so`);
    }
    const p = progress(io, 'restore', manifest.items.length);
    bar.stop = p.stop;
    const r = await copyItems(archiveSource(path, manifest, label), to.store, {
      mode: o.mode,
      dryRun: o.dryRun,
      maxDelete: o.maxDelete ?? parseDeleteLimit('50%'),
      command: 'restore',
      log,
      progress: p,
    });
    p.stop();
    const code = copyExitCode(r);
    const result = {
      command: 'restore',
      archive: label,
      backup: { store: manifest.store, createdAt: manifest.createdAt, credsyncVersion: manifest.credsyncVersion },
      to: to.label,
      mode: o.mode,
      dryRun: o.dryRun,
      verified: true,
      durationMs: since(start),
      exitCode: code,
      counts: copyCounts(r),
      items: r,
    };
    if (o.json) io.out(JSON.stringify(result));
    else {
      const c = result.counts;
      const w = o.dryRun ? 'would ' : '';
      io.out(
        [
          `restore ${label} → ${to.label} (${o.mode}${o.dryRun ? ', dry run' : ''}): ${w}create ${c.created}, ${w}update ${c.updated}, ${w}delete ${c.deleted}, unchanged ${c.unchanged}, kept ${c.kept}, conflicts ${c.conflicts}, failed ${c.failed + c.rejected}${o.dryRun ? '' : `; verified ${c.verified}, mismatched ${c.mismatched}`}`,
          ...formatCopy(r, o.dryRun),
        ].join('\n'),
      );
    }
    if (r.mismatched.length) io.err(`restore ${to.label}: verification failed for ${plural(r.mismatched.length, 'item')}: ${r.mismatched.slice(0, 20).map((m) => m.key).join(', ')}`);
    return code;
  } finally {
    bar.stop();
    await to?.close().catch(() => {});
    if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
  }
}
