import { mkdir, readFile, writeFile, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pino } from 'pino';
import { Engine, type EngineOptions } from '../../src/engine/engine.js';
import { Mirror } from '../../src/mirror/mirror.js';
import { createDirStore } from '../../src/stores/dir.js';
import type { Store } from '../../src/core/store.js';
import { tempDir } from '../support/tmp.js';

export interface LogLine {
  level: number;
  msg: string;
  key?: string;
  [k: string]: unknown;
}

/** An engine on a real mirror directory against a real directory store, with captured log lines. */
export async function makeEngine(opts: { storePath?: string; mirrorPath?: string; store?: Store } & Partial<Omit<EngineOptions, 'store' | 'mirror' | 'log'>> = {}) {
  const tmp = await tempDir('credsync-engine-');
  const storePath = opts.storePath ?? join(tmp.path, 'store');
  const mirrorPath = opts.mirrorPath ?? join(tmp.path, 'mirror');
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  const store = opts.store ?? createDirStore({ path: storePath, debounceMs: 10 });
  const engine = new Engine({
    store,
    mirror: new Mirror(mirrorPath),
    log,
    conflictPolicy: opts.conflictPolicy ?? 'newest',
    maxDelete: opts.maxDelete ?? { percent: 50 },
    debounceMs: opts.debounceMs ?? 10,
    reconcileIntervalMs: opts.reconcileIntervalMs ?? 60_000,
    observer: opts.observer,
    seedConfigPath: opts.seedConfigPath,
    backoffInitialMs: opts.backoffInitialMs ?? 50,
    backoffMaxMs: opts.backoffMaxMs ?? 200,
  });
  await engine.open();
  const p = (root: string, key: string): string => join(root, ...key.split('/'));
  const put = async (root: string, key: string, content: string): Promise<void> => {
    await mkdir(dirname(p(root, key)), { recursive: true });
    await writeFile(p(root, key), content);
  };
  const get = async (root: string, key: string): Promise<string | null> => readFile(p(root, key), 'utf8').catch(() => null);
  return {
    engine,
    store,
    storePath,
    mirrorPath,
    tmp,
    lines,
    local: { put: (k: string, c: string) => put(mirrorPath, k, c), get: (k: string) => get(mirrorPath, k), rm: (k: string) => rm(p(mirrorPath, k), { force: true }), stat: (k: string) => stat(p(mirrorPath, k)) },
    remote: { put: (k: string, c: string) => put(storePath, k, c), get: (k: string) => get(storePath, k), rm: (k: string) => rm(p(storePath, k), { force: true }) },
    async cleanup() {
      await engine.close();
      await tmp.remove();
    },
  };
}

export type Harness = Awaited<ReturnType<typeof makeEngine>>;

export const auth = (o: Record<string, unknown>): string => JSON.stringify(o, null, 2);
