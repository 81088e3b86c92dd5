/**
 * Encryption settings through the real CLI: every key error exits 2 naming the entry, and no key
 * material appears on stdout or stderr; `rewrap --help` documents the command.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { processGroup } from '../support/daemon.js';
import { tempDir } from '../support/tmp.js';

const g = processGroup('all');

describe('encryption settings through the CLI', () => {
  it('wrong length, duplicate id, bad base64, unreadable file: exit 2 naming the entry, never the key', async () => {
    const d = await tempDir('credsync-enc-cli-');
    try {
      const store = pathToFileURL(join(d.path, 'store')).href;
      const short = randomBytes(16).toString('base64');
      const good = randomBytes(32).toString('base64');
      const cases: Array<[Record<string, string>, RegExp, string[]]> = [
        [{ CREDSYNC_ENCRYPTION_KEYS: `k1:${good},k2:${short}` }, /CREDSYNC_ENCRYPTION_KEYS entry 2 \(key id k2\): the key is 16 bytes/, [short, good]],
        [{ CREDSYNC_ENCRYPTION_KEYS: `k1:${good},k1:${good}` }, /entry 2 \(key id k1\): key id k1 appears twice/, [good]],
        [{ CREDSYNC_ENCRYPTION_KEYS: `k1:${good.slice(0, 20)}!!${good.slice(22)}` }, /entry 1 \(key id k1\): the key is not valid base64/, [good.slice(0, 20)]],
        [{ CREDSYNC_ENCRYPTION_KEYS_FILE: join(d.path, 'nope') }, /CREDSYNC_ENCRYPTION_KEYS_FILE .*nope: cannot be read \(ENOENT\)/, []],
        [{ CREDSYNC_ENCRYPTION: 'require' }, /CREDSYNC_ENCRYPTION=require needs a key/, []],
      ];
      for (const [env, re, hidden] of cases) {
        const r = await g.cli(['pull', '--store', store, '--local-dir', join(d.path, 'mirror')], { env });
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr).toMatch(re);
        for (const h of hidden) expect(r.stdout + r.stderr).not.toContain(h);
      }
    } finally {
      await d.remove();
    }
  });

  it('rewrap --help describes the command; rewrap without a key exits 2', async () => {
    const help = await g.cli(['rewrap', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/re-encrypt every item of the store under the primary/);
    const d = await tempDir('credsync-enc-cli-');
    try {
      const r = await g.cli(['rewrap', '--store', pathToFileURL(join(d.path, 'store')).href]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/rewrap: no encryption key: set CREDSYNC_ENCRYPTION_KEYS/);
    } finally {
      await d.remove();
    }
  });
});
