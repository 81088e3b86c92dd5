import { describe, it, expect } from 'vitest';
import { stat, symlink, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createDirStore } from '../../src/stores/dir.js';
import { storeConformance } from './conformance.js';
import { tempDir } from '../support/tmp.js';

storeConformance(
  'dir',
  async () => {
    const dir = await tempDir('credsync-dirstore-');
    const store = createDirStore({ path: dir.path, debounceMs: 10 });
    await store.init();
    return {
      store,
      second: async () => {
        const s = createDirStore({ path: dir.path, debounceMs: 10 });
        await s.init();
        return s;
      },
      cleanup: async () => {
        await store.close();
        await dir.remove();
      },
    };
  },
  { exactAuthBytes: true },
);

describe('dir store specifics', () => {
  it('writes files 0600 in directories 0700 with the mirror layout', async () => {
    const dir = await tempDir();
    try {
      const store = createDirStore({ path: join(dir.path, 'store') });
      await store.init();
      await store.put('auths/team/a.json', Buffer.from('{"a":1}'));
      await store.put('config/config.yaml', Buffer.from('port: 1\n'));
      expect((await stat(join(dir.path, 'store/auths/team/a.json'))).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir.path, 'store/auths/team'))).mode & 0o777).toBe(0o700);
      expect((await stat(join(dir.path, 'store/config/config.yaml'))).mode & 0o777).toBe(0o600);
    } finally {
      await dir.remove();
    }
  });

  it('does not follow a symlink out of the store and reports it', async () => {
    const dir = await tempDir();
    try {
      const outside = join(dir.path, 'outside.json');
      await writeFile(outside, '{"secret":"x"}');
      const root = join(dir.path, 'store');
      await mkdir(join(root, 'auths'), { recursive: true });
      await symlink(outside, join(root, 'auths', 'link.json'));
      const store = createDirStore({ path: root });
      await store.init();
      const listing = await store.list();
      expect(listing.entries).toEqual([]);
      expect(listing.skipped).toEqual([{ id: 'auths/link.json', reason: 'symlink pointing outside the mirror' }]);
      await expect(store.get('auths/link.json')).rejects.toThrow(/outside/);
    } finally {
      await dir.remove();
    }
  });
});
