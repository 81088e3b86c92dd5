/**
 * Issue 8 item 1 at the mirror: a pull planned against one version of a local file never replaces a
 * newer one the proxy wrote after planning. Without the planned identity the same write overwrites it
 * (the unguarded path, shown below), which is what lost the newest token in the adversarial run.
 */
import { describe, it, expect } from 'vitest';
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { identityOfState, Mirror } from '../../src/mirror/mirror.js';
import { contentHash } from '../../src/core/canonical.js';
import { tempDir } from '../support/tmp.js';

const K = 'auths/a.json';
const body = (n: number): string => JSON.stringify({ type: 'claude', n });

async function proxyWrite(root: string, text: string): Promise<void> {
  const p = join(root, 'auths', 'a.json');
  await writeFile(`${p}.tmp-proxy`, text);
  await rename(`${p}.tmp-proxy`, p);
}

describe('Mirror.write with the identity observed when planning', () => {
  it('a local write landing between planning and the pull is detected, not overwritten; the unguarded write would lose it', async () => {
    const d = await tempDir();
    try {
      const m = new Mirror(d.path);
      await m.init();
      await proxyWrite(d.path, body(1));
      const planned = (await m.scan()).items.get(K)!; // what the planner judged
      const id = identityOfState(planned);
      expect(id).toBeTruthy();
      await proxyWrite(d.path, body(3)); // the proxy refreshes after planning
      const pulled = Buffer.from(body(2));
      const r = await m.write(K, pulled, contentHash(K, pulled)!, id);
      expect(r.status).toBe('changed');
      expect(await readFile(join(d.path, K), 'utf8')).toBe(body(3));
      // The unguarded write (no identity): the newer local write is gone.
      await m.write(K, pulled, contentHash(K, pulled)!);
      expect(await readFile(join(d.path, K), 'utf8')).toBe(body(2));
    } finally {
      await d.remove();
    }
  });

  it('a key planned absent that the proxy creates meanwhile is not overwritten', async () => {
    const d = await tempDir();
    try {
      const m = new Mirror(d.path);
      await m.init();
      const planned = (await m.inspect(K)).state;
      expect(identityOfState(planned)).toBeNull();
      await proxyWrite(d.path, body(7));
      const pulled = Buffer.from(body(2));
      expect((await m.write(K, pulled, contentHash(K, pulled)!, identityOfState(planned))).status).toBe('changed');
      expect(await readFile(join(d.path, K), 'utf8')).toBe(body(7));
      expect(await readdir(join(d.path, 'auths'))).toEqual(['a.json']);
    } finally {
      await d.remove();
    }
  });

  it('a store deletion removes only the file planned against', async () => {
    const d = await tempDir();
    try {
      const m = new Mirror(d.path);
      await m.init();
      await proxyWrite(d.path, body(1));
      const id = identityOfState((await m.inspect(K)).state);
      await proxyWrite(d.path, body(2));
      expect(await m.remove(K, id)).toBe('changed');
      expect(await readFile(join(d.path, K), 'utf8')).toBe(body(2));
      const now = identityOfState((await m.inspect(K)).state);
      expect(await m.remove(K, now)).toBe('removed');
      expect(await readdir(join(d.path, 'auths'))).toEqual([]);
    } finally {
      await d.remove();
    }
  });

  it('the identity comes from the scan cache too, and a guarded write updates it', async () => {
    const d = await tempDir();
    try {
      const m = new Mirror(d.path);
      await m.init();
      await proxyWrite(d.path, body(1));
      const first = identityOfState((await m.scan()).items.get(K)!);
      const again = identityOfState((await m.scan()).items.get(K)!); // cached
      expect(again).toEqual(first);
      const pulled = Buffer.from(body(2));
      const r = await m.write(K, pulled, contentHash(K, pulled)!, first);
      expect(r.status).toBe('written');
      const after = (await m.scan()).items.get(K)!;
      expect(after).toMatchObject({ present: true, valid: true, hash: contentHash(K, pulled)! });
      expect(identityOfState(after)).toEqual(r.status === 'written' ? r.identity : undefined);
    } finally {
      await d.remove();
    }
  });
});
