/**
 * Store fixtures for the operator-command tests: each kind gives a fresh, empty store (its own
 * namespace) as a URL, and removes it afterwards. Adding a store kind to every command test is one
 * entry in STORE_KINDS (S3: an `s3://bucket/<fresh prefix>?endpoint=…` from `inject('s3Url')` with
 * OBJECTSTORE_ACCESS_KEY/SECRET_KEY in process.env; Git: `git+file://<fresh bare repo>`).
 */
import { afterEach, inject } from 'vitest';
import { pino } from 'pino';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { contentHash } from '../../src/core/canonical.js';
import type { Key } from '../../src/core/keys.js';
import { openSide, readBatch, specOfUrl } from '../../src/commands/operator.js';
import type { Io } from '../../src/commands/output.js';
import type { OperatorDeps } from '../../src/commands/migrate.js';
import { freshSchema, isCi } from '../support/pg-server.js';
import { tempDir } from '../support/tmp.js';

export interface StoreFixture {
  readonly url: string;
  cleanup(): Promise<void>;
}

export interface StoreKind {
  readonly name: string;
  /** Why this kind cannot run here, or null. In CI a missing server fails instead. */
  skip(): string | null;
  make(): Promise<StoreFixture>;
}

const pgUrl = (): string => inject('pgUrl');

export const STORE_KINDS: StoreKind[] = [
  {
    name: 'dir',
    skip: () => null,
    async make() {
      const d = await tempDir('credsync-cmd-');
      return { url: pathToFileURL(join(d.path, 'store')).href, cleanup: () => d.remove() };
    },
  },
  {
    name: 'postgres',
    skip: () => {
      if (pgUrl()) return null;
      if (isCi()) throw new Error(`no PostgreSQL in CI: ${inject('pgSkipReason')}`);
      return inject('pgSkipReason') || 'no PostgreSQL';
    },
    async make() {
      const ns = freshSchema(pgUrl());
      const u = new URL(pgUrl());
      u.searchParams.set('schema', ns.schema);
      return { url: u.toString(), cleanup: () => ns.drop() };
    },
  },
  {
    // The first S3 server of the run (s3rver in `npm test`, or CREDSYNC_TEST_S3_URL), a fresh bucket per
    // fixture. The store URL names bucket and endpoint; the keys come from OBJECTSTORE_*, as for an operator.
    name: 's3',
    skip: () => {
      if (s3Server()) return null;
      // A run that leaves S3 out on purpose (CREDSYNC_TEST_S3_URL=skip: the Debian PostgreSQL re-runs) skips;
      // in CI any other reason is a failure.
      const explicit = inject('s3Missing').some((m) => m.includes('CREDSYNC_TEST_S3_URL=skip'));
      if (isCi() && !explicit) throw new Error(`no S3 server in CI: ${inject('s3Missing').join('; ')}`);
      return `no S3 server (${inject('s3Missing').join('; ')})`;
    },
    async make() {
      const srv = s3Server()!;
      process.env.OBJECTSTORE_ACCESS_KEY = srv.accessKey;
      process.env.OBJECTSTORE_SECRET_KEY = srv.secretKey;
      const bucket = `cmd-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
      return { url: `s3://${bucket}/ops?endpoint=${encodeURIComponent(srv.endpoint)}`, cleanup: async () => {} };
    },
  },
  {
    // A bare repository made by the test, over file:// (the smart-HTTP transport has its own tests).
    name: 'git',
    skip: () => null,
    async make() {
      const d = await tempDir('credsync-cmd-git-');
      const repo = join(d.path, 'remote.git');
      execFileSync('git', ['init', '--bare', '--quiet', '--initial-branch=main', repo]);
      return { url: `git+${pathToFileURL(repo).href}`, cleanup: () => d.remove() };
    },
  },
];

/** The S3 server the command tests use: the first one the global setup provides (s3rver by default). */
function s3Server(): { endpoint: string; accessKey: string; secretKey: string } | undefined {
  return inject('s3Servers')[0];
}

/** Output captured instead of printed. */
export interface CapturedIo extends Io {
  readonly stdout: string[];
  readonly stderr: string[];
  json<T = Record<string, unknown>>(): T;
}

export function captureIo(): CapturedIo {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    tty: false,
    out: (s) => void stdout.push(s),
    err: (s) => void stderr.push(s),
    json<T>() {
      if (stdout.length !== 1) throw new Error(`expected one JSON object on stdout, got ${stdout.length} writes: ${stdout.join('\n').slice(0, 500)}`);
      return JSON.parse(stdout[0]!) as T;
    },
  };
}

export function deps(io: CapturedIo, envUrl?: string): OperatorDeps {
  return {
    io,
    log: pino({ level: 'silent' }),
    envStore: () => {
      if (!envUrl) throw new Error('test: no environment store');
      return specOfUrl(envUrl);
    },
  };
}

const enc = (s: string): Uint8Array => Buffer.from(s, 'utf8');

/** Writes items (key → text) into the store at `url`, unconditionally. */
export async function seed(url: string, items: Record<Key, string>): Promise<void> {
  const side = await openSide(specOfUrl(url));
  try {
    for (const [k, v] of Object.entries(items)) await side.store.put(k, enc(v));
  } finally {
    await side.close();
  }
}

/** key → canonical hash of every item (null for invalid content). */
export async function snapshot(url: string): Promise<Record<Key, string | null>> {
  const side = await openSide(specOfUrl(url));
  try {
    const { entries } = await side.store.list();
    const got = await readBatch(side.store, entries.map((e) => e.key));
    const out: Record<Key, string | null> = {};
    for (const k of [...got.keys()].sort()) out[k] = contentHash(k, got.get(k)!.data);
    return out;
  } finally {
    await side.close();
  }
}

/** `key@version` of every item: equal before and after means nothing was written. */
export async function listing(url: string): Promise<string[]> {
  const side = await openSide(specOfUrl(url));
  try {
    const { entries } = await side.store.list();
    return entries.map((e) => `${e.key}@${e.version}`).sort();
  } finally {
    await side.close();
  }
}

export async function readItem(url: string, key: Key): Promise<string | null> {
  const side = await openSide(specOfUrl(url));
  try {
    const it = await side.store.get(key);
    return it ? Buffer.from(it.data).toString('utf8') : null;
  } finally {
    await side.close();
  }
}

/** A varied set of items: config with CRLF, nested ids, unicode, key order that JSONB rewrites. */
export function sampleItems(n: number): Record<Key, string> {
  const items: Record<Key, string> = { 'config/config.yaml': 'port: 8317\r\napi-keys:\r\n  - k1\r\n' };
  for (let i = 0; i < n; i++) {
    const id = i % 5 === 0 ? `team-${i % 3}/user${i}@example.com.json` : `claude-user${i}@example.com.json`;
    items[`auths/${id}`] = JSON.stringify({ z: i, type: 'claude', email: `user${i}@example.com`, refresh_token: `rt-${i}`, note: 'ü✓', a: { y: 1, b: [3, 2, 1] } }, null, i % 2 ? 2 : 0);
  }
  return items;
}

/**
 * Fresh stores and work directories for one test file, cleaned up after each test: `fresh(kind)` gives
 * a new store of that kind and returns its URL, `work()` a temp directory.
 */
export function fixtureScope(prefix = 'credsync-ops-'): { fresh(kind: StoreKind): Promise<string>; work(): Promise<string> } {
  const made: StoreFixture[] = [];
  afterEach(async () => {
    for (const f of made.splice(0)) await f.cleanup();
  });
  return {
    async fresh(kind) {
      const f = await kind.make();
      made.push(f);
      return f.url;
    },
    async work() {
      const d = await tempDir(prefix);
      made.push({ url: '', cleanup: () => d.remove() });
      return d.path;
    },
  };
}
