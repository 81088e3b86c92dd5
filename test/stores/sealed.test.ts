/**
 * Encryption at rest (issue 14): the store wrapper on every store kind of STORE_KINDS (test/commands/
 * fixtures.ts: dir and PostgreSQL today; S3 and Git become one entry there). Real stores only: the
 * stored bytes are read back through the inner store (and, for PostgreSQL, straight from the tables).
 */
import { describe, it, expect, inject } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { contentHash } from '../../src/core/canonical.js';
import { ItemRejectedError } from '../../src/core/errors.js';
import type { Store } from '../../src/core/store.js';
import { openSide, specOfUrl, type OpenedStore } from '../../src/commands/operator.js';
import { createSealedStore, inspect, type EncryptionSettings, type SealKey } from '../../src/stores/sealed/index.js';
import { createDirStore } from '../../src/stores/dir.js';
import { createPostgresStore } from '../../src/stores/postgres/index.js';
import { STORE_KINDS, type StoreKind } from '../commands/fixtures.js';
import { storeConformance } from './conformance.js';
import { freshSchema, withAdmin, quoteIdent } from '../support/pg-server.js';
import { tempDir } from '../support/tmp.js';

const enc = (s: string): Uint8Array => Buffer.from(s, 'utf8');
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
const key = (kid: string): SealKey => ({ kid, key: randomBytes(32) });
const on = (...keys: SealKey[]): EncryptionSettings => ({ mode: 'on', keys });

const K1 = key('k1');
const K2 = key('k2');

// The wrapper passes the shared contract on each real store (plaintext in, plaintext out).
storeConformance(
  'sealed(dir)',
  async () => {
    const dir = await tempDir('credsync-sealed-');
    const mk = async (): Promise<Store> => {
      const s = createSealedStore(createDirStore({ path: dir.path, debounceMs: 10 }), on(K1, K2));
      await s.init();
      return s;
    };
    const store = await mk();
    return {
      store,
      second: mk,
      cleanup: async () => {
        await store.close();
        await dir.remove();
      },
    };
  },
  { exactAuthBytes: true },
);

const pgUrl = inject('pgUrl');
describe.skipIf(!pgUrl)(`sealed postgres${pgUrl ? '' : ` (skipped: ${inject('pgSkipReason')})`}`, () => {
  storeConformance(
    'sealed(postgres)',
    async () => {
      const ns = freshSchema(pgUrl);
      const mk = async (): Promise<Store> => {
        const s = createSealedStore(createPostgresStore({ dsn: pgUrl, schema: ns.schema }), on(K1));
        await s.init();
        return s;
      };
      const store = await mk();
      return {
        store,
        second: mk,
        cleanup: async () => {
          await store.close();
          await ns.drop();
        },
      };
    },
    { exactAuthBytes: false },
  );
});

/** Every byte a store kind holds, as text, read from outside credsync (files, table rows). */
async function rawDump(kind: string, url: string): Promise<string> {
  if (kind === 'dir') {
    const root = fileURLToPath(url);
    const files = (await readdir(root, { recursive: true, withFileTypes: true })).filter((d) => d.isFile());
    return (await Promise.all(files.map((f) => readFile(join(f.parentPath, f.name), 'utf8')))).join('\n');
  }
  if (kind === 'postgres') {
    const schema = new URL(url).searchParams.get('schema')!;
    return withAdmin(pgUrl, async (sql) => {
      const rows = await sql.unsafe(
        `SELECT content::text AS c FROM ${quoteIdent(schema)}.auth_store UNION ALL SELECT content AS c FROM ${quoteIdent(schema)}.config_store`,
      );
      return rows.map((r) => String(r.c)).join('\n');
    });
  }
  // Other kinds (S3, Git): the bytes as the store itself returns them, without the wrapper. A reader of
  // their own (every object version of the bucket, every blob of the Git history) belongs here.
  const side = await openSide(specOfUrl(url));
  try {
    const { entries } = await side.store.list();
    const got = await Promise.all(entries.map((e) => side.store.get(e.key)));
    return got.map((it) => (it ? text(it.data) : '')).join('\n');
  } finally {
    await side.close();
  }
}

for (const kind of STORE_KINDS) {
  describe(`encryption at rest on ${kind.name}`, () => {
    const withStores = async (
      ctx: { skip(why: string): void },
      fn: (s: { url: string; raw: Store; sealed: (e: EncryptionSettings) => Promise<Store> }) => Promise<void>,
    ): Promise<void> => {
      const why = (kind as StoreKind).skip();
      if (why) ctx.skip(why);
      const fx = await kind.make();
      const opened: OpenedStore[] = [];
      try {
        const spec = specOfUrl(fx.url);
        const raw = await openSide(spec);
        opened.push(raw);
        await fn({
          url: fx.url,
          raw: raw.store,
          sealed: async (e) => {
            const s = await openSide(spec, undefined, e);
            opened.push(s);
            return s.store;
          },
        });
      } finally {
        for (const o of opened) await o.close().catch(() => {});
        await fx.cleanup();
      }
    };

    it('round-trips config and auths; the store holds only envelopes, never a planted token', async (ctx) => {
      await withStores(ctx, async ({ url, raw, sealed }) => {
        const canary = `rt-canary-${randomBytes(12).toString('hex')}`;
        const s = await sealed(on(K1));
        const auth = `{"type":"claude","email":"a@b.com","refresh_token":"${canary}"}`;
        const cfg = `port: 8317\napi-keys:\n  - ${canary}\n`;
        await s.put('auths/a.json', enc(auth));
        await s.put('auths/team/b.json', enc(auth.replace('a@b', 'b@b')));
        await s.put('config/config.yaml', enc(cfg));
        const a = await s.get('auths/a.json');
        expect(a!.hash).toBe(contentHash('auths/a.json', enc(auth)));
        expect(contentHash('auths/a.json', a!.data)).toBe(contentHash('auths/a.json', enc(auth)));
        expect(text((await s.get('config/config.yaml'))!.data)).toBe(cfg);
        const many = s.getMany ? await s.getMany(['auths/a.json', 'auths/team/b.json']) : [];
        if (s.getMany) expect(many.map((i) => i.hash)).toEqual([contentHash('auths/a.json', enc(auth)), contentHash('auths/a.json', enc(auth.replace('a@b', 'b@b')))]);
        // What the store itself holds: envelopes under k1, no token anywhere.
        for (const k of ['auths/a.json', 'auths/team/b.json', 'config/config.yaml'] as const) {
          const r = await raw.get(k);
          const ins = inspect(r!.data);
          expect(ins.state, k).toBe('sealed');
          if (ins.state === 'sealed') expect(ins.envelope.kid).toBe('k1');
        }
        const dump = await rawDump(kind.name, url);
        expect(dump).toContain('"$credsync"');
        expect(dump).not.toContain(canary);
        // Listings carry no ciphertext hash.
        for (const e of (await s.list()).entries) expect(e.hash).toBeUndefined();
      });
    });

    it('re-encrypting unchanged plaintext changes the version, not the hash', async (ctx) => {
      await withStores(ctx, async ({ sealed }) => {
        const s = await sealed(on(K1));
        const e1 = await s.put('auths/a.json', enc('{"a":1}'));
        const e2 = await s.put('auths/a.json', enc('{"a":1}'), { ifVersion: e1.version });
        expect(e2.version).not.toBe(e1.version);
        expect((await s.get('auths/a.json'))!.hash).toBe(contentHash('auths/a.json', enc('{"a":1}')));
      });
    });

    it('rejects an envelope moved to another item, and one with a tampered byte; never returns their content', async (ctx) => {
      await withStores(ctx, async ({ raw, sealed }) => {
        const s = await sealed(on(K1));
        await s.put('auths/a.json', enc('{"secret":"A"}'));
        await s.put('auths/b.json', enc('{"secret":"B"}'));
        // Move a's envelope onto b.
        const envA = (await raw.get('auths/a.json'))!;
        await raw.put('auths/b.json', envA.data);
        const moved = (await s.get('auths/b.json'))!;
        expect(moved.problem).toMatch(/does not decrypt for auths\/b\.json/);
        expect(contentHash('auths/b.json', moved.data)).toBeNull();
        // Flip one byte of the ciphertext.
        const ins = inspect(envA.data);
        if (ins.state !== 'sealed') throw new Error('not sealed');
        const ct = Buffer.from(ins.envelope.ct, 'base64url');
        ct[3] = ct[3]! ^ 1;
        await raw.put('auths/a.json', enc(JSON.stringify({ ...(JSON.parse(text(envA.data)) as object), ct: ct.toString('base64url') })));
        const tampered = (await s.get('auths/a.json'))!;
        expect(tampered.problem).toMatch(/key id k1 but does not decrypt/);
        expect(contentHash('auths/a.json', tampered.data)).toBeNull();
        // Relabelled with another configured key id: does not authenticate either.
        const s2 = await sealed(on(K1, { kid: 'k2', key: K1.key }));
        await raw.put('auths/b.json', enc(JSON.stringify({ ...(JSON.parse(text(envA.data)) as object), kid: 'k2' })));
        expect((await s2.get('auths/b.json'))!.problem).toMatch(/key id k2 but does not decrypt/);
      });
    });

    it('an item under a key id that is not configured is rejected naming it, and never overwritten by that process', async (ctx) => {
      await withStores(ctx, async ({ raw, sealed }) => {
        const newKeys = await sealed(on(K2));
        const e = await newKeys.put('auths/a.json', enc('{"a":"new"}'));
        const oldKeys = await sealed(on(K1));
        const got = (await oldKeys.get('auths/a.json'))!;
        expect(got.problem).toBe('encrypted with key id k2, which is not configured: add it to CREDSYNC_ENCRYPTION_KEYS');
        expect(got.version).toBe(e.version);
        await expect(oldKeys.put('auths/a.json', enc('{"a":"stale"}'), { ifVersion: got.version })).rejects.toBeInstanceOf(ItemRejectedError);
        // No key at all: says so, naming the variable.
        const keyless = await sealed({ mode: 'off', keys: [] });
        const g2 = (await keyless.get('auths/a.json'))!;
        expect(g2.problem).toMatch(/key id k2, and this process has no encryption key: set CREDSYNC_ENCRYPTION_KEYS/);
        await expect(keyless.put('auths/a.json', enc('{"a":"plain"}'), { ifVersion: g2.version })).rejects.toBeInstanceOf(ItemRejectedError);
        // The stored item is untouched.
        expect((await raw.get('auths/a.json'))!.version).toBe(e.version);
        expect(text((await newKeys.get('auths/a.json'))!.data)).toBe('{"a":"new"}');
      });
    });

    it('mixed states: plaintext reads with encryption on, is rejected under require; off writes plaintext and still decrypts', async (ctx) => {
      await withStores(ctx, async ({ raw, sealed }) => {
        await raw.put('auths/plain.json', enc('{"p":1}'));
        const s = await sealed(on(K1));
        const p = (await s.get('auths/plain.json'))!;
        expect(p.problem).toBeUndefined();
        expect(p.hash).toBe(contentHash('auths/plain.json', enc('{"p":1}')));
        const req = await sealed({ mode: 'require', keys: [K1] });
        expect((await req.get('auths/plain.json'))!.problem).toMatch(/CREDSYNC_ENCRYPTION=require refuses plaintext/);
        await req.put('auths/r.json', enc('{"r":1}'));
        expect(inspect((await raw.get('auths/r.json'))!.data).state).toBe('sealed');
        const off = await sealed({ mode: 'off', keys: [K1] });
        expect((await off.get('auths/r.json'))!.hash).toBe(contentHash('auths/r.json', enc('{"r":1}')));
        await off.put('auths/o.json', enc('{"o":1}'));
        expect(inspect((await raw.get('auths/o.json'))!.data).state).toBe('plain');
      });
    });
  });
}

describe('envelope', () => {
  it('authenticates exactly: a truncated tag, another IV, another item key or another key id never open', async () => {
    const { seal, unseal } = await import('../../src/stores/sealed/index.js');
    const k = key('k1');
    const data = enc('{"refresh_token":"x"}');
    const env = inspect(seal(k, 'auths/a.json', data));
    if (env.state !== 'sealed') throw new Error('not sealed');
    expect(text(unseal(k, 'auths/a.json', env.envelope)!)).toBe('{"refresh_token":"x"}');
    const ct = Buffer.from(env.envelope.ct, 'base64url');
    expect(unseal(k, 'auths/a.json', { ...env.envelope, ct: ct.subarray(0, ct.length - 4).toString('base64url') })).toBeNull();
    expect(unseal(k, 'auths/a.json', { ...env.envelope, iv: randomBytes(12).toString('base64url') })).toBeNull();
    expect(unseal(k, 'auths/b.json', env.envelope)).toBeNull();
    expect(unseal({ kid: 'k2', key: k.key }, 'auths/a.json', { ...env.envelope, kid: 'k2' })).toBeNull();
    // Two seals of the same plaintext differ (fresh IV), both open.
    const again = inspect(seal(k, 'auths/a.json', data));
    if (again.state !== 'sealed') throw new Error('not sealed');
    expect(again.envelope.iv).not.toBe(env.envelope.iv);
    expect(Buffer.from(env.envelope.iv, 'base64url').length).toBe(12);
    expect(ct.length).toBe(data.length + 16);
  });

  it('an unknown format or algorithm is not read as plaintext', () => {
    expect(inspect(enc('{"$credsync":"enc.v9","kid":"k"}')).state).toBe('malformed');
    expect(inspect(enc('{"$credsync":"enc.v1","alg":"A128GCM","kid":"k","iv":"","ct":""}')).state).toBe('malformed');
    expect(inspect(enc('{"a":"$credsync"}')).state).toBe('plain');
    expect(inspect(enc('port: 1\n# "$credsync"\n')).state).toBe('plain');
  });
});
