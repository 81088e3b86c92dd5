import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { FileTree } from '../../src/fs/tree.js';
import { DEFAULT_MAX_ITEM_BYTES, FileRefusedError, readNoFollow, readRegular } from '../../src/fs/atomic.js';
import { tempDir } from '../support/tmp.js';
import { put } from '../support/files.js';

const deepKey = (levels: number): string => 'auths/' + Array.from({ length: levels }, (_, i) => `d${String(i + 1).padStart(2, '0')}`).join('/') + '/deep.json';

describe('FileTree.scan', () => {
  it('finds the ids CLIProxyAPI accepts (dot-files, UPPER.JSON) and never .credsync* or temp files', async () => {
    const d = await tempDir();
    try {
      const tree = new FileTree(d.path);
      await tree.init();
      for (const rel of ['auths/.hidden.json', 'auths/team/.dot.json', 'auths/.team/x.json', 'auths/UPPER.JSON', 'auths/a.json']) await put(d.path, rel);
      for (const rel of ['auths/.credsync/x.json', 'auths/.credsync-0a1b.tmp', 'auths/notes.txt', '.credsync/conflicts/x.json']) await put(d.path, rel);
      const scan = await tree.scan();
      expect(scan.files.map((f) => f.key)).toEqual(['auths/.hidden.json', 'auths/.team/x.json', 'auths/UPPER.JSON', 'auths/a.json', 'auths/team/.dot.json']);
      expect(scan.skipped).toEqual([]);
    } finally {
      await d.remove();
    }
  });
});

describe('FileTree.scan: depth (issue 8 item 5)', () => {
  it('finds a valid key 20 and 60 directories deep', async () => {
    const d = await tempDir();
    try {
      const tree = new FileTree(d.path);
      await tree.init();
      const keys = [deepKey(20), deepKey(60)];
      for (const k of keys) {
        expect(Buffer.byteLength(k)).toBeLessThanOrEqual(255);
        await put(d.path, k);
      }
      const scan = await tree.scan();
      expect(scan.files.map((f) => f.key)).toEqual(keys.sort());
      expect(scan.skipped).toEqual([]);
    } finally {
      await d.remove();
    }
  });

  it('reports a directory too deep for any key instead of walking it without end', async () => {
    const d = await tempDir();
    try {
      const tree = new FileTree(d.path);
      await tree.init();
      const dirs = Array.from({ length: 90 }, (_, i) => `e${String(i).padStart(2, '0')}`); // 6 + 90*4 bytes
      await put(d.path, ['auths', ...dirs, 'x.json'].join('/'));
      const scan = await tree.scan();
      expect(scan.files).toEqual([]);
      expect(scan.skipped).toHaveLength(1);
      expect(scan.skipped[0]!.reason).toMatch(/^directory too deep for any key \(keys are at most 255 bytes\)/);
      expect(Buffer.byteLength(scan.skipped[0]!.id) + 5).toBeGreaterThan(255);
      expect(Buffer.byteLength(scan.skipped[0]!.id) - 4 + 5).toBeLessThanOrEqual(255);
    } finally {
      await d.remove();
    }
  });
});

describe('non-regular files and size (issue 8 item 6)', () => {
  it('a FIFO, a socket, a dangling or escaping symlink under a credential name are rejected keys, never absent or blocking', async () => {
    const d = await tempDir();
    const other = await tempDir();
    const server = net.createServer();
    try {
      const tree = new FileTree(d.path);
      await tree.init();
      await mkdir(join(d.path, 'auths'), { recursive: true });
      await mkdir(join(d.path, 'config'), { recursive: true });
      execFileSync('mkfifo', [join(d.path, 'auths/fifo.json')]);
      execFileSync('mkfifo', [join(d.path, 'config/config.yaml')]);
      await new Promise<void>((resolve) => server.listen(join(d.path, 'auths/sock.json'), resolve));
      await symlink(join(d.path, 'auths/missing.json'), join(d.path, 'auths/dangling.json'));
      await writeFile(join(other.path, 'outside.json'), '{}');
      await symlink(join(other.path, 'outside.json'), join(d.path, 'auths/escape.json'));
      await mkdir(join(d.path, 'auths/dir.json'));
      await put(d.path, 'auths/ok.json');
      const scan = await tree.scan();
      expect(scan.files.map((f) => f.key)).toEqual(['auths/ok.json']);
      expect(scan.rejected).toEqual([
        { key: 'config/config.yaml', reason: 'not a regular file (a FIFO)' },
        { key: 'auths/dangling.json', reason: 'symlink to a missing file' },
        { key: 'auths/dir.json', reason: 'not a regular file (a directory)' },
        { key: 'auths/escape.json', reason: 'symlink pointing outside the mirror' },
        { key: 'auths/fifo.json', reason: 'not a regular file (a FIFO)' },
        { key: 'auths/sock.json', reason: 'not a regular file (a socket)' },
      ]);
      // and reported to callers that only know `skipped` (the directory store's listing)
      expect(scan.skipped.map((x) => x.id).sort()).toEqual(scan.rejected.map((r) => r.key).sort());
      // reading them never blocks (a blocking open of a FIFO would hang this test until its timeout)
      for (const k of ['auths/fifo.json', 'config/config.yaml']) {
        await expect(tree.read(k)).rejects.toThrow(new FileRefusedError('not a regular file (a FIFO)', 'special'));
        await expect(tree.readScanned({ key: k, path: tree.pathOf(k) })).rejects.toThrow(/not a regular file \(a FIFO\)/);
      }
      await expect(tree.read('auths/sock.json')).rejects.toBeInstanceOf(FileRefusedError);
      await expect(tree.read('auths/escape.json')).rejects.toThrow('symlink pointing outside the mirror');
      await expect(readNoFollow(tree.pathOf('auths/fifo.json'))).rejects.toBeInstanceOf(FileRefusedError);
    } finally {
      await new Promise((r) => server.close(r));
      await d.remove();
      await other.remove();
    }
  });

  it('refuses a file over the item size limit (1 MiB as the mirror uses it), also one that grows while read', async () => {
    const d = await tempDir();
    try {
      const tree = new FileTree(d.path, { maxItemBytes: DEFAULT_MAX_ITEM_BYTES });
      await tree.init();
      await put(d.path, 'auths/big.json', '{"a":"' + 'x'.repeat(1024 * 1024) + '"}');
      await put(d.path, 'auths/edge.json', '{"a":"' + 'x'.repeat(1024 * 1024 - 8) + '"}');
      await expect(tree.read('auths/big.json')).rejects.toThrow('larger than 1 MiB (1048584 bytes); raise CREDSYNC_MAX_ITEM_BYTES to accept it');
      expect((await tree.read('auths/edge.json'))!.length).toBe(1024 * 1024);
      // without a limit (the directory store) the file is read whole
      expect((await new FileTree(d.path).read('auths/big.json'))!.length).toBe(1048584);
      const small = new FileTree(d.path, { maxItemBytes: 1024 });
      await expect(small.read('auths/edge.json')).rejects.toThrow(/^larger than 1 KiB \(1048576 bytes\)/);
      // a device is refused before any read
      await expect(readRegular('/dev/zero', { follow: true })).rejects.toThrow('not a regular file (a character device)');
      // a regular file whose size says 0 but that has more to read (procfs) is caught while reading
      await expect(readRegular('/proc/self/maps', { follow: true, maxBytes: 16 })).rejects.toThrow('larger than 16 bytes (17 or more bytes)');
      expect((await readRegular('/proc/self/status', { follow: true })).toString()).toMatch(/^Name:/);
    } finally {
      await d.remove();
    }
  });
});
