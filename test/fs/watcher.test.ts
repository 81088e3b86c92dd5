import { describe, it, expect } from 'vitest';
import { rename, writeFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FileTree } from '../../src/fs/tree.js';
import { watchTree } from '../../src/fs/watcher.js';
import { tempDir } from '../support/tmp.js';
import { sleep, waitFor } from '../support/wait.js';

describe('mirror watcher', () => {
  it('reports the last of two writes 30 ms apart (a write landing during a read is not lost)', async () => {
    const d = await tempDir();
    const tree = new FileTree(d.path);
    await tree.init();
    await mkdir(join(d.path, 'auths'), { recursive: true });
    await writeFile(join(d.path, 'auths/x.json'), '{"v":0}');
    const reads: string[] = [];
    const stop = await watchTree(tree, {
      debounceMs: 10,
      onKeys: (keys) => {
        for (const k of keys) void tree.read(k).then((b) => reads.push(Buffer.from(b!).toString()));
      },
    });
    try {
      for (let round = 1; round <= 5; round++) {
        const p = join(d.path, 'auths/x.json');
        const write = async (v: number): Promise<void> => {
          await writeFile(p + '.w', `{"v":${v}}`);
          await rename(p + '.w', p);
        };
        await write(round * 10 + 1);
        await sleep(30); // after our 10 ms debounce fired, while the first version may be being read
        await write(round * 10 + 2);
        await waitFor(`round ${round}: last write seen`, () => reads.at(-1) === `{"v":${round * 10 + 2}}`, 2000);
        await sleep(100);
      }
    } finally {
      await stop();
      await d.remove();
    }
  });

  it("a writer's own temp file renamed over a credential is a key change, not a reason to rescan everything", async () => {
    const d = await tempDir();
    const tree = new FileTree(d.path);
    await tree.init();
    await mkdir(join(d.path, 'auths'), { recursive: true });
    const seen: string[] = [];
    let structural = 0;
    const stop = await watchTree(tree, { debounceMs: 10, onKeys: (keys) => seen.push(...keys), onStructural: () => structural++ });
    try {
      for (let i = 0; i < 5; i++) {
        // how atomic writers (the proxy, editors, `jq > tmp && mv`) replace a file: a name that is no key, renamed away
        const tmp = join(d.path, `auths/.writer-${i}.tmp`);
        await writeFile(tmp, `{"v":${i}}`);
        await rename(tmp, join(d.path, 'auths/a.json'));
        await sleep(30);
      }
      await waitFor('the credential reported', () => seen.includes('auths/a.json'));
      await sleep(100);
      expect(structural, 'full rescans asked for').toBe(0);
      expect(new Set(seen)).toEqual(new Set(['auths/a.json']));
      // a directory that vanishes still is structural
      await mkdir(join(d.path, 'auths/team'));
      await waitFor('new directory seen', () => structural >= 1);
      const before = structural;
      await rm(join(d.path, 'auths/team'), { recursive: true });
      await waitFor('vanished directory seen', () => structural > before);
    } finally {
      await stop();
      await d.remove();
    }
  });

  it('reports files under a new nested directory and ignores temp files', async () => {
    const d = await tempDir();
    const tree = new FileTree(d.path);
    await tree.init();
    const seen = new Set<string>();
    const stop = await watchTree(tree, { debounceMs: 10, onKeys: (keys) => keys.forEach((k) => seen.add(k)) });
    try {
      await mkdir(join(d.path, 'auths/team'), { recursive: true });
      await writeFile(join(d.path, 'auths/team/a.json'), '{}');
      await writeFile(join(d.path, 'auths/.credsync-abc.tmp'), '{}');
      await writeFile(join(d.path, 'auths/notes.txt'), 'x');
      await waitFor('nested file reported', () => seen.has('auths/team/a.json'));
      await sleep(150);
      expect([...seen]).toEqual(['auths/team/a.json']);
    } finally {
      await stop();
      await d.remove();
    }
  });

  it('watches dot-files and dot-directories under auths/ (CLIProxyAPI ids), never .credsync* or temp files', async () => {
    const d = await tempDir();
    const tree = new FileTree(d.path);
    await tree.init();
    await mkdir(join(d.path, 'auths/.team'), { recursive: true });
    await mkdir(join(d.path, 'auths/.credsync'), { recursive: true });
    const seen = new Set<string>();
    const stop = await watchTree(tree, { debounceMs: 10, onKeys: (keys) => keys.forEach((k) => seen.add(k)) });
    try {
      await writeFile(join(d.path, 'auths/.hidden.json'), '{}');
      await writeFile(join(d.path, 'auths/UPPER.JSON'), '{}');
      await writeFile(join(d.path, 'auths/.team/x.json'), '{}');
      await writeFile(join(d.path, 'auths/.credsync/x.json'), '{}');
      await writeFile(join(d.path, 'auths/.credsync-abc.tmp'), '{}');
      await mkdir(join(d.path, 'auths/team'));
      await writeFile(join(d.path, 'auths/team/.dot.json'), '{}');
      await waitFor('dot-files reported', () => ['auths/.hidden.json', 'auths/UPPER.JSON', 'auths/.team/x.json', 'auths/team/.dot.json'].every((k) => seen.has(k)));
      await sleep(150);
      expect([...seen].sort()).toEqual(['auths/.hidden.json', 'auths/.team/x.json', 'auths/UPPER.JSON', 'auths/team/.dot.json']);
    } finally {
      await stop();
      await d.remove();
    }
  });

  it.each([
    ['auths', 'auths/x.json'],
    ['auths/team', 'auths/team/x.json'],
    ['auths/team/deep', 'auths/team/deep/x.json'],
  ])('re-arms when %s is replaced (rm -rf && mkdir, as CLIProxyAPI does at start-up): the next file is seen at once', async (dir, key) => {
    const d = await tempDir();
    const tree = new FileTree(d.path);
    await tree.init();
    await mkdir(join(d.path, dir), { recursive: true });
    const seen: string[] = [];
    const stop = await watchTree(tree, { debounceMs: 10, onKeys: (keys) => seen.push(...keys) });
    try {
      for (let round = 0; round < 8; round++) {
        await rm(join(d.path, dir), { recursive: true, force: true });
        await mkdir(join(d.path, dir), { recursive: true });
        await sleep(round % 2 ? 0 : 20);
        seen.length = 0;
        await writeFile(join(d.path, key), `{"round":${round}}`);
        await waitFor(`round ${round}: ${key} reported after ${dir} was replaced`, () => seen.includes(key), 2000);
      }
    } finally {
      await stop();
      await d.remove();
    }
  });
});

