/**
 * Issue 8 item 2 at the engine: a push whose outcome was never recorded (the answer lost, or a crash
 * before the base was saved) must not turn into a conflict against our own push on the next run.
 * The intent (key, hash pushed, version expected) is fsynced before the store write is sent.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeEngine, type Harness } from './harness.js';
import { StoreError } from '../../src/core/errors.js';
import { StateFile } from '../../src/engine/state.js';
import { tempDir } from '../support/tmp.js';

const harnesses: Harness[] = [];

/** The push intents a restarted credsync would find open for K. */
async function openAfterRestart(mirrorPath: string, storeId: string): Promise<readonly unknown[]> {
  const s = new StateFile(join(mirrorPath, '.credsync'), storeId);
  await s.load();
  return s.openIntents(K);
}
afterEach(async () => {
  const all = harnesses.splice(0);
  for (const x of all) await x.engine.stop(2000).catch(() => {});
  for (const x of all.reverse()) await x.cleanup();
});

const K = 'auths/r063.json';
// No timestamps: a conflict would go to the store (the adversarial run's case).
const v = (n: number): string => JSON.stringify({ type: 'claude', n });

describe('push intents (write-ahead)', () => {
  it('a push that landed but whose answer was lost is recognised at the next start: the newer local write is pushed, not replaced', async () => {
    const one = await makeEngine();
    harnesses.push(one);
    await one.local.put(K, v(1));
    await one.engine.reconcile();
    expect(await one.remote.get(K)).toBe(v(1));

    // The store takes the write, then the connection drops before the answer: an outage for the engine.
    const realPut = one.store.put.bind(one.store);
    one.store.put = async (key, data, o) => {
      await realPut(key, data, o);
      throw new StoreError(one.store.name, 'put', key, 'connection reset (test)');
    };
    await one.local.put(K, v(2));
    await expect(one.engine.reconcile()).rejects.toThrow(/connection reset/);
    expect(await one.remote.get(K)).toBe(v(2));
    // In the journal, or in the snapshot the end of the full pass folded it into.
    const intents = (await readFile(join(one.mirrorPath, '.credsync', 'journal.jsonl'), 'utf8')) + (await readFile(join(one.mirrorPath, '.credsync', 'state.json'), 'utf8'));
    expect(intents).toContain('"key":"auths/r063.json"');
    expect(intents).not.toContain('claude'); // hashes only, never content
    await one.engine.close();

    // The proxy keeps writing while credsync is down.
    await one.local.put(K, v(3));
    const two = await makeEngine({ storePath: one.storePath, mirrorPath: one.mirrorPath });
    harnesses.push(two);
    const r = await two.engine.reconcile();
    expect(r.conflicts, 'our own push is not a conflict').toEqual([]);
    expect(await two.local.get(K)).toBe(v(3));
    expect(await two.remote.get(K)).toBe(v(3));
    expect(await readdir(join(one.mirrorPath, '.credsync', 'conflicts')).catch(() => [])).toEqual([]);
    expect(two.lines.some((l) => /holds our interrupted push/.test(l.msg))).toBe(true);
    // Once the base is saved, the intents are resolved: a restart finds none open.
    expect(await openAfterRestart(one.mirrorPath, one.store.id)).toEqual([]);
  });

  it('an intent whose push never landed is dropped; a real conflict stays a conflict', async () => {
    const one = await makeEngine();
    harnesses.push(one);
    await one.local.put(K, v(1));
    await one.engine.reconcile();
    one.store.put = async (key) => {
      throw new StoreError(one.store.name, 'put', key, 'connection refused (test)');
    };
    await one.local.put(K, v(2));
    await expect(one.engine.reconcile()).rejects.toThrow(/connection refused/);
    await one.engine.close();
    // Someone else writes the store meanwhile.
    await one.remote.put(K, v(9));
    const two = await makeEngine({ storePath: one.storePath, mirrorPath: one.mirrorPath });
    harnesses.push(two);
    const r = await two.engine.reconcile();
    expect(r.conflicts.map((c) => c.winner)).toEqual(['store']);
    expect(await two.local.get(K)).toBe(v(9));
    expect(await openAfterRestart(one.mirrorPath, one.store.id)).toEqual([]);
  });

  it('concurrent intents share one append; a torn last line and an old state file without intents load', async () => {
    const d = await tempDir();
    try {
      const s = new StateFile(d.path, 'dir:/x');
      await s.load();
      await s.save(); // the first snapshot
      await Promise.all(Array.from({ length: 20 }, (_, i) => s.recordIntent(`auths/k${i}.json`, `h${i}`, null)));
      const lines = (await readFile(s.journalPath, 'utf8')).trim().split('\n');
      expect(lines.length, 'group commit: far fewer appends than intents').toBeLessThanOrEqual(2);
      expect(lines.flatMap((l) => (JSON.parse(l) as { i: unknown[] }).i)).toHaveLength(20);
      const { appendFile } = await import('node:fs/promises');
      await appendFile(s.journalPath, '{"g":1,"i":[{"s":"dir:/x","key":"auths/torn');
      const again = new StateFile(d.path, 'dir:/x');
      expect(await again.load()).toBeNull();
      expect(again.openIntents('auths/k7.json').map((i) => i.hash)).toEqual(['h7']);
      const other = new StateFile(d.path, 'dir:/other');
      await other.load();
      expect(other.openIntents('auths/k7.json')).toEqual([]);
    } finally {
      await d.remove();
    }
  });
});
