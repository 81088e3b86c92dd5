/**
 * `credsync migrate` of 10,000 credentials (and the config), PostgreSQL → directory and directory →
 * PostgreSQL, wall time and peak RSS, each beside the floor of the raw store read/write of the same
 * items (bench/lib/raw-copy.mjs: the same store modules, batch size and parallelism; no validation,
 * no conditional writes, no re-read). Memory bound: the same migration of 1,000 credentials, whose
 * peak RSS should be about the same as for 10,000 (items are streamed in batches of 256).
 */
import { tempDir } from './lib/cleanup.js';
import { credsync, describeRun, dirUrl, emptyPg, mib, populatedPg, rawCopy } from './lib/ops.js';
import type { Bench, BenchContext, BenchOutcome } from './lib/report.js';

export const migrateBench: Bench = {
  name: 'migrate',
  title: 'credsync migrate of 10,000 credentials between PostgreSQL and a directory store',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const n = ctx.quick ? 1000 : Number(process.env.BENCH_OPS_ITEMS ?? 10_000);
    const small = Math.max(100, Math.round(n / 10));
    ctx.log(`  populating PostgreSQL with ${n} and ${small} credentials`);
    const pgSrc = await populatedPg(ctx, n, 'bench_mig_src');
    const pgSmall = await populatedPg(ctx, small, 'bench_mig_small');
    const dir = await tempDir('bench-migrate');

    ctx.log('  floor: raw copy PostgreSQL → directory');
    const floorPgDir = await rawCopy(pgSrc, dirUrl(dir.path, 'floor-dir'));
    ctx.log('  credsync migrate PostgreSQL → directory');
    const pgDir = await credsync(['migrate', '--from', pgSrc, '--to', dirUrl(dir.path, 'mig-dir'), '--json']);
    const pgDirResult = JSON.parse(pgDir.stdout) as { counts: { created: number; verified: number; mismatched: number } };
    if (pgDirResult.counts.created !== n + 1 || pgDirResult.counts.verified !== n + 1) throw new Error(`migrate pg → dir: ${JSON.stringify(pgDirResult.counts)}`);

    ctx.log('  floor: raw copy directory → PostgreSQL');
    const floorDirPg = await rawCopy(dirUrl(dir.path, 'floor-dir'), await emptyPg(ctx, 'bench_mig_floor'));
    ctx.log('  credsync migrate directory → PostgreSQL');
    const dirPg = await credsync(['migrate', '--from', dirUrl(dir.path, 'mig-dir'), '--to', await emptyPg(ctx, 'bench_mig_dst'), '--json']);
    const dirPgResult = JSON.parse(dirPg.stdout) as { counts: { created: number; verified: number } };
    if (dirPgResult.counts.verified !== n + 1) throw new Error(`migrate dir → pg: ${JSON.stringify(dirPgResult.counts)}`);

    ctx.log(`  credsync migrate PostgreSQL → directory of ${small} (memory bound)`);
    const smallRun = await credsync(['migrate', '--from', pgSmall, '--to', dirUrl(dir.path, 'small-dir'), '--json']);
    await dir.remove();
    const k = n.toLocaleString('en-US');
    return {
      figures: [
        { label: `migrate pg → dir ${k} wall`, unit: 'ms', value: pgDir.wallMs, floor: floorPgDir.wallMs, floorName: 'raw pg → dir' },
        { label: `migrate pg → dir ${k} peak RSS`, unit: 'MiB', value: mib(pgDir), floor: mib(floorPgDir), floorName: 'raw pg → dir' },
        { label: `migrate dir → pg ${k} wall`, unit: 'ms', value: dirPg.wallMs, floor: floorDirPg.wallMs, floorName: 'raw dir → pg' },
        { label: `migrate dir → pg ${k} peak RSS`, unit: 'MiB', value: mib(dirPg), floor: mib(floorDirPg), floorName: 'raw dir → pg' },
        { label: `migrate pg → dir ${k} peak RSS vs ${small.toLocaleString('en-US')}`, unit: 'MiB', value: mib(pgDir), floor: mib(smallRun), floorName: `migrate ${small}` },
      ],
      floors: {
        'raw pg → dir': `bench/lib/raw-copy.mjs: list, getMany in batches of 256, unconditional put with 8 writers of the same ${n + 1} items through the same store modules (no validation, no CAS, no re-read)`,
        'raw dir → pg': 'the same, from the directory store (16 parallel gets per batch) into an empty PostgreSQL schema',
        [`migrate ${small}`]: `credsync migrate of ${small} credentials: peak RSS that does not grow with the item count stays near it`,
      },
      details: { items: n, small, pgToDir: describeRun(pgDir), dirToPg: describeRun(dirPg), smallRun: describeRun(smallRun), floorPgToDir: describeRun(floorPgDir), floorDirToPg: describeRun(floorDirPg) },
      notes: ['credsync migrate validates and hashes every item, writes conditionally and re-reads every item from the target to verify it (the floors do none of that)'],
    };
  },
};
