import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, lstat, readdir, readFile, statfs, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveConfig, type Config, type Flags } from '../config/config.js';
import { redactUrl } from '../core/redact.js';
import { parseAuth, validateContent } from '../core/canonical.js';
import { StoreConfigError, errorMessage } from '../core/errors.js';
import { CONFIG_KEY, type Key } from '../core/keys.js';
import type { StoreSpec } from '../config/store-spec.js';
import { isTempName, TEMP_PREFIX, TEMP_SUFFIX } from '../fs/atomic.js';
import { Mirror } from '../mirror/mirror.js';
import type { OperatorDeps } from './migrate.js';
import { chunks, openSide, readBatch, since, type OpenedStore } from './operator.js';
import { openItem, rejectionReason, type EncryptionSettings } from '../stores/registry.js';
import { StateFile } from '../engine/state.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** One line of the report: `ok|warn|fail  <check>: <detail>` and, when not ok, `  fix: …`. */
export interface Check {
  readonly status: CheckStatus;
  readonly check: string;
  readonly detail: string;
  readonly fix?: string;
}

export interface KindCheckContext {
  readonly spec: StoreSpec;
  readonly config: Config;
  /** Removes secrets of the spec from a message. */
  sanitize(message: string): string;
}

/**
 * Store-kind-specific checks, run before the store is opened. The extension point for S3 (list/get/
 * put/delete on the prefix, conditional-write capability, clock skew from the Date header) and Git
 * (fetch and push rights on the branch): add a function here.
 */
export const KIND_CHECKS: Partial<Record<StoreSpec['kind'], (ctx: KindCheckContext) => Promise<Check[]>>> = {
  postgres: async (ctx) => (await import('./doctor-postgres.js')).postgresChecks(ctx),
  s3: async (ctx) => (await import('../stores/registry.js')).diagnose(ctx.spec),
  git: async (ctx) => (await import('../stores/registry.js')).diagnose(ctx.spec),
};

export interface DoctorOptions {
  readonly json: boolean;
  /** Fail unless the selected store is of this kind. */
  readonly expect?: string;
  readonly flags: Flags;
  readonly cwd?: string;
}

/**
 * What the store holds from the point of view of the configured keys: plaintext items, items per key
 * id, items under a key id that is not configured, items that do not decrypt.
 */
class EncryptionCensus {
  private plain: Key[] = [];
  private readonly byKid = new Map<string, Key[]>();
  private readonly missing = new Map<string, Key[]>();
  private readonly broken: string[] = [];

  constructor(private readonly s: EncryptionSettings) {}

  /** The plaintext of the item when it can be read here, else null (and it is counted). */
  add(key: Key, stored: Uint8Array): Uint8Array | null {
    const o = openItem(this.s.keys, key, stored);
    const c = o.classification;
    const push = (m: Map<string, Key[]>, kid: string): void => void m.set(kid, [...(m.get(kid) ?? []), key]);
    if (c.state === 'plain') this.plain.push(key);
    else if (c.state === 'primary' || c.state === 'secondary') push(this.byKid, c.kid);
    else if (c.state === 'missing-key') push(this.missing, c.kid);
    else this.broken.push(`${key} (${rejectionReason(key, c, 'on', true)})`);
    return o.data ?? null;
  }

  check(): Check {
    const { mode, keys } = this.s;
    const primary = keys[0]?.kid;
    const list = (m: Map<string, Key[]>): string => [...m].map(([kid, ks]) => `${kid} (${ks.length}: ${sample(ks)})`).join('; ');
    const sealed = [...this.byKid.values(), ...this.missing.values()].reduce((n, ks) => n + ks.length, 0) + this.broken.length;
    if (this.missing.size) {
      const kids = [...this.missing.keys()];
      return {
        status: 'fail',
        check: 'store encryption',
        detail: `items encrypted with key id(s) not configured here, never written to mirrors: ${list(this.missing)}`,
        fix: keys.length ? `add key id(s) ${kids.join(', ')} to CREDSYNC_ENCRYPTION_KEYS` : `this process has no encryption key: set CREDSYNC_ENCRYPTION_KEYS with key id(s) ${kids.join(', ')}`,
      };
    }
    if (this.broken.length) {
      return { status: 'fail', check: 'store encryption', detail: `${this.broken.length} item(s) do not decrypt: ${sample(this.broken)}`, fix: 'restore them from a backup or rewrite them from a mirror that holds them (tampered, or copied from another item)' };
    }
    const others = new Map([...this.byKid].filter(([kid]) => kid !== primary));
    if (mode === 'off') {
      return sealed
        ? { status: 'warn', check: 'store encryption', detail: `off, but ${sealed} item(s) are encrypted (${list(this.byKid)})`, fix: 'set CREDSYNC_ENCRYPTION=on, or run `CREDSYNC_ENCRYPTION=off credsync rewrap` to decrypt them' }
        : { status: 'ok', check: 'store encryption', detail: `off: ${this.plain.length} item(s) in plaintext` };
    }
    if (others.size) {
      return { status: 'warn', check: 'store encryption', detail: `items under non-primary key id(s): ${list(others)}`, fix: `run \`credsync rewrap\` (primary key ${primary}); then the old key can be removed` };
    }
    if (this.plain.length) {
      return { status: mode === 'require' ? 'fail' : 'warn', check: 'store encryption', detail: `${this.plain.length} item(s) in plaintext: ${sample(this.plain)}`, fix: 'run `credsync rewrap` to encrypt them' };
    }
    return { status: 'ok', check: 'store encryption', detail: `${mode}: every item (${sealed}) under primary key ${primary}` };
  }
}

/** Latency of the first listing above which the store check warns. */
const SLOW_MS = 1000;
const LOW_SPACE = 100 * 1024 * 1024;
const NO_SPACE = 10 * 1024 * 1024;

function secretsOf(spec: StoreSpec): string[] {
  const out: string[] = [];
  if (spec.kind === 'postgres') {
    try {
      const u = new URL(spec.dsn);
      if (u.password) out.push(decodeURIComponent(u.password), u.password);
    } catch {
      /* not a URL DSN */
    }
  }
  if (spec.kind === 's3' && spec.secretKey) out.push(spec.secretKey, spec.accessKey ?? '');
  if (spec.kind === 'git' && spec.token) out.push(spec.token);
  return out.filter((s) => s.length >= 3);
}

function sanitizer(spec: StoreSpec): (m: string) => string {
  const secrets = secretsOf(spec);
  return (m) => secrets.reduce((acc, s) => acc.split(s).join('***'), redactUrl(m));
}

/** `type` + `email` seen in more than one credential: the proxy would load the same account twice. */
function duplicates(seen: Map<string, Key[]>): string[] {
  return [...seen.entries()].filter(([, keys]) => keys.length > 1).map(([id, keys]) => `${id.replace('\u0000', ' ')} in ${keys.join(', ')}`);
}

function identityOf(data: Uint8Array): string | null {
  const p = parseAuth(data);
  if (!p.ok) return null;
  const { type, email } = p.value;
  return typeof type === 'string' && typeof email === 'string' && email ? `${type}\u0000${email}` : null;
}

const addIdentity = (seen: Map<string, Key[]>, key: Key, data: Uint8Array): void => {
  if (key === CONFIG_KEY) return;
  const id = identityOf(data);
  if (id) seen.set(id, [...(seen.get(id) ?? []), key]);
};

const sample = (items: string[], n = 5): string => items.slice(0, n).join(', ') + (items.length > n ? `, … (${items.length} in all)` : '');

async function storeChecks(config: Config, checks: Check[]): Promise<string | null> {
  const sanitize = sanitizer(config.store);
  const kind = KIND_CHECKS[config.store.kind];
  if (kind) checks.push(...(await kind({ spec: config.store, config, sanitize })));
  let side: OpenedStore | undefined;
  try {
    const t0 = Date.now();
    side = await openSide(config.store);
    const t1 = Date.now();
    const { entries, skipped } = await side.store.list();
    const t2 = Date.now();
    const listMs = t2 - t1;
    checks.push({
      status: listMs > SLOW_MS ? 'warn' : 'ok',
      check: 'store reachable',
      detail: `${side.label}: opened in ${t1 - t0} ms, listed ${entries.length} item(s) in ${listMs} ms`,
      ...(listMs > SLOW_MS ? { fix: 'the store is slow from here: check network latency and server load' } : {}),
    });
    const cap = side.store.capabilities;
    checks.push(
      cap.cas === 'enforced'
        ? { status: 'ok', check: 'store capabilities', detail: `compare-and-swap enforced by the server, watch ${cap.watch}${cap.pollIntervalMs ? ` every ${cap.pollIntervalMs} ms` : ''}` }
        : { status: 'warn', check: 'store capabilities', detail: `compare-and-swap only checked (read, then write): two writers at the same instant can overwrite each other; watch ${cap.watch}`, fix: 'use a store that enforces conditional writes (PostgreSQL, an S3 server honouring If-Match)' },
    );
    // Items: invalid content, invalid ids, the same credential twice.
    const invalid: string[] = [];
    const seen = new Map<string, Key[]>();
    // The store is read as it is (no wrapper); encrypted items are opened with the configured keys.
    const census = new EncryptionCensus(config.encryption);
    for (const group of chunks(entries.map((e) => e.key))) {
      for (const [key, raw] of await readBatch(side.store, group)) {
        const data = census.add(key, raw.data);
        if (!data) continue; // not readable here: reported by the encryption check
        const v = validateContent(key, data);
        if (!v.ok) invalid.push(`${key} (${v.reason})`);
        else addIdentity(seen, key, data);
      }
    }
    checks.push(census.check());
    const bad = [...invalid, ...skipped.map((s) => `${JSON.stringify(s.id).slice(0, 80)} (${s.reason})`)];
    checks.push(
      bad.length
        ? { status: 'warn', check: 'store items', detail: `${bad.length} item(s) not mirrored: ${sample(bad)}`, fix: 'fix or delete them in the store (they are never written to mirrors)' }
        : { status: 'ok', check: 'store items', detail: `${entries.length} item(s), all valid` },
    );
    const dup = duplicates(seen);
    checks.push(
      dup.length
        ? { status: 'warn', check: 'store duplicates', detail: `the same credential twice: ${sample(dup)}`, fix: 'delete the stale copy (the proxy would rotate between both)' }
        : { status: 'ok', check: 'store duplicates', detail: 'no credential (type + email) appears twice' },
    );
    return side.store.id;
  } catch (err) {
    checks.push({
      status: 'fail',
      check: 'store reachable',
      detail: sanitize(errorMessage(err)),
      fix: err instanceof StoreConfigError ? err.fix : 'check the store address and credentials, and that the server is up and reachable from here',
    });
    return null;
  } finally {
    await side?.close().catch(() => {});
  }
}

async function mirrorChecks(config: Config, storeId: string | null, checks: Check[]): Promise<void> {
  const root = config.localDir;
  const st = await lstat(root).catch(() => null);
  if (!st) {
    checks.push({ status: 'warn', check: 'mirror', detail: `${root} does not exist yet`, fix: 'run `credsync pull` (init container) or `credsync run`: it is created 0700' });
    return;
  }
  if (!st.isDirectory()) {
    checks.push({ status: 'fail', check: 'mirror', detail: `${root} is not a directory`, fix: `remove it or point CREDSYNC_LOCAL_DIR elsewhere` });
    return;
  }
  const uid = process.getuid?.();
  const mode = st.mode & 0o777;
  checks.push(
    mode & 0o077
      ? { status: 'warn', check: 'mirror mode', detail: `${root} is ${mode.toString(8).padStart(4, '0')}, readable by others`, fix: `chmod 700 ${root}` }
      : { status: 'ok', check: 'mirror mode', detail: `${root} is ${mode.toString(8).padStart(4, '0')}` },
  );
  if (uid !== undefined) {
    checks.push(
      st.uid === uid
        ? { status: 'ok', check: 'mirror owner', detail: `owned by uid ${uid} (this process)` }
        : { status: 'warn', check: 'mirror owner', detail: `owned by uid ${st.uid}, this process runs as uid ${uid}`, fix: `chown -R ${uid} ${root} (or run credsync as uid ${st.uid})` },
    );
  }
  // Writable: a probe file with a temp name the proxy ignores.
  const probe = join(root, `${TEMP_PREFIX}doctor-${randomBytes(4).toString('hex')}${TEMP_SUFFIX}`);
  try {
    await access(root, constants.W_OK);
    await writeFile(probe, 'probe', { mode: 0o600, flag: 'wx' });
    await unlink(probe);
    checks.push({ status: 'ok', check: 'mirror writable', detail: `${root} accepts writes` });
  } catch (err) {
    checks.push({ status: 'fail', check: 'mirror writable', detail: `${root}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`, fix: `make ${root} writable by this user (read-only volume? wrong owner?)` });
  }
  try {
    const fs = await statfs(root);
    const free = Number(fs.bavail) * Number(fs.bsize);
    const mb = (free / 1024 / 1024).toFixed(0);
    checks.push(
      free < NO_SPACE
        ? { status: 'fail', check: 'mirror free space', detail: `${mb} MiB free`, fix: 'free space on the volume (writes will fail)' }
        : free < LOW_SPACE
          ? { status: 'warn', check: 'mirror free space', detail: `${mb} MiB free`, fix: 'free space on the volume' }
          : { status: 'ok', check: 'mirror free space', detail: `${mb} MiB free` },
    );
  } catch {
    // statfs unsupported here: nothing to say
  }
  // Files 0600, stray temp files.
  const loose: string[] = [];
  const strays: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    const names = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const d of names) {
      const full = join(dir, d.name);
      if (d.isDirectory()) {
        if (depth < 16) await walk(full, depth + 1);
      } else if (isTempName(d.name)) strays.push(full);
      else if (d.isFile()) {
        const s = await lstat(full).catch(() => null);
        if (s && s.mode & 0o077) loose.push(`${full} (${(s.mode & 0o777).toString(8)})`);
      }
    }
  };
  for (const sub of ['config', 'auths']) await walk(join(root, sub), 0);
  checks.push(
    loose.length
      ? { status: 'warn', check: 'mirror file modes', detail: `${loose.length} file(s) readable by others: ${sample(loose)}`, fix: `chmod 600 the files (find ${root}/auths ${root}/config -type f -exec chmod 600 {} +)` }
      : { status: 'ok', check: 'mirror file modes', detail: 'every item is 0600 or stricter' },
  );
  checks.push(
    strays.length
      ? { status: 'warn', check: 'mirror temp files', detail: `${strays.length} stray temp file(s) from an interrupted write: ${sample(strays)}`, fix: 'safe to delete while no credsync runs on this mirror' }
      : { status: 'ok', check: 'mirror temp files', detail: 'none' },
  );
  // State file.
  const statePath = join(root, '.credsync', 'state.json');
  try {
    const snapshot = JSON.parse(await readFile(statePath, 'utf8')) as { format?: unknown; store?: unknown };
    if (snapshot.format !== 1) throw new Error(`unknown format ${JSON.stringify(snapshot.format)}`);
    if (storeId !== null && snapshot.store !== storeId) {
      checks.push({ status: 'warn', check: 'mirror state', detail: `${statePath} belongs to another store (${String(snapshot.store)})`, fix: 'expected after switching stores: the next run starts with an empty base (pulls and pushes only, no deletions)' });
    } else {
      // The pending queue is the snapshot plus the journal's later lines.
      const state = new StateFile(join(root, '.credsync'), String(snapshot.store));
      await state.load();
      const pending = state.pendingCount;
      checks.push({
        status: pending ? 'warn' : 'ok',
        check: 'mirror state',
        detail: `${statePath} readable, for this store${pending ? `; ${pending} change(s) pending push` : ''}`,
        ...(pending ? { fix: 'pending pushes go out when the store is reachable; see `credsync status`' } : {}),
      });
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    checks.push(
      code === 'ENOENT'
        ? { status: 'warn', check: 'mirror state', detail: 'no state file yet (never synced)', fix: 'run `credsync pull` or `credsync run`' }
        : { status: 'warn', check: 'mirror state', detail: `${statePath} unreadable (${code ?? errorMessage(err)})`, fix: 'the next run starts with an empty base (no deletions); remove the file to silence this' },
    );
  }
  // Items in the mirror.
  const mirror = new Mirror(root);
  const scan = await mirror.scan();
  const invalid = [...scan.items].filter(([, s]) => s.present && !s.valid).map(([k, s]) => `${k} (${s.present && !s.valid ? s.reason : ''})`);
  const bad = [...invalid, ...scan.skipped.map((s) => `${s.id} (${s.reason})`)];
  checks.push(
    bad.length
      ? { status: 'warn', check: 'mirror items', detail: `${bad.length} file(s) not synced: ${sample(bad)}`, fix: 'fix or remove them (credsync never pushes invalid content)' }
      : { status: 'ok', check: 'mirror items', detail: `${scan.items.size} item(s), all valid` },
  );
  const seen = new Map<string, Key[]>();
  for (const [key, s] of scan.items) {
    if (!s.present || !s.valid || key === CONFIG_KEY) continue;
    const data = await mirror.read(key).catch(() => null);
    if (data) addIdentity(seen, key, data);
  }
  const dup = duplicates(seen);
  checks.push(
    dup.length
      ? { status: 'warn', check: 'mirror duplicates', detail: `the same credential twice: ${sample(dup)}`, fix: 'delete the stale copy in the store (the proxy would load both)' }
      : { status: 'ok', check: 'mirror duplicates', detail: 'no credential (type + email) appears twice' },
  );
}

export function formatChecks(checks: readonly Check[]): string {
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(`${c.status.padEnd(4)}  ${c.check}: ${c.detail}`);
    if (c.status !== 'ok' && c.fix) lines.push(`      fix: ${c.fix}`);
  }
  return lines.join('\n');
}

/** `doctor`: one line per check; 0 when nothing failed (warnings allowed), 1 otherwise. */
export async function runDoctor(o: DoctorOptions, deps: OperatorDeps): Promise<number> {
  const start = Date.now();
  const checks: Check[] = [];
  let config: Config | undefined;
  try {
    config = resolveConfig(o.flags, { cwd: o.cwd ?? deps.cwd });
  } catch (err) {
    checks.push({ status: 'fail', check: 'configuration', detail: errorMessage(err), fix: 'fix the flag or variable named above (see .env.example)' });
  }
  if (config) {
    const why = config.storeSource === 'default' ? 'no store configured: the built-in directory store' : `selected by ${config.storeSource}`;
    if (o.expect && config.store.kind !== o.expect) {
      checks.push({ status: 'fail', check: 'configuration', detail: `store ${config.storeLabel} (${config.store.kind}, ${why}), but ${o.expect} was expected`, fix: 'selection order: --store, CREDSYNC_STORE, PGSTORE_DSN, OBJECTSTORE_ENDPOINT, GITSTORE_GIT_URL; check which is set (also in .env)' });
    } else if (config.isDefault) {
      checks.push({ status: 'warn', check: 'configuration', detail: `store ${config.storeLabel} (${why}); mirror ${config.localDir}`, fix: 'set PGSTORE_DSN, OBJECTSTORE_*, GITSTORE_* or CREDSYNC_STORE for a shared store' });
    } else {
      checks.push({ status: 'ok', check: 'configuration', detail: `store ${config.store.kind} ${config.storeLabel} (${why}); mirror ${config.localDir}` });
    }
    const storeId = await storeChecks(config, checks);
    await mirrorChecks(config, storeId, checks);
  }
  const failed = checks.filter((c) => c.status === 'fail').length;
  const warned = checks.filter((c) => c.status === 'warn').length;
  const code = failed ? 1 : 0;
  if (o.json) {
    deps.io.out(JSON.stringify({ command: 'doctor', store: config?.storeLabel, mirror: config?.localDir, durationMs: since(start), exitCode: code, counts: { ok: checks.length - failed - warned, warn: warned, fail: failed }, checks }));
  } else {
    deps.io.out(`${formatChecks(checks)}\n${failed ? `${failed} check(s) failed` : 'all checks passed'}${warned ? `, ${warned} warning(s)` : ''}`);
  }
  return code;
}
