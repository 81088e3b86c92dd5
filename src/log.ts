import { writeSync } from 'node:fs';
import { Writable } from 'node:stream';
import { createRequire } from 'node:module';
import { pino, type Logger, type LevelWithSilent } from 'pino';
import type { PrettyOptions } from 'pino-pretty';
import { secrets } from './core/redact.js';

const require = createRequire(import.meta.url);

/**
 * Field paths that may carry secrets. Token contents are never logged on purpose; this is the
 * second line of defence if an object carrying one is ever attached to a log line. The third is the
 * scrubber every line passes through on its way out (`secrets` in core/redact.ts).
 */
export const REDACT_PATHS = [
  'access_token', 'refresh_token', 'id_token', 'token', 'password', 'secret', 'secretKey', 'secret_key',
  'accessKey', 'dsn', 'authorization', 'api_key', 'content', 'data',
  '*.access_token', '*.refresh_token', '*.id_token', '*.token', '*.password', '*.secret', '*.secretKey',
  '*.secret_key', '*.accessKey', '*.dsn', '*.authorization', '*.api_key', '*.content', '*.data',
];

/** Writes to stderr synchronously (a crash never loses the line that explains it), scrubbed of every known secret. */
function stderrLine(s: string): void {
  writeSync(2, secrets.scrub(s));
}

/** Whether logs are JSON lines (stderr is not a terminal) — then everything credsync says on stderr is JSON. */
export function jsonLogs(): boolean {
  return !process.stderr.isTTY;
}

/** JSON lines on stderr by default, pretty when stderr is a terminal. stdout stays free for command output. */
export function createLogger(level: LevelWithSilent = 'info', opts: { pretty?: boolean } = {}): Logger {
  const options = { level, base: { pid: process.pid }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  const usePretty = opts.pretty ?? !jsonLogs();
  if (usePretty) {
    // Loaded only for a terminal: it is the heaviest module of a one-shot command.
    const pretty = require('pino-pretty') as (o: PrettyOptions) => NodeJS.WritableStream;
    const destination = new Writable({
      write(chunk: Buffer, _enc, cb) {
        stderrLine(chunk.toString());
        cb();
      },
    });
    return pino(options, pretty({ destination, sync: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }));
  }
  return pino(options, { write: stderrLine });
}

/**
 * A message for the operator outside the logger (a fatal error before the logger exists, a banner):
 * a JSON line when logs are JSON, so every line of the stream parses; plain text on a terminal.
 */
export function say(level: 'info' | 'warn' | 'error' | 'fatal', msg: string, fields: Record<string, unknown> = {}): void {
  if (jsonLogs()) {
    const levels = { info: 30, warn: 40, error: 50, fatal: 60 };
    stderrLine(JSON.stringify({ level: levels[level], time: Date.now(), pid: process.pid, ...fields, msg }) + '\n');
  } else {
    stderrLine(`credsync: ${msg}\n`);
  }
}

/** Command output on stdout, scrubbed like everything else. */
export function out(s: string): void {
  process.stdout.write(secrets.scrub(s.endsWith('\n') ? s : s + '\n'));
}
