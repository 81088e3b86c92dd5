import { ConfigError } from '../core/errors.js';

/** `500ms`, `10s`, `5m`, `1h`; a bare number is seconds. */
export function parseDuration(name: string, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
  if (!m) throw new ConfigError(`${name} ${raw}: expected a duration like 500ms, 10s, 5m or 1h`);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * mult);
}

/** `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), case-insensitive. */
export function parseBool(name: string, raw: string): boolean {
  const s = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(s)) return true;
  if (['false', '0', 'no', 'off'].includes(s)) return false;
  throw new ConfigError(`${name} ${raw}: expected true or false`);
}

/** One of `allowed`, case-insensitive. */
export function parseChoice<T extends string>(name: string, raw: string, allowed: readonly T[]): T {
  const s = raw.trim().toLowerCase();
  const hit = allowed.find((a) => a === s);
  if (!hit) throw new ConfigError(`${name} ${raw}: expected one of ${allowed.join(', ')}`);
  return hit;
}

/** `1048576`, `512KiB`, `1MiB`, `1MB` (= MiB here: sizes of files, not of disks). */
export function parseSize(name: string, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib)?$/i.exec(raw.trim());
  if (!m) throw new ConfigError(`${name} ${raw}: expected a size like 1048576, 512KiB or 1MiB`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const mult = unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1;
  const n = Math.floor(Number(m[1]) * mult);
  if (n < 1024) throw new ConfigError(`${name} ${raw}: must be at least 1KiB`);
  return n;
}
