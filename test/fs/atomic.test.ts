import { describe, it, expect } from 'vitest';
import { readdir, readFile, stat, writeFile, mkdir, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWrite } from '../../src/fs/atomic.js';
import { FileTree } from '../../src/fs/tree.js';
import { tempDir } from '../support/tmp.js';

describe('atomic writes (invariant 1)', () => {
  it('replaces the target by rename: a reader holding the old inode sees the old content whole', async () => {
    const d = await tempDir();
    try {
      const p = join(d.path, 'auths', 'x.json');
      await atomicWrite(p, Buffer.from('{"v":1}'));
      const before = await stat(p);
      await atomicWrite(p, Buffer.from('{"v":2}'));
      const after = await stat(p);
      expect(after.ino).not.toBe(before.ino); // a new file renamed over the old one, never truncated in place
      expect(await readFile(p, 'utf8')).toBe('{"v":2}');
      expect(after.mode & 0o777).toBe(0o600);
      expect((await stat(join(d.path, 'auths'))).mode & 0o777).toBe(0o700);
      expect(await readdir(join(d.path, 'auths'))).toEqual(['x.json']); // no temp file left
    } finally {
      await d.remove();
    }
  });

  it('on failure leaves the target untouched and no temp file behind', async () => {
    if (process.getuid?.() === 0) {
      // root ignores directory permissions; make the rename fail by targeting a directory instead.
      const d = await tempDir();
      try {
        const target = join(d.path, 'auths', 'x.json');
        await mkdir(join(target, 'inner'), { recursive: true });
        await expect(atomicWrite(target, Buffer.from('{}'))).rejects.toThrow();
        expect((await stat(target)).isDirectory()).toBe(true);
        expect(await readdir(join(d.path, 'auths'))).toEqual(['x.json']);
      } finally {
        await d.remove();
      }
      return;
    }
    const d = await tempDir();
    try {
      const dir = join(d.path, 'auths');
      await mkdir(dir);
      await writeFile(join(dir, 'x.json'), 'old');
      await chmod(dir, 0o500);
      await expect(atomicWrite(join(dir, 'x.json'), Buffer.from('new'))).rejects.toThrow();
      expect(await readFile(join(dir, 'x.json'), 'utf8')).toBe('old');
    } finally {
      await chmod(join(d.path, 'auths'), 0o700);
      await d.remove();
    }
  });

  it('never resolves a key outside the tree, even through a symlinked directory', async () => {
    const d = await tempDir();
    try {
      const outside = join(d.path, 'outside');
      await mkdir(outside);
      const root = join(d.path, 'root');
      await mkdir(root);
      const { symlink } = await import('node:fs/promises');
      await symlink(outside, join(root, 'auths'));
      const tree = new FileTree(root);
      await tree.init();
      await expect(tree.write('auths/x.json', Buffer.from('{}'))).rejects.toThrow(/outside/);
      expect(await readdir(outside)).toEqual([]);
      expect(() => tree.pathOf('auths/../../x.json')).toThrow(/\.\./);
    } finally {
      await d.remove();
    }
  });
});
