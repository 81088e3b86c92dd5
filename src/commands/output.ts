import cliProgress from 'cli-progress';
import { secrets } from '../core/redact.js';

/**
 * Output of the operator commands: one result object on stdout with `--json` (nothing else goes to
 * stdout then), human lines otherwise; notes and progress on stderr. A progress bar is drawn only
 * when stderr is a TTY and the job is large enough to take a while.
 */

export interface Io {
  /** stdout: the result (human lines, or one JSON object). */
  out(s: string): void;
  /** stderr: notes and warnings, never the result. */
  err(s: string): void;
  /** Whether stderr is a terminal (a progress bar may be drawn). */
  readonly tty: boolean;
}

export const processIo = (): Io => ({
  out: (s) => void process.stdout.write(secrets.scrub(s.endsWith('\n') ? s : s + '\n')),
  err: (s) => void process.stderr.write(secrets.scrub(s.endsWith('\n') ? s : s + '\n')),
  tty: Boolean(process.stderr.isTTY),
});

/** Jobs below this many items finish too fast for a bar to be useful. */
export const PROGRESS_MIN_ITEMS = 300;

export interface Progress {
  tick(n?: number): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { tick: () => {}, stop: () => {} };

export function progress(io: Io, label: string, total: number): Progress {
  if (!io.tty || total < PROGRESS_MIN_ITEMS) return NO_PROGRESS;
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} [{bar}] {value}/{total} {percentage}% eta {eta_formatted}`, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  let stopped = false;
  return {
    tick: (n = 1) => bar.increment(n),
    stop: () => {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}

/** A key with the reason something happened to it. */
export interface KeyNote {
  readonly key: string;
  readonly reason: string;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Lines `  <verb> <key>[ (<reason>)]` for a list, at most `limit` of them (then "… and N more"). */
export function keyLines(verb: string, items: ReadonlyArray<string | KeyNote>, limit = Infinity): string[] {
  const lines: string[] = [];
  for (const it of items.slice(0, limit)) {
    lines.push(typeof it === 'string' ? `  ${verb} ${it}` : `  ${verb} ${it.key} (${it.reason})`);
  }
  if (items.length > limit) lines.push(`  … and ${items.length - limit} more`);
  return lines;
}
