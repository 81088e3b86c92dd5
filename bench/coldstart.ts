/**
 * Cold start: 10,000 credentials (~1–2 KB of JSON each) and the config in the store, an empty mirror:
 * `credsync pull` (what the init container runs) wall time and peak RSS. Then the same pull again on
 * the now complete mirror (a no-op reconcile: what every start-up and periodic reconcile costs).
 *
 * Floors, same server, same run:
 * - copy: `COPY auth_store TO STDOUT` of the same rows through the postgres package's copy stream
 *   (and through psql when it is installed, process start included);
 * - files: 10,000 durable atomic writes (temp, fsync, rename, directory fsync) with 32 writers;
 * - node: `node dist/cli.js --version` (process start, module loading: paid by any Node.js CLI);
 * - sum: node + copy + files, the least a Node.js init container can take to do the job;
 * - scan (for the second, no-op pull): read and hash the 10,000 files with 32 readers.
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
import type { Bench, BenchContext, BenchOutcome } from './lib/report.js';
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

export const coldStartBench: Bench = {
  name: 'coldstart',
  title: 'Cold start: credsync pull of 10,000 credentials into an empty mirror',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const n = ctx.quick ? 1000 : Number(process.env.BENCH_COLD_ITEMS ?? 10_000);
    const { url } = ctx.pg;
    const schema = uniqueName('bench_cold');
    await createStoreSchema(ctx.admin, url, schema);
    ctx.log(`  populating the store with ${n} credentials`);
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
    ctx.log('  floor: COPY TO STDOUT');
    const copies = [await copyOut(ctx, schema), await copyOut(ctx, schema), await copyOut(ctx, schema)];
    const copyMs = median(copies.map((c) => c.ms));
    const psqlMs = await psqlCopy(url, schema);
    ctx.log('  floor: node process start');
    const nodeRuns = [await runCli(['--version'], {}), await runCli(['--version'], {}), await runCli(['--version'], {})];
    const nodeMs = median(nodeRuns.map((r) => r.wallMs));
    const nodeRssKb = median(nodeRuns.map((r) => r.maxRssKb ?? NaN));
    ctx.log(`  floor: ${n} durable file writes (${FLOOR_WRITERS} writers)`);
    const rows = await ctx.admin.unsafe(`SELECT id, content::text AS c FROM ${quoteIdent(schema)}.auth_store`);
    const floorDir = await tempDir('cold-floor');
    const f0 = performance.now();
    await durableWriteMany(
      join(floorDir.path, 'auths'),
      rows.map((r) => ({ name: r.id as string, data: r.c as string })),
      FLOOR_WRITERS,
    );
    const filesMs = performance.now() - f0;
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
    const scanMs = performance.now() - s0;
    await floorDir.remove();
    const floorSum = nodeMs + copyMs + filesMs;

    ctx.log(`  credsync pull into an empty mirror`);
    const mirror = await tempDir('cold-mirror');
    const env = { ...pgEnv(url, schema, mirror.path), CREDSYNC_LOG_LEVEL: 'info' }; // a pull logs one line per batch at info
    const cold = await runCli(['pull'], env);
    if (cold.code !== 0) throw new Error(`credsync pull exited ${cold.code}:\n${cold.stderrTail}`);
    const files = await countFiles(join(mirror.path, 'auths'));
    const hasConfig = existsSync(join(mirror.path, 'config', 'config.yaml'));
    // Spot-check content: every 97th credential.
    let bad = 0;
    for (let i = 0; i < n; i += 97) {
      const text = await readFile(join(mirror.path, 'auths', credId(i)), 'utf8').catch(() => '');
      if (canonicalOfText(text) !== canonicalOfText(texts[i]!)) bad++;
    }
    if (files !== n || !hasConfig || bad) throw new Error(`mirror incomplete after pull: ${files}/${n} credentials, config ${hasConfig ? 'present' : 'missing'}, ${bad} spot-checked file(s) wrong`);
    ctx.log(`  credsync pull again (mirror complete: no-op reconcile)`);
    const warm = await runCli(['pull'], env);
    if (warm.code !== 0) throw new Error(`second credsync pull exited ${warm.code}:\n${warm.stderrTail}`);

    return {
      figures: [
        { label: `pull ${n.toLocaleString('en-US')} (empty mirror) wall`, unit: 'ms', value: cold.wallMs, floor: floorSum, floorName: 'sum' },
        { label: `pull ${n.toLocaleString('en-US')} (empty mirror) wall`, unit: 'ms', value: cold.wallMs, floor: copyMs, floorName: 'copy' },
        { label: 'pull peak RSS', unit: 'MiB', value: (cold.maxRssKb ?? NaN) / 1024, floor: nodeRssKb / 1024, floorName: 'node' },
        { label: 'pull again (mirror complete) wall', unit: 'ms', value: warm.wallMs, floor: nodeMs + copyMs + scanMs, floorName: 'node+copy+scan' },
        { label: 'pull again peak RSS', unit: 'MiB', value: (warm.maxRssKb ?? NaN) / 1024, floor: nodeRssKb / 1024, floorName: 'node' },
      ],
      floors: {
        copy: `COPY auth_store TO STDOUT of the ${n} rows through the postgres package's copy stream (median of 3)`,
        files: `${n} durable atomic writes (temp, fsync, rename, directory fsync), ${FLOOR_WRITERS} writers`,
        node: '`node dist/cli.js --version`: process start and module loading (median of 3)',
        sum: 'node + copy + files',
        scan: `read and SHA-256 every one of the ${n} files (${FLOOR_WRITERS} readers): what a no-op reconcile must do locally without remembered stat signatures`,
        'node+copy+scan': 'node + copy + scan',
      },
      details: {
        items: n,
        avgFileBytes: avgBytes,
        copyBytes: copies[0]!.bytes,
        floorMs: { copyMedian: round(copyMs), copyRuns: copies.map((c) => round(c.ms)), psqlCopy: psqlMs === null ? null : round(psqlMs), nodeStart: round(nodeMs), files: round(filesMs), scan: round(scanMs), sum: round(floorSum) },
        nodeStartRssMiB: round(nodeRssKb / 1024, 1),
        coldPull: describe(cold),
        warmPull: describe(warm),
      },
      notes: [
        `floor parts: node start ${nodeMs.toFixed(0)} ms, COPY ${copyMs.toFixed(0)} ms (${(copies[0]!.bytes / 2 ** 20).toFixed(1)} MiB${psqlMs === null ? '' : `; psql incl. start ${psqlMs.toFixed(0)} ms`}), ${n} durable writes ${filesMs.toFixed(0)} ms, read+hash ${n} files ${scanMs.toFixed(0)} ms`,
      ],
    };
  },
};
