/**
 * Issue 8 items 5 and 6 at the mirror: what the engine sees. A valid deep key is present; a FIFO,
 * socket, oversized file or dangling link under a credential's name is present and invalid (the engine
 * rejects it: never pushed, never deleted, never overwritten) — never absent, and never a blocked read.
 */
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { identityOfState, Mirror, signatureOf, unreadableReason } from '../../src/mirror/mirror.js';
import { contentHash } from '../../src/core/canonical.js';
import { tempDir } from '../support/tmp.js';
import { put } from '../support/files.js';

const deepKey = 'auths/' + Array.from({ length: 20 }, (_, i) => `d${String(i + 1).padStart(2, '0')}`).join('/') + '/deep.json';

describe('Mirror: nothing it cannot see or read is absent', () => {
  it('sees a valid key 20 directories deep, in a scan and by inspection (item 5)', async () => {
    const d = await tempDir();
    try {
      const m = new Mirror(d.path);
      await m.init();
      await put(d.path, deepKey, '{"deep":true}');
      const scan = await m.scan();
      expect(scan.items.get(deepKey)).toEqual({ present: true, valid: true, hash: contentHash(deepKey, Buffer.from('{"deep":true}')) });
      expect((await m.inspect(deepKey)).state).toMatchObject({ present: true, valid: true });
    } finally {
      await d.remove();
    }
  });

  it('a FIFO swapped in under a credential name is present and invalid, in scan and inspect, without blocking (item 6)', async () => {
    const d = await tempDir();
    try {
      const m = new Mirror(d.path);
      await m.init();
      await put(d.path, 'auths/a.json', '{"a":1}');
      await put(d.path, 'config/config.yaml', 'port: 1\n');
      expect((await m.scan()).items.get('auths/a.json')).toMatchObject({ present: true, valid: true });
      // swap in FIFOs the way a writer swaps files: create beside, rename over
      execFileSync('mkfifo', [join(d.path, 'auths/.a.fifo')]);
      await rename(join(d.path, 'auths/.a.fifo'), join(d.path, 'auths/a.json'));
      await rm(join(d.path, 'config/config.yaml'));
      execFileSync('mkfifo', [join(d.path, 'config/config.yaml')]);
      const fifo = { present: true, valid: false, reason: 'not a regular file (a FIFO)' };
      // no writer ever opens these FIFOs: a blocking open would hang here until the test times out
      expect((await m.inspect('auths/a.json')).state).toEqual(fifo);
      expect((await m.inspect('config/config.yaml')).state).toEqual(fifo);
      const scan = await m.scan();
      expect(scan.items.get('auths/a.json')).toEqual(fifo);
      expect(scan.items.get('config/config.yaml')).toEqual(fifo);
      expect(scan.skipped).toEqual([]); // an item with a reason, not a skipped name
      // the cache never keeps a stale "valid" for it
      expect((await m.inspect('auths/a.json', false)).state).toEqual(fifo);
    } finally {
      await d.remove();
    }
  });

  it('a file over the size limit, a dangling symlink and a directory under an item name are present and invalid', async () => {
    const d = await tempDir();
    try {
      const m = new Mirror(d.path, { maxItemBytes: 64 });
      await m.init();
      await put(d.path, 'auths/big.json', JSON.stringify({ token: 'x'.repeat(100) }));
      await put(d.path, 'auths/small.json', '{"a":1}');
      await symlink(join(d.path, 'auths/nowhere.json'), join(d.path, 'auths/dangling.json'));
      await mkdir(join(d.path, 'auths/dir.json'));
      const scan = await m.scan();
      expect(Object.fromEntries(scan.items)).toEqual({
        'auths/big.json': { present: true, valid: false, reason: 'larger than 64 bytes (112 bytes); raise CREDSYNC_MAX_ITEM_BYTES to accept it' },
        'auths/dangling.json': { present: true, valid: false, reason: 'symlink to a missing file' },
        'auths/dir.json': { present: true, valid: false, reason: 'not a regular file (a directory)' },
        'auths/small.json': { present: true, valid: true, hash: contentHash('auths/small.json', Buffer.from('{"a":1}')) },
      });
      expect((await m.inspect('auths/big.json')).state).toEqual(scan.items.get('auths/big.json'));
      expect((await m.inspect('auths/dangling.json')).state).toEqual(scan.items.get('auths/dangling.json'));
      expect((await m.inspect('auths/dir.json')).state).toEqual(scan.items.get('auths/dir.json'));
      expect((await m.inspect('auths/none.json')).state).toEqual({ present: false });
      // the default limit is 1 MiB
      await put(d.path, 'auths/huge.json', JSON.stringify({ token: 'x'.repeat(1024 * 1024) }));
      expect((await new Mirror(d.path).inspect('auths/huge.json')).state).toEqual({
        present: true,
        valid: false,
        reason: 'larger than 1 MiB (1048588 bytes); raise CREDSYNC_MAX_ITEM_BYTES to accept it',
      });
    } finally {
      await d.remove();
    }
  });

  it('scan({ known }) adds no item for a key that is truly absent; unreadableReason matches by prefix', async () => {
    const d = await tempDir();
    try {
      const m = new Mirror(d.path);
      await m.init();
      await put(d.path, 'auths/team/a.json', '{"a":1}');
      expect(unreadableReason({ unreadable: [{ prefix: 'auths/team/', reason: 'x', vanished: true }] }, 'auths/team/a.json')).toBe('auths/team/: x');
      expect(unreadableReason({ unreadable: [] }, 'auths/team/a.json')).toBeNull();
      const scan = await m.scan({ known: ['auths/team/a.json', 'auths/other.json'] });
      expect([...scan.items.keys()]).toEqual(['auths/team/a.json']);
      expect(scan.unreadable).toEqual([]);
    } finally {
      await d.remove();
    }
  });
});

describe('Mirror.remembered: what the last sync knew of a file', () => {
  it('a file whose stat signature is unchanged is not read by a scan (also after a restart); a changed one is', async () => {
    const d = await tempDir();
    try {
      const first = new Mirror(d.path);
      await first.init();
      await writeFile(join(d.path, 'auths', 'r.json'), '{"v":1}');
      const seen = (await first.scan()).items.get('auths/r.json')!;
      const sig = signatureOf(identityOfState(seen)!);
      // A new process (empty in-memory cache) that remembers the signature with a hash: the scan trusts it.
      const restarted = new Mirror(d.path, { statCache: false });
      restarted.remembered = (k) => (k === 'auths/r.json' ? { sig, hash: 'remembered-hash' } : undefined);
      expect((await restarted.scan()).items.get('auths/r.json')).toMatchObject({ present: true, valid: true, hash: 'remembered-hash' });
      // Rewritten (same size, new inode and times): read and hashed again.
      await writeFile(join(d.path, 'auths', 'r.tmp'), '{"v":2}');
      await rename(join(d.path, 'auths', 'r.tmp'), join(d.path, 'auths', 'r.json'));
      const now = (await restarted.scan()).items.get('auths/r.json');
      expect(now).toMatchObject({ present: true, valid: true });
      expect(now && now.present && now.valid ? now.hash : null).not.toBe('remembered-hash');
      // A fresh inspection (the watcher's) never trusts it.
      restarted.remembered = (k) => (k === 'auths/r.json' ? { sig: signatureOf(identityOfState(now!)!), hash: 'remembered-hash' } : undefined);
      expect((await restarted.inspect('auths/r.json', true)).state).not.toMatchObject({ hash: 'remembered-hash' });
    } finally {
      await d.remove();
    }
  });
});
