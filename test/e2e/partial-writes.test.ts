/**
 * Half-written files never propagate: a credential and a config written in place, slowly, are never
 * seen in the store in part — while a file renamed into place (how atomic writers replace a file) is
 * read at once, without waiting for the quiet time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { processGroup, type Daemon } from '../support/daemon.js';
import { tempDir } from '../support/tmp.js';
import { sleep, waitFor } from '../support/wait.js';

describe('partially written files', () => {
  const g = processGroup('all');
  let tmp: { path: string; remove(): Promise<void> };
  let d: Daemon;
  let store: string;
  let mirror: string;

  beforeAll(async () => {
    tmp = await tempDir('credsync-partial-');
    store = join(tmp.path, 'store');
    mirror = join(tmp.path, 'mirror');
    await mkdir(join(store, 'auths'), { recursive: true });
    await mkdir(join(store, 'config'), { recursive: true });
    await writeFile(join(store, 'config', 'config.yaml'), 'port: 1\n');
    d = await g.start({ env: { CREDSYNC_STORE: pathToFileURL(store).href, CREDSYNC_LOCAL_DIR: mirror, CREDSYNC_DEBOUNCE: '25ms' }, name: 'partial' });
  });
  afterAll(async () => {
    await g.killAll();
    await tmp.remove();
  });

  /** Writes `chunks` into `path` in place, `gapMs` apart, while recording every content the store shows for `storePath`. */
  async function slowWrite(path: string, storePath: string, chunks: string[], gapMs: number): Promise<Set<string>> {
    const seen = new Set<string>();
    let watching = true;
    const watch = (async () => {
      while (watching) {
        seen.add(await readFile(storePath, 'utf8').catch(() => '<absent>'));
        await sleep(2);
      }
    })();
    const fh = await open(path, 'w');
    try {
      for (const c of chunks) {
        await fh.write(c);
        await fh.datasync();
        await sleep(gapMs);
      }
    } finally {
      await fh.close();
    }
    await sleep(1500);
    watching = false;
    await watch;
    seen.add(await readFile(storePath, 'utf8').catch(() => '<absent>'));
    return seen;
  }

  it('a credential written in place in slow chunks reaches the store only whole', async () => {
    const final = '{"type":"claude","email":"slow@x","refresh_token":"rt-slow","n":1}';
    const chunks = ['{"type":"claude",', '"email":"slow@x",', '"refresh_token":"rt-slow",', '"n":1}'];
    const seen = await slowWrite(join(mirror, 'auths', 'slow.json'), join(store, 'auths', 'slow.json'), chunks, 120);
    expect([...seen].filter((s) => s !== '<absent>')).toEqual([final]);
  });

  it('a config.yaml written in place in slow chunks, every prefix valid YAML, reaches the store only whole', async () => {
    const chunks = ['port: 8317\n', 'host: 127.0.0.1\n', 'debug: false\n', 'auth-dir: ./auths\n'];
    const seen = await slowWrite(join(mirror, 'config', 'config.yaml'), join(store, 'config', 'config.yaml'), chunks, 150);
    expect([...seen].filter((s) => s !== 'port: 1\n')).toEqual([chunks.join('')]);
  });

  it('a credential renamed into place is read at once (before its quiet time) and a renamed-in invalid file is still rejected', async () => {
    const from = Date.now();
    const p = join(mirror, 'auths', 'atomic.json');
    await writeFile(`${p}.tmp`, '{"type":"claude","n":2}');
    await rename(`${p}.tmp`, p);
    await waitFor('atomic.json in the store', async () => (await readFile(join(store, 'auths', 'atomic.json'), 'utf8').catch(() => '')) === '{"type":"claude","n":2}', 3000);
    await writeFile(`${p}.tmp`, '{"type":');
    await rename(`${p}.tmp`, join(mirror, 'auths', 'broken.json'));
    await waitFor('broken.json rejected', () => d.messages(from).some((m) => /validate auths\/broken\.json/.test(m)), 3000);
    expect(await readFile(join(store, 'auths', 'broken.json'), 'utf8').catch(() => '<absent>')).toBe('<absent>');
  });
});
