/**
 * S3 cold pull: 10,000 credentials (~1–2 KB of JSON each) and the config in a bucket, an empty mirror:
 * `credsync pull` (what the init container runs) wall time and peak RSS; then the same pull again on
 * the complete mirror (a no-op reconcile: one listing, no GET).
 *
 * Floors, same server, same run:
 * - get: one paginated ListObjectsV2 and a parallel GET of every object (32 in flight, the store's
 *   default) from one client in the bench process — the network part of the job;
 * - list: the paginated listing alone (what the no-op pull needs from the server);
 * - node: `node dist/cli.js --version` (process start and module loading).
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from './lib/cleanup.js';
import { credId, fileText, makeCred, SAMPLE_CONFIG } from './lib/creds.js';
import { runCli, type CliRun } from './lib/daemon.js';
import type { BenchOutcome } from './lib/report.js';
import { median, round } from './lib/stats.js';
import { benchBucket, getMany, listAll, putMany, rawClient, s3Env } from './lib/s3.js';
import type { S3Bench, S3BenchContext } from './s3.js';

const PARALLEL = 32;

function describe(r: CliRun): Record<string, unknown> {
  return { exitCode: r.code, wallMs: round(r.wallMs), maxRssMiB: r.maxRssKb === null ? null : round(r.maxRssKb / 1024, 1), rssSource: r.rssSource, stderrLines: r.stderrLines };
}

export const s3ColdPullBench: S3Bench = {
  name: 's3-coldpull',
  title: 'S3 cold start: credsync pull of 10,000 objects into an empty mirror',
  async run(ctx: S3BenchContext): Promise<BenchOutcome> {
    const n = ctx.quick ? 1000 : Number(process.env.BENCH_COLD_ITEMS ?? 10_000);
    const c = rawClient(ctx.server);
    const bucket = await benchBucket(c, 'bench-cold');
    ctx.log(`  uploading ${n} credentials to ${ctx.server.name}`);
    const items = Array.from({ length: n }, (_, i) => ({ key: `auths/${credId(i)}`, body: fileText(makeCred(i)), contentType: 'application/json' }));
    const u0 = performance.now();
    await putMany(c, bucket, [...items, { key: 'config/config.yaml', body: SAMPLE_CONFIG, contentType: 'application/x-yaml' }], 48);
    const uploadMs = performance.now() - u0;
    const avgBytes = Math.round(items.reduce((s, i) => s + i.body.length, 0) / n);

    ctx.log('  floor: list + parallel GET (3 runs)');
    const listRuns: number[] = [];
    const getRuns: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      const objs = await listAll(c, bucket);
      const t1 = performance.now();
      await getMany(
        c,
        bucket,
        objs.map((o) => o.Key!),
        PARALLEL,
      );
      listRuns.push(t1 - t0);
      getRuns.push(performance.now() - t0);
    }
    const listMs = median(listRuns);
    const getMs = median(getRuns);
    const nodeRuns = [await runCli(['--version'], {}), await runCli(['--version'], {}), await runCli(['--version'], {})];
    const nodeMs = median(nodeRuns.map((r) => r.wallMs));
    const nodeRssKb = median(nodeRuns.map((r) => r.maxRssKb ?? NaN));

    ctx.log('  credsync pull into an empty mirror');
    const mirror = await tempDir('s3cold-mirror');
    const env = s3Env(ctx.server, bucket, mirror.path);
    const cold = await runCli(['pull'], env);
    if (cold.code !== 0) throw new Error(`credsync pull exited ${cold.code}:\n${cold.stderrTail}`);
    const files = (await readdir(join(mirror.path, 'auths'))).filter((f) => f.endsWith('.json')).length;
    if (files !== n) throw new Error(`mirror incomplete after pull: ${files}/${n}`);
    ctx.log('  credsync pull again (mirror complete: no-op reconcile)');
    const warm = await runCli(['pull'], env);
    if (warm.code !== 0) throw new Error(`second credsync pull exited ${warm.code}:\n${warm.stderrTail}`);
    c.destroy();
    return {
      figures: [
        { label: `pull ${n.toLocaleString('en-US')} (empty mirror) wall`, unit: 'ms', value: cold.wallMs, floor: getMs, floorName: 'get' },
        { label: `pull ${n.toLocaleString('en-US')} (empty mirror) wall`, unit: 'ms', value: cold.wallMs, floor: nodeMs + getMs, floorName: 'node+get' },
        { label: 'pull peak RSS', unit: 'MiB', value: (cold.maxRssKb ?? NaN) / 1024, floor: nodeRssKb / 1024, floorName: 'node' },
        { label: 'pull again (mirror complete) wall', unit: 'ms', value: warm.wallMs, floor: nodeMs + listMs, floorName: 'node+list' },
      ],
      floors: {
        get: `ListObjectsV2 (paginated) + GET of all ${n + 1} objects, ${PARALLEL} in flight, one client in the bench process (median of 3)`,
        list: 'the paginated listing alone',
        node: '`node dist/cli.js --version` (median of 3)',
        'node+get': 'node + get',
        'node+list': 'node + list',
      },
      details: {
        server: ctx.server.name,
        items: n,
        avgObjectBytes: avgBytes,
        uploadMs: round(uploadMs),
        floorMs: { list: round(listMs), listRuns: listRuns.map((x) => round(x)), get: round(getMs), getRuns: getRuns.map((x) => round(x)), node: round(nodeMs) },
        coldPull: describe(cold),
        warmPull: describe(warm),
      },
      notes: [`${ctx.server.name}: ${n} objects of ~${avgBytes} bytes; listing ${listMs.toFixed(0)} ms, listing + GETs ${getMs.toFixed(0)} ms, node start ${nodeMs.toFixed(0)} ms`],
    };
  },
};
