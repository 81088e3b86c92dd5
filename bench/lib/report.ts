/** Result shapes shared by the benchmarks and the runner. */
import type { BenchPg, Sql } from './pg.js';
import { fmtNum, fmtRatio, ratio, round, table } from './stats.js';

export interface Figure {
  readonly label: string;
  readonly unit: string;
  readonly value: number;
  /** The floor measured in the same run, same unit. */
  readonly floor?: number;
  /** Which floor (a key of the result's `floors`). */
  readonly floorName?: string;
  /** For rates: higher is better, and the ratio is floor / value. Otherwise value / floor. */
  readonly higherIsBetter?: boolean;
}

export interface BenchOutcome {
  readonly figures: Figure[];
  /** Floor name → what it measures. */
  readonly floors: Record<string, string>;
  /** Everything else worth keeping (raw summaries, breakdowns, parameters). */
  readonly details: Record<string, unknown>;
  readonly notes: string[];
}

export interface BenchResult extends BenchOutcome {
  readonly name: string;
  readonly title: string;
  readonly durationMs: number;
  /** 1-minute load average before and after: the machine may be shared (2 cores). */
  readonly loadAvg1m: { readonly before: number; readonly after: number };
  readonly error?: string;
}

export interface BenchContext {
  readonly pg: BenchPg;
  /** A bench-side admin connection to the server's URL database. */
  readonly admin: Sql;
  /** Fewer samples (`--quick`), for trying the harness. */
  readonly quick: boolean;
  readonly log: (msg: string) => void;
}

export interface Bench {
  readonly name: string;
  readonly title: string;
  run(ctx: BenchContext): Promise<BenchOutcome>;
}

/** "How many times the floor": ≥ 1 means slower than the floor. */
export function figureRatio(f: Figure): number | undefined {
  if (f.floor === undefined) return undefined;
  return f.higherIsBetter ? ratio(f.floor, f.value) : ratio(f.value, f.floor);
}

export function jsonFigure(f: Figure): Record<string, unknown> {
  const r = figureRatio(f);
  return { ...f, value: round(f.value), floor: f.floor === undefined ? undefined : round(f.floor), ratio: r === undefined ? undefined : round(r, 2) };
}

export function renderResult(r: BenchResult): string {
  const load = `load ${r.loadAvg1m.before.toFixed(1)} → ${r.loadAvg1m.after.toFixed(1)}`;
  const out: string[] = [`## ${r.title} (${r.name}, ${(r.durationMs / 1000).toFixed(1)} s, ${load})`];
  if (r.error) out.push(`FAILED: ${r.error}`);
  if (r.figures.length) {
    out.push(
      table(
        ['metric', 'credsync', 'floor', 'vs floor', 'floor is'],
        r.figures.map((f) => [f.label, fmtNum(f.value, f.unit), f.floor === undefined ? '–' : fmtNum(f.floor, f.unit), fmtRatio(figureRatio(f)), f.floorName ?? '']),
      ),
    );
  }
  const floorNames = Object.entries(r.floors);
  if (floorNames.length) {
    out.push('floors:');
    for (const [k, v] of floorNames) out.push(`  ${k}: ${v}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n');
}
