/**
 * Encryption at rest through the operator commands (rewrap, doctor, backup, migrate) on every store
 * kind of STORE_KINDS (S3 and Git join by their entry there).
 */
import { describe, it, expect, afterEach } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { contentHash } from '../../src/core/canonical.js';
import type { Key } from '../../src/core/keys.js';
import { runDoctor, type Check } from '../../src/commands/doctor.js';
import { runRewrap } from '../../src/commands/rewrap.js';
import { runBackup } from '../../src/commands/backup.js';
import { runMigrate } from '../../src/commands/migrate.js';
import { openSide, readBatch, specOfUrl } from '../../src/commands/operator.js';
import { inspect, type EncryptionSettings, type SealKey } from '../../src/stores/sealed/index.js';
import { STORE_KINDS, captureIo, deps, seed, listing, type StoreFixture } from './fixtures.js';
import { tempDir } from '../support/tmp.js';

const enc = (s: string): Uint8Array => Buffer.from(s, 'utf8');
const mkKey = (kid: string): SealKey => ({ kid, key: randomBytes(32) });
const b64 = (k: SealKey): string => `${k.kid}:${Buffer.from(k.key).toString('base64')}`;

const fixtures: StoreFixture[] = [];
afterEach(async () => {
  for (const f of fixtures.splice(0)) await f.cleanup();
});

/** Writes through the encryption wrapper. */
async function sealedPut(url: string, e: EncryptionSettings, items: Record<Key, string>): Promise<void> {
  const side = await openSide(specOfUrl(url), undefined, e);
  try {
    for (const [k, v] of Object.entries(items)) await side.store.put(k, enc(v));
  } finally {
    await side.close();
  }
}

/** key → `plain` | `kid` of every stored item, read as the store holds it. */
async function census(url: string): Promise<Record<Key, string>> {
  const side = await openSide(specOfUrl(url));
  try {
    const { entries } = await side.store.list();
    const out: Record<Key, string> = {};
    for (const [k, it] of await readBatch(side.store, entries.map((e) => e.key))) {
      const i = inspect(it.data);
      out[k] = i.state === 'sealed' ? i.envelope.kid : i.state;
    }
    return out;
  } finally {
    await side.close();
  }
}

/** key → plaintext canonical hash, read through the wrapper. */
async function plainHashes(url: string, keys: readonly SealKey[]): Promise<Record<Key, string | null>> {
  const side = await openSide(specOfUrl(url), undefined, { mode: keys.length ? 'on' : 'off', keys });
  try {
    const { entries } = await side.store.list();
    const out: Record<Key, string | null> = {};
    const got = await readBatch(side.store, entries.map((e) => e.key));
    for (const k of [...got.keys()].sort()) out[k] = got.get(k)!.problem ? null : contentHash(k, got.get(k)!.data);
    return out;
  } finally {
    await side.close();
  }
}

async function doctorEnc(url: string, keys: readonly SealKey[], mode?: string): Promise<{ code: number; check: Check }> {
  const io = captureIo();
  const cwd = await tempDir('credsync-enc-doctor-');
  fixtures.push({ url: '', cleanup: () => cwd.remove() });
  await writeFile(join(cwd.path, '.env'), `${keys.length ? `CREDSYNC_ENCRYPTION_KEYS=${keys.map(b64).join(',')}\n` : ''}${mode ? `CREDSYNC_ENCRYPTION=${mode}\n` : ''}`);
  const code = await runDoctor({ json: true, flags: { store: url, localDir: join(cwd.path, 'mirror') }, cwd: cwd.path }, deps(io));
  const checks = io.json<{ checks: Check[] }>().checks;
  return { code, check: checks.find((c) => c.check === 'store encryption')! };
}

for (const kind of STORE_KINDS) {
  describe(`encryption commands on ${kind.name}`, () => {
    const make = async (ctx: { skip(why: string): void }): Promise<string> => {
      const why = kind.skip();
      if (why) ctx.skip(why);
      const f = await kind.make();
      fixtures.push(f);
      return f.url;
    };

    it('rewrap moves plaintext and old-key items under the new primary, plaintext unchanged; doctor says so before and after', async (ctx) => {
      const url = await make(ctx);
      const k1 = mkKey('k1');
      const k2 = mkKey('k2');
      await seed(url, { 'auths/plain.json': '{"type":"claude","email":"p@x"}', 'config/config.yaml': 'port: 1\n' });
      await sealedPut(url, { mode: 'on', keys: [k1] }, { 'auths/old.json': '{"type":"claude","email":"o@x"}', 'auths/team/old2.json': '{"a":2}' });
      const before = await plainHashes(url, [k1]);
      expect(await census(url)).toEqual({ 'auths/plain.json': 'plain', 'config/config.yaml': 'plain', 'auths/old.json': 'k1', 'auths/team/old2.json': 'k1' });

      const d1 = await doctorEnc(url, [k2, k1]);
      expect(d1.check.status).toBe('warn');
      expect(d1.check.detail).toMatch(/non-primary key id\(s\): k1 \(2:/);

      // Dry run: nothing written.
      const l0 = await listing(url);
      const dry = captureIo();
      expect(await runRewrap({ store: url, dryRun: true, json: true }, { ...deps(dry), encryption: () => ({ mode: 'on', keys: [k2, k1] }) })).toBe(0);
      expect(dry.json<{ counts: Record<string, number> }>().counts).toMatchObject({ encrypted: 2, rewrapped: 2, unchanged: 0 });
      expect(await listing(url)).toEqual(l0);

      const io = captureIo();
      expect(await runRewrap({ store: url, dryRun: false, json: true }, { ...deps(io), encryption: () => ({ mode: 'on', keys: [k2, k1] }) })).toBe(0);
      expect(io.json<{ after: Record<string, number> }>().after).toEqual({ 'key k2': 4 });
      expect(Object.values(await census(url))).toEqual(['k2', 'k2', 'k2', 'k2']);
      expect(await plainHashes(url, [k2])).toEqual(before);
      const d2 = await doctorEnc(url, [k2]);
      expect(d2.check).toMatchObject({ status: 'ok' });
      expect(d2.check.detail).toMatch(/every item \(4\) under primary key k2/);
      // A second rewrap changes nothing.
      const l1 = await listing(url);
      expect(await runRewrap({ store: url, dryRun: false, json: true }, { ...deps(captureIo()), encryption: () => ({ mode: 'on', keys: [k2] }) })).toBe(0);
      expect(await listing(url)).toEqual(l1);
    });

    it('rewrap with CREDSYNC_ENCRYPTION=off and the keys still set decrypts every item in place', async (ctx) => {
      const url = await make(ctx);
      const k1 = mkKey('k1');
      await sealedPut(url, { mode: 'on', keys: [k1] }, { 'auths/a.json': '{"v":1}', 'config/config.yaml': 'port: 2\n' });
      await seed(url, { 'auths/p.json': '{"p":1}' });
      const before = await plainHashes(url, [k1]);
      const io = captureIo();
      expect(await runRewrap({ store: url, dryRun: false, json: true }, { ...deps(io), encryption: () => ({ mode: 'off', keys: [k1] }) })).toBe(0);
      expect(io.json<{ counts: Record<string, number> }>().counts).toMatchObject({ decrypted: 2, unchanged: 1 });
      expect(await census(url)).toEqual({ 'auths/a.json': 'plain', 'auths/p.json': 'plain', 'config/config.yaml': 'plain' });
      expect(await plainHashes(url, [])).toEqual(before);
    });

    it('rewrap while another writer changes an item: the newer content survives, under the new key', async (ctx) => {
      const url = await make(ctx);
      const k1 = mkKey('k1');
      const k2 = mkKey('k2');
      await sealedPut(url, { mode: 'on', keys: [k1] }, { 'auths/a.json': '{"v":1}', 'auths/b.json': '{"v":1}' });
      const io = captureIo();
      const code = await runRewrap(
        {
          store: url,
          dryRun: false,
          json: true,
          // A daemon still on the old key set refreshes a token between rewrap's read and its write.
          afterRead: () => sealedPut(url, { mode: 'on', keys: [k1] }, { 'auths/a.json': '{"v":2}' }),
        },
        { ...deps(io), encryption: () => ({ mode: 'on', keys: [k2, k1] }) },
      );
      expect(code).toBe(0);
      expect(await census(url)).toEqual({ 'auths/a.json': 'k2', 'auths/b.json': 'k2' });
      expect((await plainHashes(url, [k2]))['auths/a.json']).toBe(contentHash('auths/a.json', enc('{"v":2}')));
    });

    it('an item under a key id nobody configured: rewrap fails on it (exit 1) and doctor names the key id', async (ctx) => {
      const url = await make(ctx);
      const k1 = mkKey('k1');
      const lost = mkKey('lost');
      await sealedPut(url, { mode: 'on', keys: [lost] }, { 'auths/x.json': '{"x":1}' });
      await sealedPut(url, { mode: 'on', keys: [k1] }, { 'auths/y.json': '{"y":1}' });
      const io = captureIo();
      expect(await runRewrap({ store: url, dryRun: false, json: true }, { ...deps(io), encryption: () => ({ mode: 'on', keys: [k1] }) })).toBe(1);
      expect(io.json<{ items: { failed: Array<{ key: string; reason: string }> } }>().items.failed).toEqual([
        { key: 'auths/x.json', reason: 'encrypted with key id lost, which is not configured: add it to CREDSYNC_ENCRYPTION_KEYS' },
      ]);
      const d = await doctorEnc(url, [k1]);
      expect(d.code).toBe(1);
      expect(d.check).toMatchObject({ status: 'fail', fix: 'add key id(s) lost to CREDSYNC_ENCRYPTION_KEYS' });
      const none = await doctorEnc(url, []);
      expect(none.check.fix).toMatch(/this process has no encryption key: set CREDSYNC_ENCRYPTION_KEYS with key id\(s\) (lost, k1|k1, lost)/);
    });

    it('backup archives ciphertext as it is (no token in the archive); --decrypt archives plaintext', async (ctx) => {
      const url = await make(ctx);
      const k1 = mkKey('k1');
      const canary = `rt-${randomBytes(10).toString('hex')}`;
      await sealedPut(url, { mode: 'on', keys: [k1] }, { 'auths/a.json': `{"refresh_token":"${canary}"}` });
      const d = await tempDir('credsync-enc-backup-');
      fixtures.push({ url: '', cleanup: () => d.remove() });
      const io = captureIo();
      expect(await runBackup({ from: url, out: join(d.path, 'b.tar.gz'), json: true }, { ...deps(io), encryption: () => ({ mode: 'on', keys: [k1] }) })).toBe(0);
      const tar = gunzipSync(await readFile(join(d.path, 'b.tar.gz'))).toString('utf8');
      expect(tar).toContain('"$credsync"');
      expect(tar).not.toContain(canary);
      const io2 = captureIo();
      expect(await runBackup({ from: url, out: join(d.path, 'p.tar.gz'), json: true, decrypt: true }, { ...deps(io2), encryption: () => ({ mode: 'on', keys: [k1] }) })).toBe(0);
      expect(io2.stderr.join('\n')).toMatch(/plaintext/);
      expect(gunzipSync(await readFile(join(d.path, 'p.tar.gz'))).toString('utf8')).toContain(canary);
    });

    it('migrate --encrypt moves a plaintext store into encryption, --decrypt out of it, content identical', async (ctx) => {
      const url = await make(ctx);
      const k1 = mkKey('k1');
      const d = await tempDir('credsync-enc-migrate-');
      fixtures.push({ url: '', cleanup: () => d.remove() });
      const plainUrl = pathToFileURL(join(d.path, 'plain')).href;
      const backUrl = pathToFileURL(join(d.path, 'back')).href;
      const items = { 'auths/a.json': '{"type":"claude","email":"a@x","refresh_token":"t1"}', 'config/config.yaml': 'port: 1\n' };
      await seed(plainUrl, items);
      const e = { ...deps(captureIo()), encryption: (): EncryptionSettings => ({ mode: 'on', keys: [k1] }) };
      expect(await runMigrate({ from: plainUrl, to: url, mode: 'fill-missing', dryRun: false, json: true, encryption: 'encrypt' }, e)).toBe(0);
      expect(await census(url)).toEqual({ 'auths/a.json': 'k1', 'config/config.yaml': 'k1' });
      expect(await runMigrate({ from: url, to: backUrl, mode: 'fill-missing', dryRun: false, json: true, encryption: 'decrypt' }, e)).toBe(0);
      expect(await census(backUrl)).toEqual({ 'auths/a.json': 'plain', 'config/config.yaml': 'plain' });
      expect(await plainHashes(backUrl, [k1])).toEqual(await plainHashes(plainUrl, [k1]));
    });
  });
}
