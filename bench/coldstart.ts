/**
 * Cold start: 10,000 and 50,000 credentials (~1–2 KB of JSON each) and the config in the store, an
 * empty mirror: `credsync pull` (what the init container runs) wall time and peak RSS, each size with
 * its own floors. Then, at 10,000 only, the same pull again on the now complete mirror (a no-op
 * reconcile: what every start-up and periodic reconcile costs). Peak RSS should not grow with the
 * store (items are streamed in batches): the target is ≤ 120 MiB at both sizes.
 *
 * Floors, same server, same run, per size:
 * - copy: `COPY auth_store TO STDOUT` of the same rows through the postgres package's copy stream
 *   (and through psql when it is installed, process start included);
 * - files: as many durable atomic writes (temp, fsync, rename, directory fsync) with 32 writers;
 * - node: `node dist/cli.js --version` (process start, module loading: paid by any Node.js CLI);
 * - sum: node + copy + files, the least a Node.js init container can take to do the job;
 * - scan (for the second, no-op pull): read and hash the 10,000 files with 32 readers.
 *
 * Sizes: `BENCH_COLD_ITEMS` (default 10,000; the second pull runs on it) and `BENCH_COLD_LARGE_ITEMS`
 * (default 50,000, one run; 0 leaves it out). `--quick`: 1,000 only.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tempDir } from './lib/cleanup.js';
import { canonicalOfText, credId, fileText, makeCred, SAMPLE_CONFIG } from './lib/creds.js';
import { durableWriteMany } from './lib/fsx.js';
import { pgEnv, runCli, type CliRun } from './lib/daemon.js';
import { client, createStoreSchema, putConfig, quoteIdent, uniqueName, upsertAuths } from './lib/pg.js';
import type { Bench, BenchContext, BenchOutcome, Figure } from './lib/report.js';
import { median, round } from './lib/stats.js';

const FLOOR_WRITERS = 32;
const PSQL = ['/usr/bin/psql', '/usr/local/bin/psql'].find((p) => existsSync(p));

async function copyOut(ctx: BenchContext, schema: string): Promise<{ ms: number; bytes: number }> {
  const sql = client(ctx.pg.url, 'bench-copy');
  let bytes = 0;
  const t0 = performance.now();
  const readable = await sql.unsafe(`COPY ${quoteIdent(schema)}.auth_store TO STDOUT`).readable();
  await pipeline(
    readable,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        cb();
      },
    }),
  );
  const ms = performance.now() - t0;
  await sql.end({ timeout: 2 });
  return { ms, bytes };
}

function psqlCopy(url: string, schema: string): Promise<number | null> {
  if (!PSQL) return Promise.resolve(null);
  return new Promise((resolve) => {
    const t0 = performance.now();
    execFile(
      PSQL,
      ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', `COPY ${quoteIdent(schema)}.auth_store TO STDOUT`, url],
      { maxBuffer: 256 * 2 ** 20, encoding: 'buffer' },
      (err) => resolve(err ? null : performance.now() - t0),
    );
  });
}

async function countFiles(dir: string): Promise<number> {
  try {
    return (await readdir(dir)).filter((n) => n.endsWith('.json')).length;
  } catch {
    return 0;
  }
}

function describe(r: CliRun): Record<string, unknown> {
  return { exitCode: r.code, wallMs: round(r.wallMs), maxRssMiB: r.maxRssKb === null ? null : round(r.maxRssKb / 1024, 1), rssSource: r.rssSource, stderrLines: r.stderrLines, stdout: r.stdout.trim().split('\n')[0] };
}

/** The size-independent floor: `node dist/cli.js --version` (median of 3). */
interface NodeFloor {
  readonly ms: number;
  readonly rssKb: number;
}

interface SizeResult {
  readonly n: number;
  readonly figures: Figure[];
  readonly details: Record<string, unknown>;
  readonly note: string;
  readonly peakRssMiB: number;
}

const thousands = (n: number): string => n.toLocaleString('en-US');

/** One store size: populate, floors, cold pull (verified), and with `second` the no-op pull again. */
async function measureSize(ctx: BenchContext, n: number, node: NodeFloor, second: boolean): Promise<SizeResult> {
  const { url } = ctx.pg;
  const schema = uniqueName('bench_cold');
  await createStoreSchema(ctx.admin, url, schema);
  ctx.log(`  ${thousands(n)}: populating the store`);
  const texts: string[] = [];
  for (let i = 0; i < n; i += 1000) {
    const part = Array.from({ length: Math.min(1000, n - i) }, (_, k) => makeCred(i + k));
    texts.push(...part.map((c) => JSON.stringify(c)));
    await upsertAuths(
      ctx.admin,
      schema,
      part.map((c, k) => ({ id: credId(i + k), content: JSON.stringify(c) })),
    );
  }
  await putConfig(ctx.admin, schema, SAMPLE_CONFIG);
  await ctx.admin.unsafe(`VACUUM ANALYZE ${quoteIdent(schema)}.auth_store`);
  const avgBytes = Math.round(texts.reduce((s, t) => s + fileText(JSON.parse(t) as Record<string, unknown>).length, 0) / n);

  // Floors first (they warm the server's cache for the table, as a real cold start of credsync would find it: the store is shared and busy).
  ctx.log(`  ${thousands(n)}: floor: COPY TO STDOUT`);
  const copies = [await copyOut(ctx, schema), await copyOut(ctx, schema), await copyOut(ctx, schema)];
  const copyMs = median(copies.map((c) => c.ms));
  const psqlMs = await psqlCopy(url, schema);
  ctx.log(`  ${thousands(n)}: floor: durable file writes (${FLOOR_WRITERS} writers)`);
  const floorDir = await tempDir('cold-floor');
  const f0 = performance.now();
  {
    // Row text only while it is written: 50,000 rows are some 70 MiB of strings in the bench process.
    const rows = await ctx.admin.unsafe(`SELECT id, content::text AS c FROM ${quoteIdent(schema)}.auth_store`);
    await durableWriteMany(
      join(floorDir.path, 'auths'),
      rows.map((r) => ({ name: r.id as string, data: r.c as string })),
      FLOOR_WRITERS,
    );
  }
  const filesMs = performance.now() - f0;
  let scanMs: number | null = null;
  if (second) {
    // Floor of a no-op reconcile's local side: read and hash every file (32 readers).
    const s0 = performance.now();
    const names = await readdir(join(floorDir.path, 'auths'));
    let next = 0;
    await Promise.all(
      Array.from({ length: FLOOR_WRITERS }, async () => {
        while (next < names.length) {
          const name = names[next++]!;
          createHash('sha256').update(await readFile(join(floorDir.path, 'auths', name))).digest('hex');
        }
      }),
    );
    scanMs = performance.now() - s0;
  }
  await floorDir.remove();
  const floorSum = node.ms + copyMs + filesMs;

  ctx.log(`  ${thousands(n)}: credsync pull into an empty mirror`);
  const mirror = await tempDir('cold-mirror');
  const env = { ...pgEnv(url, schema, mirror.path), CREDSYNC_LOG_LEVEL: 'info' }; // a pull logs one line per batch at info
  const cold = await runCli(['pull'], env, 600_000);
  if (cold.code !== 0) throw new Error(`credsync pull of ${n} exited ${cold.code}:\n${cold.stderrTail}`);
  const files = await countFiles(join(mirror.path, 'auths'));
  const hasConfig = existsSync(join(mirror.path, 'config', 'config.yaml'));
  // Spot-check content: every 97th credential.
  let bad = 0;
  for (let i = 0; i < n; i += 97) {
    const text = await readFile(join(mirror.path, 'auths', credId(i)), 'utf8').catch(() => '');
    if (canonicalOfText(text) !== canonicalOfText(texts[i]!)) bad++;
  }
  if (files !== n || !hasConfig || bad) throw new Error(`mirror incomplete after pull: ${files}/${n} credentials, config ${hasConfig ? 'present' : 'missing'}, ${bad} spot-checked file(s) wrong`);
  let warm: CliRun | null = null;
  if (second) {
    ctx.log(`  ${thousands(n)}: credsync pull again (mirror complete: no-op reconcile)`);
    warm = await runCli(['pull'], env);
    if (warm.code !== 0) throw new Error(`second credsync pull exited ${warm.code}:\n${warm.stderrTail}`);
  }
  await mirror.remove();
  await ctx.admin.unsafe(`DROP SCHEMA ${quoteIdent(schema)} CASCADE`);

  const label = thousands(n);
  const peakRssMiB = (cold.maxRssKb ?? NaN) / 1024;
  const figures: Figure[] = [
    { label: `pull ${label} (empty mirror) wall`, unit: 'ms', value: cold.wallMs, floor: floorSum, floorName: `sum ${label}` },
    { label: `pull ${label} (empty mirror) wall`, unit: 'ms', value: cold.wallMs, floor: copyMs, floorName: `copy ${label}` },
    { label: `pull ${label} peak RSS`, unit: 'MiB', value: peakRssMiB, floor: node.rssKb / 1024, floorName: 'node' },
  ];
  if (warm && scanMs !== null) {
    figures.push(
      { label: `pull again ${label} (mirror complete) wall`, unit: 'ms', value: warm.wallMs, floor: node.ms + copyMs + scanMs, floorName: 'node+copy+scan' },
      { label: `pull again ${label} peak RSS`, unit: 'MiB', value: (warm.maxRssKb ?? NaN) / 1024, floor: node.rssKb / 1024, floorName: 'node' },
    );
  }
  return {
    n,
    figures,
    peakRssMiB,
    details: {
      items: n,
      avgFileBytes: avgBytes,
      copyBytes: copies[0]!.bytes,
      floorMs: { copyMedian: round(copyMs), copyRuns: copies.map((c) => round(c.ms)), psqlCopy: psqlMs === null ? null : round(psqlMs), files: round(filesMs), scan: scanMs === null ? null : round(scanMs), sum: round(floorSum) },
      coldPull: describe(cold),
      warmPull: warm ? describe(warm) : null,
    },
    note: `${label}: floor parts: node start ${node.ms.toFixed(0)} ms, COPY ${copyMs.toFixed(0)} ms (${(copies[0]!.bytes / 2 ** 20).toFixed(1)} MiB${psqlMs === null ? '' : `; psql incl. start ${psqlMs.toFixed(0)} ms`}), ${n} durable writes ${filesMs.toFixed(0)} ms${scanMs === null ? '' : `, read+hash ${n} files ${scanMs.toFixed(0)} ms`}`,
  };
}

export const coldStartBench: Bench = {
  name: 'coldstart',
  title: 'Cold start: credsync pull of 10,000 and 50,000 credentials into an empty mirror',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const n = ctx.quick ? 1000 : Number(process.env.BENCH_COLD_ITEMS ?? 10_000);
    const large = ctx.quick ? 0 : Number(process.env.BENCH_COLD_LARGE_ITEMS ?? 50_000);
    ctx.log('  floor: node process start');
    const nodeRuns = [await runCli(['--version'], {}), await runCli(['--version'], {}), await runCli(['--version'], {})];
    const node: NodeFloor = { ms: median(nodeRuns.map((r) => r.wallMs)), rssKb: median(nodeRuns.map((r) => r.maxRssKb ?? NaN)) };
    const sizes = [await measureSize(ctx, n, node, true)];
    if (large > 0) sizes.push(await measureSize(ctx, large, node, false));

    const floors: Record<string, string> = {
      node: '`node dist/cli.js --version`: process start and module loading (median of 3)',
    };
    for (const s of sizes) {
      const label = thousands(s.n);
      floors[`copy ${label}`] = `COPY auth_store TO STDOUT of the ${label} rows through the postgres package's copy stream (median of 3)`;
      floors[`sum ${label}`] = `node + copy + ${label} durable atomic writes (temp, fsync, rename, directory fsync), ${FLOOR_WRITERS} writers`;
    }
    floors['node+copy+scan'] = `node + copy + read and SHA-256 every one of the ${thousands(n)} files (${FLOOR_WRITERS} readers): what a no-op reconcile must do locally without remembered stat signatures`;
    const rssTarget = 120;
    return {
      figures: sizes.flatMap((s) => s.figures),
      floors,
      details: {
        nodeStartMs: round(node.ms),
        nodeStartRssMiB: round(node.rssKb / 1024, 1),
        nodeRuns: nodeRuns.map((r) => round(r.wallMs)),
        peakRssTargetMiB: rssTarget,
        sizes: sizes.map((s) => s.details),
      },
      notes: [
        ...sizes.map((s) => s.note),
        `peak RSS of the cold pull: ${sizes.map((s) => `${thousands(s.n)} → ${s.peakRssMiB.toFixed(1)} MiB`).join(', ')} (target ≤ ${rssTarget} MiB at every size: ${sizes.every((s) => s.peakRssMiB <= rssTarget) ? 'met' : 'NOT met'})`,
      ],
    };
  },
};
