/**
 * Issue 10 item 2: the state as a snapshot plus an append-only journal. A change costs one journal
 * line whatever the store's size; replay is exact (a journal line of an older snapshot is never
 * applied); a torn line is never appended to; state written by earlier versions still loads.
 */
import { describe, it, expect } from 'vitest';
import { appendFile, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StateFile } from '../../src/engine/state.js';
import { tempDir } from '../support/tmp.js';

const STORE = 'dir:/store';
const entry = (i: number, v = 1): { hash: string; version: string } => ({ hash: `h${i}-${v}`.padEnd(64, '0'), version: `v${v}-${i}` });

async function loaded(dir: string, store = STORE): Promise<StateFile> {
  const s = new StateFile(dir, store);
  await s.load();
  return s;
}

async function withBase(dir: string, n: number): Promise<StateFile> {
  const s = await loaded(dir);
  for (let i = 0; i < n; i++) s.setBase(`auths/k${i}.json`, entry(i));
  await s.save();
  return s;
}

describe('state journal', () => {
  it('one change appends one line of the same size at 1,000 and at 10,000 items; the snapshot is not rewritten', async () => {
    const perChange: number[] = [];
    for (const n of [1000, 10_000]) {
      const d = await tempDir();
      try {
        const s = await withBase(d.path, n);
        const snapBefore = await stat(s.path);
        const written = s.writtenBytes;
        for (let j = 0; j < 20; j++) {
          s.setBase('auths/k7.json', entry(7, j + 2));
          await s.save();
        }
        perChange.push((s.writtenBytes - written) / 20);
        const snapAfter = await stat(s.path);
        expect(snapAfter.mtimeMs, `state.json rewritten at ${n}`).toBe(snapBefore.mtimeMs);
        expect(snapBefore.size, 'the snapshot does grow with the store').toBeGreaterThan(n * 50);
        const lines = (await readFile(s.journalPath, 'utf8')).trim().split('\n');
        expect(lines).toHaveLength(20);
        expect((await loaded(d.path)).base('auths/k7.json')).toEqual(entry(7, 21));
      } finally {
        await d.remove();
      }
    }
    expect(perChange[1]).toBe(perChange[0]);
    expect(perChange[0]).toBeLessThan(300);
  });

  it('replays base, pending, intents and the last sync exactly; a save with nothing changed writes nothing', async () => {
    const d = await tempDir();
    try {
      const s = await withBase(d.path, 5);
      s.dropBase('auths/k1.json');
      s.markPending('auths/k2.json', 'store unreachable');
      s.markPending('auths/k3.json', 'store unreachable');
      await s.save();
      s.clearPending('auths/k3.json');
      s.touchSync(1234);
      await s.recordIntent('auths/k4.json', 'hash-open', 'v1-4');
      await s.recordIntent('auths/k0.json', 'hash-done', 'v1-0');
      s.resolveIntents('auths/k0.json');
      await s.save();
      const bytes = s.writtenBytes;
      await s.save();
      expect(s.writtenBytes).toBe(bytes);

      const r = await loaded(d.path);
      expect(r.baseKeys().sort()).toEqual(['auths/k0.json', 'auths/k2.json', 'auths/k3.json', 'auths/k4.json']);
      expect(r.baseCount).toBe(4);
      expect(r.pendingKeys()).toEqual(['auths/k2.json']);
      expect(r.view().lastSyncAt).toBe(1234);
      expect(r.openIntents('auths/k4.json').map((i) => i.hash)).toEqual(['hash-open']);
      expect(r.openIntents('auths/k0.json')).toEqual([]);
    } finally {
      await d.remove();
    }
  });

  it('a journal line of an older snapshot is never applied (a crash between the new snapshot and the truncation)', async () => {
    const d = await tempDir();
    try {
      const s = await withBase(d.path, 3);
      s.setBase('auths/k1.json', entry(1, 2));
      await s.save();
      const oldJournal = await readFile(s.journalPath, 'utf8');
      expect(oldJournal).toContain('v2-1');
      // A newer change, then a full reconcile folds the journal into a new snapshot …
      s.setBase('auths/k1.json', entry(1, 3));
      await s.checkpoint();
      expect(await readFile(s.journalPath, 'utf8')).toBe('');
      // … but the truncation was lost in a crash: the old lines are back.
      await writeFile(s.journalPath, oldJournal);
      const r = await loaded(d.path);
      expect(r.base('auths/k1.json')).toEqual(entry(1, 3));
    } finally {
      await d.remove();
    }
  });

  it('a torn last line is ignored, and the next save never appends to it', async () => {
    const d = await tempDir();
    try {
      const s = await withBase(d.path, 2);
      s.setBase('auths/k0.json', entry(0, 2));
      await s.save();
      await appendFile(s.journalPath, '{"g":1,"b":{"auths/k1.json":{"hash":"to');
      const r = await loaded(d.path);
      expect(r.base('auths/k0.json')).toEqual(entry(0, 2));
      expect(r.base('auths/k1.json')).toEqual(entry(1));
      r.setBase('auths/k1.json', entry(1, 5));
      await r.save();
      r.setBase('auths/k0.json', entry(0, 6));
      await r.save();
      const again = await loaded(d.path);
      expect(again.base('auths/k1.json')).toEqual(entry(1, 5));
      expect(again.base('auths/k0.json')).toEqual(entry(0, 6));
      for (const line of (await readFile(again.journalPath, 'utf8')).trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
    } finally {
      await d.remove();
    }
  });

  it('past its bound the journal is folded into a new snapshot', async () => {
    const d = await tempDir();
    try {
      const s = new StateFile(d.path, STORE, 4096);
      await s.load();
      await s.save();
      for (let j = 0; j < 60; j++) {
        s.setBase(`auths/k${j % 4}.json`, entry(j % 4, j));
        await s.save();
      }
      expect((await stat(s.journalPath)).size).toBeLessThanOrEqual(4096 + 300);
      const r = await loaded(d.path);
      expect(r.base('auths/k3.json')).toEqual(entry(3, 59));
      expect(r.base('auths/k0.json')).toEqual(entry(0, 56));
    } finally {
      await d.remove();
    }
  });

  it("another store's snapshot and its journal load as an empty base", async () => {
    const d = await tempDir();
    try {
      const s = await withBase(d.path, 3);
      s.setBase('auths/k9.json', entry(9));
      await s.save();
      const other = new StateFile(d.path, 'dir:/elsewhere');
      expect(await other.load()).toMatch(/another store/);
      expect(other.baseKeys()).toEqual([]);
      await other.save();
      expect((await loaded(d.path, 'dir:/elsewhere')).baseKeys()).toEqual([]);
    } finally {
      await d.remove();
    }
  });

  it('state written before the journal (state.json without a generation, intents.jsonl) loads and is folded in', async () => {
    const d = await tempDir();
    try {
      await writeFile(join(d.path, 'state.json'), JSON.stringify({ format: 1, store: STORE, base: { 'auths/a.json': entry(1) }, pending: { 'auths/b.json': { since: 1, attempts: 2 } }, lastSyncAt: 99 }));
      await writeFile(join(d.path, 'intents.jsonl'), JSON.stringify({ store: STORE, key: 'auths/a.json', hash: 'pushed', expected: 'v1-1', at: 5 }) + '\n');
      const s = await loaded(d.path);
      expect(s.base('auths/a.json')).toEqual(entry(1));
      expect(s.pendingKeys()).toEqual(['auths/b.json']);
      expect(s.openIntents('auths/a.json').map((i) => i.hash)).toEqual(['pushed']);
      await s.save();
      await expect(stat(join(d.path, 'intents.jsonl'))).rejects.toThrow(/ENOENT/);
      const r = await loaded(d.path);
      expect(r.openIntents('auths/a.json').map((i) => i.hash)).toEqual(['pushed']);
      expect(r.view().lastSyncAt).toBe(99);
    } finally {
      await d.remove();
    }
  });
});
