/**
 * A proxy whose own store rewrites the mirror at start-up (`RemoveAll`, then every file again — what
 * CLIProxyAPI's stores do) must neither blind credsync's watcher nor make it delete anything.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { processGroup, type Daemon } from '../support/daemon.js';
import { tempDir } from '../support/tmp.js';
import { sleep, waitFor } from '../support/wait.js';
import { put } from '../support/files.js';

describe('directories replaced under a running daemon', () => {
  const g = processGroup('all');
  let tmp: { path: string; remove(): Promise<void> };
  let d: Daemon;
  let store: string;
  let mirror: string;

  beforeAll(async () => {
    tmp = await tempDir('credsync-replaced-');
    store = join(tmp.path, 'store');
    mirror = join(tmp.path, 'mirror');
    for (let i = 0; i < 10; i++) await put(store, `auths/k${i}.json`, `{"k":${i}}`);
    await put(store, 'auths/team/t.json', '{"t":1}');
    d = await g.start({ env: { CREDSYNC_STORE: pathToFileURL(store).href, CREDSYNC_LOCAL_DIR: mirror, CREDSYNC_RECONCILE_INTERVAL: '60s' }, name: 'replaced' });
  });
  afterAll(async () => {
    await g.killAll();
    await tmp.remove();
  });

  it('rm -rf auths && mkdir auths, then new files: each round reaches the store at once (not at the next periodic reconcile), 8 rounds', async () => {
    onTestFailed(() => console.error(d.lines.slice(-40).map((l) => l.raw).join('\n')));
    for (let round = 0; round < 8; round++) {
      await rm(join(mirror, 'auths'), { recursive: true, force: true, maxRetries: 10, retryDelay: 5 });
      await mkdir(join(mirror, 'auths'), { recursive: true }); // MkdirAll
      // rewrite what was there (as the Go store does), plus one new credential
      for (let i = 0; i < 10; i++) await put(mirror, `auths/k${i}.json`, `{"k":${i}}`);
      await put(mirror, 'auths/team/t.json', '{"t":1}');
      for (let r = 0; r < round; r++) await put(mirror, `auths/new-${r}.json`, `{"round":${r}}`);
      await put(mirror, `auths/new-${round}.json`, `{"round":${round}}`);
      await waitFor(`round ${round}: new-${round}.json in the store`, async () => (await readFile(join(store, 'auths', `new-${round}.json`), 'utf8').catch(() => '')) === `{"round":${round}}`, 5000);
    }
  });

  it('a RemoveAll-and-rewrite of the whole mirror deletes nothing from the store', async () => {
    onTestFailed(() => console.error(d.lines.slice(-40).map((l) => l.raw).join('\n')));
    const before = (await readdir(join(store, 'auths'))).sort();
    const from = Date.now();
    const files = before.filter((f) => f.endsWith('.json'));
    for (let round = 0; round < 4; round++) {
      await rm(join(mirror, 'auths'), { recursive: true, force: true, maxRetries: 10, retryDelay: 5 });
      await mkdir(join(mirror, 'auths'), { recursive: true }); // MkdirAll
      // The proxy refills the directory from its database, the first files at once, the rest a little later.
      for (const [i, f] of files.entries()) {
        if (i === 6) await sleep(150 + round * 50);
        await put(mirror, `auths/${f}`, await readFile(join(store, 'auths', f), 'utf8'));
      }
      await put(mirror, 'auths/team/t.json', '{"t":1}');
      await sleep(400);
    }
    await sleep(1000);
    expect((await readdir(join(store, 'auths'))).sort()).toEqual(before);
    expect(d.messages(from).filter((m) => /removed from store/.test(m))).toEqual([]);
  });
});
