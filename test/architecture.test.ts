import { describe, it, expect } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The layout of DESIGN.md ("Layout"), checked on the real import graph: floors from the ground up,
 * a folder imports only folders below it (and itself); the engine never names a concrete store;
 * commands reach stores only through the registry.
 */
const SRC = fileURLToPath(new URL('../src/', import.meta.url));
const FLOORS = ['core', 'fs', 'mirror', 'stores', 'engine', 'config', 'http', 'commands', '(root)'] as const;

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

const folderOf = (file: string): string => {
  const rel = relative(SRC, file).split('/');
  return rel.length === 1 ? '(root)' : rel[0]!;
};

interface Edge {
  from: string;
  to: string;
}

function edges(): Edge[] {
  const out: Edge[] = [];
  for (const f of files(SRC)) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const target = normalize(join(dirname(f), m[1]!)).replace(/\.js$/, '.ts');
      out.push({ from: relative(SRC, f), to: relative(SRC, target) });
    }
  }
  return out;
}

describe('layout', () => {
  const all = edges();

  it('finds the import graph (the check below is not vacuous)', () => {
    expect(all.length).toBeGreaterThan(50);
  });

  it('no folder imports a folder above it', () => {
    const bad = all.filter((e) => {
      const a = FLOORS.indexOf(folderOf(join(SRC, e.from)) as (typeof FLOORS)[number]);
      const b = FLOORS.indexOf(folderOf(join(SRC, e.to)) as (typeof FLOORS)[number]);
      return a < 0 || b < 0 || b > a;
    });
    expect(bad).toEqual([]);
  });

  it('core imports nothing of ours outside core', () => {
    expect(all.filter((e) => e.from.startsWith('core/') && !e.to.startsWith('core/'))).toEqual([]);
  });

  it('the engine never imports a store', () => {
    expect(all.filter((e) => e.from.startsWith('engine/') && e.to.startsWith('stores/'))).toEqual([]);
  });

  it('commands and config reach stores only through the registry and the spec', () => {
    const allowed = new Set(['stores/registry.ts', 'stores/spec.ts']);
    // doctor's PostgreSQL checks need the store's own channel name and quoting (pgChannelFor, quoteIdent).
    const doctorKind = (e: Edge): boolean => e.from === 'commands/doctor-postgres.ts' && e.to === 'stores/postgres/index.ts';
    expect(all.filter((e) => /^(commands|config|http)\//.test(e.from) && e.to.startsWith('stores/') && !allowed.has(e.to) && !doctorKind(e))).toEqual([]);
  });

  it('engine.ts stays a small facade', () => {
    const lines = readFileSync(join(SRC, 'engine/engine.ts'), 'utf8').split('\n').length;
    expect(lines).toBeLessThan(120);
  });
});
