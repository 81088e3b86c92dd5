import { readdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { AUTH_PREFIX, CONFIG_KEY, keyProblem, type Key } from '../core/keys.js';
import type { SkippedItem, Store } from '../core/store.js';
import { readNoFollow } from '../fs/atomic.js';
import { forEachLimit } from '../core/limit.js';
import type { CopySource, SourceItem } from './copy.js';
import { chunks, READ_PARALLEL, readBatch } from './operator.js';

/** A store as a copy source: listed once (keys only), read in bounded batches. */
export async function storeSource(store: Store, label: string): Promise<CopySource> {
  const { entries, skipped } = await store.list();
  const keys = entries.map((e) => e.key).sort();
  return {
    label,
    keys,
    skipped,
    async *batches() {
      for (const group of chunks(keys)) {
        const got = await readBatch(store, group);
        yield group.map((key): SourceItem => {
          const it = got.get(key);
          return it?.problem ? { key, data: it.data, problem: it.problem } : { key, data: it?.data ?? null };
        });
      }
    },
  };
}

/** CLIProxyAPI's file store default auth directory. */
export const CLIPROXY_DEFAULT_DIR = '~/.cli-proxy-api';

export function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? join(homedir(), p.slice(2)) : p;
}

/**
 * A plain CLIProxyAPI file-store deployment as a copy source: the flat auth directory (`*.json`,
 * each `auths/<name>`) plus, optionally, the `config.yaml` it runs with (`config/config.yaml`).
 * Symlinks and sub-directories are not followed (reported as skipped); other files are ignored, as
 * CLIProxyAPI ignores them.
 */
export async function cliproxySource(dirRaw: string, configFile: string | undefined, cwd = process.cwd()): Promise<CopySource> {
  const dir = resolve(cwd, expandHome(dirRaw));
  let names: import('node:fs').Dirent[];
  try {
    names = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new ConfigError(`read --from-cliproxy-dir ${dir}: ${(err as NodeJS.ErrnoException).code ?? errMsg(err)} (expected CLIProxyAPI's auth directory, default ${CLIPROXY_DEFAULT_DIR})`);
  }
  const paths = new Map<Key, string>();
  const skipped: SkippedItem[] = [];
  for (const d of names) {
    if (!d.name.endsWith('.json') || d.name.startsWith('.')) continue;
    const key = AUTH_PREFIX + d.name;
    if (d.isSymbolicLink()) {
      skipped.push({ id: key, reason: 'symlink (not followed)' });
      continue;
    }
    if (!d.isFile()) {
      skipped.push({ id: key, reason: 'not a regular file' });
      continue;
    }
    const problem = keyProblem(key);
    if (problem) {
      skipped.push({ id: key, reason: problem });
      continue;
    }
    paths.set(key, join(dir, d.name));
  }
  if (configFile) paths.set(CONFIG_KEY, resolve(cwd, expandHome(configFile)));
  const keys = [...paths.keys()].sort();
  return {
    label: `cliproxy dir ${dir}${configFile ? ` + ${resolve(cwd, expandHome(configFile))}` : ''}`,
    keys,
    skipped,
    async *batches() {
      for (const group of chunks(keys)) {
        const data = new Map<Key, Uint8Array | null>();
        await forEachLimit(group, READ_PARALLEL, async (k) => {
          try {
            data.set(k, await readNoFollow(paths.get(k)!));
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (k === CONFIG_KEY) throw new ConfigError(`read --from-cliproxy-config ${paths.get(k)}: ${code ?? errMsg(err)}`);
            if (code === 'ENOENT') data.set(k, null);
            else throw err;
          }
        });
        yield group.map((key): SourceItem => ({ key, data: data.get(key) ?? null }));
      }
    },
  };
}

function errMsg(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
