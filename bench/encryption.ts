/**
 * Encryption at rest: what it costs, measured against the same job without encryption in the same run
 * (same server, same data, alternating order). The floor of each figure is its encryption-off twin.
 *
 * - propagation p50/p99: the `one-key` propagation scenario (A's mirror → B's mirror) with both daemons
 *   sealing and opening (CREDSYNC_ENCRYPTION_KEYS set) vs without;
 * - cold pull: `credsync pull` of 10,000 credentials into an empty mirror from a store whose rows are
 *   envelopes (sealed beforehand by `credsync rewrap`) vs the same rows in plaintext; two runs each,
 *   alternating, median reported.
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from './lib/cleanup.js';
import { credId, makeCred, SAMPLE_CONFIG } from './lib/creds.js';
import { pgEnv, runCli } from './lib/daemon.js';
import { createStoreSchema, putConfig, quoteIdent, uniqueName, upsertAuths } from './lib/pg.js';
import type { Bench, BenchContext, BenchOutcome } from './lib/report.js';
import { median, round, roundSummary } from './lib/stats.js';
import { scenario } from './propagation.js';

const KEYS = `bench:${randomBytes(32).toString('base64')}`;

async function populate(ctx: BenchContext, schema: string, n: number): Promise<void> {
  await createStoreSchema(ctx.admin, ctx.pg.url, schema);
  for (let i = 0; i < n; i += 1000) {
    const part = Array.from({ length: Math.min(1000, n - i) }, (_, k) => makeCred(i + k));
    await upsertAuths(
      ctx.admin,
      schema,
      part.map((c, k) => ({ id: credId(i + k), content: JSON.stringify(c) })),
    );
  }
  await putConfig(ctx.admin, schema, SAMPLE_CONFIG);
}

async function coldPull(ctx: BenchContext, schema: string, n: number, extra: Record<string, string>): Promise<number> {
  const mirror = await tempDir('enc-cold');
  try {
    const r = await runCli(['pull'], { ...pgEnv(ctx.pg.url, schema, mirror.path), ...extra });
    if (r.code !== 0) throw new Error(`credsync pull exited ${r.code}:\n${r.stderrTail}`);
    const files = (await readdir(join(mirror.path, 'auths'))).filter((f) => f.endsWith('.json')).length;
    if (files !== n) throw new Error(`pull wrote ${files}/${n} credentials`);
    return r.wallMs;
  } finally {
    await mirror.remove();
  }
}

export const encryptionBench: Bench = {
  name: 'encryption',
  title: 'Encryption at rest: propagation and cold pull with encryption on vs off (same run)',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const updates = ctx.quick ? 40 : 150;
    const n = ctx.quick ? 1000 : Number(process.env.BENCH_COLD_ITEMS ?? 10_000);
    const base = { description: '1 credential, default debounce', population: 1, keys: 1, updates };
    ctx.log(`  propagation, encryption off`);
    const off = await scenario(ctx, { ...base, name: 'off' });
    ctx.log(`  propagation, encryption on`);
    const on = await scenario(ctx, { ...base, name: 'on', env: { CREDSYNC_ENCRYPTION_KEYS: KEYS } });

    ctx.log(`  cold pull: populating two schemas with ${n} credentials; sealing one with credsync rewrap`);
    const plainSchema = uniqueName('bench_enc_plain');
    const sealedSchema = uniqueName('bench_enc_sealed');
    await populate(ctx, plainSchema, n);
    await populate(ctx, sealedSchema, n);
    const rw = await runCli(['rewrap'], { PGSTORE_DSN: ctx.pg.url, PGSTORE_SCHEMA: sealedSchema, CREDSYNC_ENCRYPTION_KEYS: KEYS });
    if (rw.code !== 0) throw new Error(`rewrap exited ${rw.code}:\n${rw.stderrTail}`);
    const sealedRows = await ctx.admin.unsafe(`SELECT count(*)::int AS n FROM ${quoteIdent(sealedSchema)}.auth_store WHERE content ? '$credsync'`);
    if ((sealedRows[0]!.n as number) !== n) throw new Error(`rewrap sealed ${String(sealedRows[0]!.n)}/${n} rows`);
    await ctx.admin.unsafe(`VACUUM ANALYZE ${quoteIdent(plainSchema)}.auth_store`);
    await ctx.admin.unsafe(`VACUUM ANALYZE ${quoteIdent(sealedSchema)}.auth_store`);
    const offRuns: number[] = [];
    const onRuns: number[] = [];
    for (let i = 0; i < 2; i++) {
      ctx.log(`  cold pull ${i + 1}/2: off, then on`);
      offRuns.push(await coldPull(ctx, plainSchema, n, {}));
      onRuns.push(await coldPull(ctx, sealedSchema, n, { CREDSYNC_ENCRYPTION_KEYS: KEYS }));
    }
    const offMs = median(offRuns);
    const onMs = median(onRuns);
    const count = n.toLocaleString('en-US');
    return {
      figures: [
        { label: 'propagation p50, encryption on', unit: 'ms', value: on.latencyMs.p50, floor: off.latencyMs.p50, floorName: 'off' },
        { label: 'propagation p99, encryption on', unit: 'ms', value: on.latencyMs.p99, floor: off.latencyMs.p99, floorName: 'off' },
        { label: `cold pull ${count}, encryption on`, unit: 'ms', value: onMs, floor: offMs, floorName: 'off' },
      ],
      floors: { off: 'the same job with encryption off, same run, same server (propagation: same scenario; cold pull: the same rows in plaintext, runs alternating)' },
      details: {
        updates,
        items: n,
        propagation: { off: roundSummary(off.latencyMs), on: roundSummary(on.latencyMs) },
        coldPullMs: { off: offRuns.map((x) => round(x)), on: onRuns.map((x) => round(x)) },
        schemas: [plainSchema, sealedSchema],
      },
      notes: [`cold pull runs (ms): off ${offRuns.map((x) => x.toFixed(0)).join(', ')}; on ${onRuns.map((x) => x.toFixed(0)).join(', ')}`],
    };
  },
};
