import { createRequire } from 'node:module';
import { pino, type Logger, type LevelWithSilent } from 'pino';
import type { PrettyOptions } from 'pino-pretty';

const require = createRequire(import.meta.url);

/**
 * Field paths that may carry secrets. Token contents are never logged on purpose; this is the
 * second line of defence if an object carrying one is ever attached to a log line.
 */
export const REDACT_PATHS = [
  'access_token', 'refresh_token', 'id_token', 'token', 'password', 'secret', 'secretKey', 'secret_key',
  'accessKey', 'dsn', 'authorization', 'api_key', 'content', 'data',
  '*.access_token', '*.refresh_token', '*.id_token', '*.token', '*.password', '*.secret', '*.secretKey',
  '*.secret_key', '*.accessKey', '*.dsn', '*.authorization', '*.api_key', '*.content', '*.data',
];

/** JSON lines on stderr by default, pretty when stderr is a terminal. stdout stays free for command output. */
export function createLogger(level: LevelWithSilent = 'info', opts: { pretty?: boolean } = {}): Logger {
  const options = { level, base: { pid: process.pid }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  const usePretty = opts.pretty ?? Boolean(process.stderr.isTTY);
  if (usePretty) {
    // Loaded only for a terminal: it is the heaviest module of a one-shot command.
    const pretty = require('pino-pretty') as (o: PrettyOptions) => NodeJS.WritableStream;
    return pino(options, pretty({ destination: 2, sync: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }));
  }
  return pino(options, pino.destination({ fd: 2, sync: true }));
}
