/**
 * Issue 8 item 1 at the file level: a write that lands between planning and the rename is never
 * silently replaced. `guardedWrite` compares the target's identity (inode, size, mtime, ctime in ns)
 * right before the rename, and links the replaced file aside to check it afterwards.
 */
import { describe, it, expect } from 'vitest';
import { readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWrite, guardedRemove, guardedWrite, identityOf, type FileIdentity } from '../../src/fs/atomic.js';
import { tempDir } from '../support/tmp.js';

const idOf = async (p: string): Promise<FileIdentity> => identityOf(await stat(p, { bigint: true }));

/** What CLIProxyAPI does: write a temp file, rename it over the credential. */
async function proxyWrite(p: string, text: string): Promise<void> {
  await writeFile(`${p}.proxy-tmp`, text);
  await rename(`${p}.proxy-tmp`, p);
}

describe('guardedWrite: no newer local write replaced by a pull', () => {
  it('writes when the target is still the file planned against', async () => {
    const d = await tempDir();
    try {
      const p = join(d.path, 'a.json');
      await atomicWrite(p, Buffer.from('{"n":1}'));
      const r = await guardedWrite(p, Buffer.from('{"n":2}'), await idOf(p));
      expect(r.status).toBe('written');
      expect(await readFile(p, 'utf8')).toBe('{"n":2}');
      expect(await readdir(d.path)).toEqual(['a.json']);
    } finally {
      await d.remove();
    }
  });

  it('a write landing after planning (tmp + rename) is detected and left in place', async () => {
    const d = await tempDir();
    try {
      const p = join(d.path, 'a.json');
      await atomicWrite(p, Buffer.from('{"n":1}'));
      const planned = await idOf(p);
      await proxyWrite(p, '{"n":3}'); // the proxy refreshes the token meanwhile
      const r = await guardedWrite(p, Buffer.from('{"n":2}'), planned);
      expect(r.status).toBe('changed');
      expect(await readFile(p, 'utf8')).toBe('{"n":3}');
      expect(await readdir(d.path)).toEqual(['a.json']); // no temp file left
    } finally {
      await d.remove();
    }
  });

  it('an in-place rewrite of a different size after planning is detected too', async () => {
    const d = await tempDir();
    try {
      const p = join(d.path, 'a.json');
      await atomicWrite(p, Buffer.from('{"n":1}'));
      const planned = await idOf(p);
      await writeFile(p, '{"n":1000}');
      expect((await guardedWrite(p, Buffer.from('{"n":2}'), planned)).status).toBe('changed');
      expect(await readFile(p, 'utf8')).toBe('{"n":1000}');
    } finally {
      await d.remove();
    }
  });

  it('a file planned as absent that appears meanwhile is never replaced, even in the last instant', async () => {
    const d = await tempDir();
    try {
      const p = join(d.path, 'new.json');
      await writeFile(p, '{"mine":true}');
      expect((await guardedWrite(p, Buffer.from('{"pulled":true}'), null)).status).toBe('changed');
      expect(await readFile(p, 'utf8')).toBe('{"mine":true}');
      // Appearing between the check and the link: the link refuses to replace it.
      const q = join(d.path, 'late.json');
      const r = await guardedWrite(q, Buffer.from('{"pulled":true}'), null, { afterCheck: () => writeFileSync(q, '{"late":true}') });
      expect(r.status).toBe('changed');
      expect(await readFile(q, 'utf8')).toBe('{"late":true}');
      expect((await readdir(d.path)).sort()).toEqual(['late.json', 'new.json']);
    } finally {
      await d.remove();
    }
  });

  it('a write landing between the check and the rename is replaced but handed back, never lost', async () => {
    const d = await tempDir();
    try {
      const p = join(d.path, 'a.json');
      await atomicWrite(p, Buffer.from('{"n":1}'));
      const planned = await idOf(p);
      const r = await guardedWrite(p, Buffer.from('{"n":2}'), planned, {
        afterCheck: () => {
          writeFileSync(`${p}.proxy-tmp`, '{"n":3}');
          renameSync(`${p}.proxy-tmp`, p);
        },
      });
      expect(r.status).toBe('replaced');
      if (r.status !== 'replaced') return;
      expect(r.replaced?.toString()).toBe('{"n":3}');
      expect(await readFile(p, 'utf8')).toBe('{"n":2}');
      expect(r.identity).toEqual(await idOf(p));
      expect(await readdir(d.path)).toEqual(['a.json']); // the private link is gone
    } finally {
      await d.remove();
    }
  });
});

describe('guardedWrite: an identity that repeats', () => {
  it('the replaced file is also checked by content: a rewrite carrying the planned identity (inode reuse within one tick) is handed back', async () => {
    const d = await tempDir();
    try {
      const p = join(d.path, 'a.json');
      await atomicWrite(p, Buffer.from('{"n":3}'));
      // What ext4 can produce: the planned file's inode number reused by a newer file of the same size
      // within one timestamp tick — the identity matches although the content is not what was planned.
      const r = await guardedWrite(p, Buffer.from('{"n":2}'), await idOf(p), { verify: (b) => b.toString() === '{"n":1}' });
      expect(r.status).toBe('replaced');
      if (r.status === 'replaced') expect(r.replaced?.toString()).toBe('{"n":3}');
      const ok = await guardedWrite(p, Buffer.from('{"n":4}'), await idOf(p), { verify: (b) => b.toString() === '{"n":2}' });
      expect(ok.status).toBe('written');
    } finally {
      await d.remove();
    }
  });
});

describe('guardedRemove: a deletion from the store never removes a newer local write', () => {
  it('removes the file planned against, leaves a newer one in place', async () => {
    const d = await tempDir();
    try {
      const p = join(d.path, 'a.json');
      await atomicWrite(p, Buffer.from('{"n":1}'));
      expect((await guardedRemove(p, await idOf(p))).status).toBe('removed');
      expect(await readdir(d.path)).toEqual([]);

      await atomicWrite(p, Buffer.from('{"n":1}'));
      const planned = await idOf(p);
      await proxyWrite(p, '{"n":2}');
      expect((await guardedRemove(p, planned)).status).toBe('changed');
      expect(await readFile(p, 'utf8')).toBe('{"n":2}');
      expect(await readdir(d.path)).toEqual(['a.json']);
    } finally {
      await d.remove();
    }
  });
});
