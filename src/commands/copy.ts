import type { Logger } from 'pino';
import { contentHash, validateContent } from '../core/canonical.js';
import { ConflictError, GuardError, ItemRejectedError, StoreConfigError, errorMessage } from '../core/errors.js';
import { CONFIG_KEY, type Key } from '../core/keys.js';
import { forEachLimit } from '../core/limit.js';
import type { Entry, SkippedItem, Store } from '../core/store.js';
import { allowedDeletes, formatDeleteLimit, type DeleteLimit } from '../engine/guard.js';
import { chunks, readBatch, WRITE_PARALLEL } from './operator.js';
import type { KeyNote, Progress } from './output.js';

/**
 * The copy at the heart of `migrate` and `restore`: source items in bounded batches onto a target
 * store, every write conditional on what was read from the target (safe while daemons run), then
 * every copied or already-equal item re-read from the target and compared by canonical hash.
 */

export const COPY_MODES = ['fill-missing', 'overwrite', 'mirror'] as const;
export type CopyMode = (typeof COPY_MODES)[number];

/** One item from a source; `data: null` when it vanished between listing and reading. */
export interface SourceItem {
  readonly key: Key;
  readonly data: Uint8Array | null;
  /** Why the item cannot be read (an encrypted item whose key is not configured): it is reported, not copied. */
  readonly problem?: string;
}

export interface CopySource {
  /** Redacted description for output. */
  readonly label: string;
  /** Every valid key the source holds (mirror mode deletes target keys not in it). */
  readonly keys: readonly Key[];
  /** Source objects whose names are not valid keys: reported, never copied. */
  readonly skipped: readonly SkippedItem[];
  /** The items, in batches of bounded size. */
  batches(): AsyncIterable<SourceItem[]>;
}

export interface CopyOptions {
  readonly mode: CopyMode;
  readonly dryRun: boolean;
  readonly maxDelete: DeleteLimit;
  /** The command's name for messages (`migrate`, `restore`). */
  readonly command: string;
  readonly log?: Logger;
  readonly progress?: Progress;
}

export interface Mismatch {
  readonly key: Key;
  readonly expected: string;
  readonly actual: string;
}

/** What happened to every key (in a dry run: what would happen). */
export interface CopyResult {
  created: Key[];
  updated: Key[];
  deleted: Key[];
  unchanged: Key[];
  /** Present on the target with different content, left alone (fill-missing), or kept (the config in mirror mode). */
  kept: KeyNote[];
  /** Invalid content in the source: not copied. */
  invalid: KeyNote[];
  /** Source names that are not valid keys. */
  skipped: KeyNote[];
  /** Target names that are not valid keys (left alone). */
  targetSkipped: KeyNote[];
  /** Listed by the source, gone when read. */
  vanished: Key[];
  /** The target changed between our read and our write: nothing overwritten. */
  conflicts: KeyNote[];
  /** The target refused this item. */
  rejected: KeyNote[];
  /** Another store failure on this item. */
  failed: KeyNote[];
  /** Re-read after writing, the target's hash differs from the source's. */
  mismatched: Mismatch[];
  /** Items re-read from the target and found equal. */
  verified: number;
}

export const emptyCopyResult = (): CopyResult => ({
  created: [],
  updated: [],
  deleted: [],
  unchanged: [],
  kept: [],
  invalid: [],
  skipped: [],
  targetSkipped: [],
  vanished: [],
  conflicts: [],
  rejected: [],
  failed: [],
  mismatched: [],
  verified: 0,
});

export function copyCounts(r: CopyResult): Record<string, number> {
  return {
    created: r.created.length,
    updated: r.updated.length,
    deleted: r.deleted.length,
    unchanged: r.unchanged.length,
    kept: r.kept.length,
    invalid: r.invalid.length,
    skipped: r.skipped.length,
    targetSkipped: r.targetSkipped.length,
    vanished: r.vanished.length,
    conflicts: r.conflicts.length,
    rejected: r.rejected.length,
    failed: r.failed.length,
    mismatched: r.mismatched.length,
    verified: r.verified,
  };
}

/** 3 when verification failed, 1 when an item could not be written, else 0. */
export function copyExitCode(r: CopyResult): number {
  if (r.mismatched.length) return 3;
  if (r.conflicts.length || r.rejected.length || r.failed.length) return 1;
  return 0;
}

/** Records a failed write; a configuration failure (credentials, permissions on the store) aborts the run. */
function recordWriteError(r: CopyResult, key: Key, err: unknown): void {
  if (err instanceof StoreConfigError) throw err;
  if (err instanceof ConflictError) r.conflicts.push({ key, reason: 'changed on the target while copying; not overwritten' });
  else if (err instanceof ItemRejectedError) r.rejected.push({ key, reason: errorMessage(err) });
  else r.failed.push({ key, reason: errorMessage(err) });
}

/** Plans the mirror-mode deletions and applies the delete guard before anything is written. */
function planDeletes(source: CopySource, target: Map<Key, Entry>, o: CopyOptions, r: CopyResult): Entry[] {
  if (o.mode !== 'mirror') return [];
  const inSource = new Set(source.keys);
  const extra: Entry[] = [];
  for (const [key, e] of target) {
    if (inSource.has(key)) continue;
    if (key === CONFIG_KEY) {
      r.kept.push({ key, reason: 'not in the source; the config is never deleted' });
      continue;
    }
    extra.push(e);
  }
  const allowed = allowedDeletes(o.maxDelete, target.size);
  if (extra.length > allowed) {
    throw new GuardError(
      `${o.command} --mode mirror: deleting ${extra.length} of ${target.size} target items exceeds --max-delete ${formatDeleteLimit(o.maxDelete)}; refused, nothing written (check the source, or raise --max-delete to delete on purpose)`,
    );
  }
  return extra;
}

export async function copyItems(source: CopySource, target: Store, o: CopyOptions): Promise<CopyResult> {
  const r = emptyCopyResult();
  for (const s of source.skipped) r.skipped.push({ key: s.id, reason: s.reason });
  const listing = await target.list();
  for (const s of listing.skipped) r.targetSkipped.push({ key: s.id, reason: s.reason });
  const tmap = new Map<Key, Entry>(listing.entries.map((e) => [e.key, e]));
  const deletes = planDeletes(source, tmap, o, r);

  for await (const batch of source.batches()) {
    // 1. Judge the source items.
    const valid: Array<{ key: Key; data: Uint8Array; hash: string }> = [];
    for (const it of batch) {
      if (!it.data) {
        r.vanished.push(it.key);
        continue;
      }
      const v = validateContent(it.key, it.data);
      if (!v.ok) r.invalid.push({ key: it.key, reason: it.problem ?? v.reason });
      else valid.push({ key: it.key, data: it.data, hash: v.hash });
    }
    // 2. What the target holds for them (hash from the listing when the store knows it, else read).
    const unknown = valid.filter((v) => tmap.has(v.key) && !tmap.get(v.key)!.hash).map((v) => v.key);
    const targetHash = new Map<Key, string | null>();
    for (const [k, it] of await readBatch(target, unknown)) targetHash.set(k, contentHash(k, it.data));
    // 3. Plan.
    const writes: Array<{ key: Key; data: Uint8Array; hash: string; ifVersion: string | null; create: boolean }> = [];
    const same: Array<{ key: Key; hash: string }> = [];
    for (const v of valid) {
      const t = tmap.get(v.key);
      if (!t) {
        writes.push({ ...v, ifVersion: null, create: true });
        continue;
      }
      const th = t.hash ?? targetHash.get(v.key) ?? null;
      if (th === v.hash) same.push(v);
      else if (o.mode === 'fill-missing') r.kept.push({ key: v.key, reason: 'differs on the target; fill-missing never overwrites' });
      else writes.push({ ...v, ifVersion: t.version, create: false });
    }
    // 4. Write (conditionally) and 5. verify by re-reading.
    const written: Array<{ key: Key; hash: string }> = [];
    if (o.dryRun) {
      for (const w of writes) (w.create ? r.created : r.updated).push(w.key);
      r.unchanged.push(...same.map((s) => s.key));
    } else {
      await forEachLimit(writes, WRITE_PARALLEL, async (w) => {
        try {
          await target.put(w.key, w.data, { ifVersion: w.ifVersion });
          (w.create ? r.created : r.updated).push(w.key);
          written.push(w);
        } catch (err) {
          recordWriteError(r, w.key, err);
        }
      });
      const check = [...written, ...same];
      const reread = await readBatch(target, check.map((c) => c.key));
      for (const c of check) {
        const got = reread.get(c.key);
        const actual = got ? (contentHash(c.key, got.data) ?? 'invalid content') : 'absent';
        if (actual === c.hash) r.verified++;
        else r.mismatched.push({ key: c.key, expected: c.hash, actual });
      }
      r.unchanged.push(...same.filter((s) => reread.has(s.key)).map((s) => s.key));
    }
    o.progress?.tick(batch.length);
  }

  for (const group of chunks(deletes)) {
    if (o.dryRun) {
      r.deleted.push(...group.map((e) => e.key));
      continue;
    }
    const done: Key[] = [];
    await forEachLimit(group, WRITE_PARALLEL, async (e) => {
      try {
        await target.delete(e.key, { ifVersion: e.version });
        done.push(e.key);
      } catch (err) {
        recordWriteError(r, e.key, err);
      }
    });
    const still = await readBatch(target, done);
    for (const k of done) {
      if (still.has(k)) r.mismatched.push({ key: k, expected: 'absent', actual: contentHash(k, still.get(k)!.data) ?? 'invalid content' });
      else {
        r.deleted.push(k);
        r.verified++;
      }
    }
  }
  for (const list of [r.created, r.updated, r.deleted, r.unchanged, r.vanished]) list.sort();
  return r;
}

/** Human lines for a copy result: the plan per key in a dry run, what changed otherwise. */
export function formatCopy(r: CopyResult, dryRun: boolean): string[] {
  const w = dryRun ? { c: 'would create', u: 'would update', d: 'would delete' } : { c: 'created', u: 'updated', d: 'deleted' };
  const lines: string[] = [];
  for (const k of r.created) lines.push(`  ${w.c} ${k}`);
  for (const k of r.updated) lines.push(`  ${w.u} ${k}`);
  for (const k of r.deleted) lines.push(`  ${w.d} ${k}`);
  for (const k of r.kept) lines.push(`  kept ${k.key} (${k.reason})`);
  for (const k of r.invalid) lines.push(`  invalid ${k.key} (${k.reason}; not copied)`);
  for (const k of r.skipped) lines.push(`  skipped ${k.key} (${k.reason})`);
  for (const k of r.targetSkipped) lines.push(`  skipped on target ${k.key} (${k.reason})`);
  for (const k of r.vanished) lines.push(`  vanished ${k} (gone from the source while copying)`);
  for (const k of r.conflicts) lines.push(`  conflict ${k.key} (${k.reason})`);
  for (const k of r.rejected) lines.push(`  rejected ${k.key} (${k.reason})`);
  for (const k of r.failed) lines.push(`  failed ${k.key} (${k.reason})`);
  for (const m of r.mismatched) lines.push(`  MISMATCH ${m.key} (expected ${m.expected.slice(0, 12)}, target has ${m.actual.slice(0, 12)})`);
  return lines;
}
