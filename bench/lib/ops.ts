/** Shared by the operator-command benchmarks (migrate, backup/restore). */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { credId, makeCred, SAMPLE_CONFIG } from './creds.js';
import { runCli, type CliRun } from './daemon.js';
import { createStoreSchema, putConfig, quoteIdent, uniqueName, upsertAuths } from './pg.js';
import type { BenchContext } from './report.js';
import { round } from './stats.js';

export const RAW_COPY = fileURLToPath(new URL('./raw-copy.mjs', import.meta.url));

export function pgStoreUrl(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('schema', schema);
  return u.toString();
}

export const dirUrl = (dir: string, sub = 'store'): string => pathToFileURL(join(dir, sub)).href;

/** A fresh schema holding `n` credentials and the config; returns its store URL. */
export async function populatedPg(ctx: BenchContext, n: number, prefix: string): Promise<string> {
  const schema = uniqueName(prefix);
  await createStoreSchema(ctx.admin, ctx.pg.url, schema);
  for (let i = 0; i < n; i += 1000) {
    const part = Array.from({ length: Math.min(1000, n - i) }, (_, k) => makeCred(i + k));
    await upsertAuths(ctx.admin, schema, part.map((c, k) => ({ id: credId(i + k), content: JSON.stringify(c) })));
  }
  await putConfig(ctx.admin, schema, SAMPLE_CONFIG);
  await ctx.admin.unsafe(`VACUUM ANALYZE ${quoteIdent(schema)}.auth_store`);
  return pgStoreUrl(ctx.pg.url, schema);
}

/** A fresh, empty schema (created by the store itself on first use); returns its store URL. */
export async function emptyPg(ctx: BenchContext, prefix: string): Promise<string> {
  const schema = uniqueName(prefix);
  await createStoreSchema(ctx.admin, ctx.pg.url, schema);
  return pgStoreUrl(ctx.pg.url, schema);
}

export async function checked(what: string, run: Promise<CliRun>): Promise<CliRun> {
  const r = await run;
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${r.stderrTail}`);
  return r;
}

export const rawCopy = (from: string, to: string): Promise<CliRun> => checked(`raw copy ${from} → ${to}`, runCli(['copy', from, to], {}, 600_000, RAW_COPY));
export const rawRead = (from: string, file: string): Promise<CliRun> => checked(`raw read ${from}`, runCli(['read', from, file], {}, 600_000, RAW_COPY));
export const credsync = (args: string[]): Promise<CliRun> => checked(`credsync ${args[0]}`, runCli(args, {}, 600_000));

export const mib = (r: CliRun): number => (r.maxRssKb ?? NaN) / 1024;

export function describeRun(r: CliRun): Record<string, unknown> {
  return { exitCode: r.code, wallMs: round(r.wallMs), maxRssMiB: r.maxRssKb === null ? null : round(r.maxRssKb / 1024, 1), rssSource: r.rssSource, stdout: r.stdout.trim().slice(0, 300) };
}
