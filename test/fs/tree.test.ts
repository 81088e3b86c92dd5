import { describe, it, expect } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileTree } from '../../src/fs/tree.js';
import { tempDir } from '../support/tmp.js';

async function put(root: string, rel: string, text = '{}'): Promise<void> {
  const p = join(root, rel);
  await mkdir(join(p, '..'), { recursive: true });
  await writeFile(p, text);
}

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
