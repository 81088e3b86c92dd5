import { createRequire } from 'node:module';
import type { SingleBar } from 'cli-progress';

const require = createRequire(import.meta.url);

/** Work below this many items finishes too fast for a bar to help. */
const MIN_ITEMS = 300;

/**
 * A progress bar on stderr for long one-shot commands — only when stderr is a terminal (never in
 * logs, pipes or CI) and only once there are more than a few hundred items to go. Returns the
 * callback to feed and a `stop` that clears the bar.
 */
export function progressBar(label: string): { update(done: number, total: number): void; stop(): void } {
  if (!process.stderr.isTTY) return { update: () => {}, stop: () => {} };
  let bar: SingleBar | null = null;
  return {
    update(done, total) {
      if (!bar) {
        if (total < MIN_ITEMS) return;
        // Loaded only on a terminal with real work to show.
        const { SingleBar: Bar, Presets } = require('cli-progress') as typeof import('cli-progress');
        bar = new Bar({ format: `${label} [{bar}] {value}/{total} items · {eta}s left`, stream: process.stderr, hideCursor: true, clearOnComplete: true }, Presets.shades_classic);
        bar.start(total, done);
        return;
      }
      bar.setTotal(total);
      bar.update(done);
    },
    stop() {
      bar?.stop();
    },
  };
}
