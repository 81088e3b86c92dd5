/**
 * `credsync backup` of 10,000 credentials from PostgreSQL into a tar.gz and `credsync restore` of it
 * into an empty PostgreSQL schema, wall time and peak RSS, each beside the floor of the raw store
 * read/write of the same items (bench/lib/raw-copy.mjs): raw read of every item into one file, and a
 * raw copy of the same items from a directory store into an empty schema.
 */
import { join } from 'node:path';
import { stat } from 'node:fs/promises';
import { tempDir } from './lib/cleanup.js';
import { credsync, describeRun, dirUrl, emptyPg, mib, populatedPg, rawCopy, rawRead } from './lib/ops.js';
import type { Bench, BenchContext, BenchOutcome } from './lib/report.js';

export const backupBench: Bench = {
  name: 'backup',
  title: 'credsync backup and restore of 10,000 credentials (PostgreSQL)',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const n = ctx.quick ? 1000 : Number(process.env.BENCH_OPS_ITEMS ?? 10_000);
    ctx.log(`  populating PostgreSQL with ${n} credentials`);
    const src = await populatedPg(ctx, n, 'bench_bak_src');
    const dir = await tempDir('bench-backup');
    const archive = join(dir.path, 'backup.tar.gz');

    ctx.log('  floor: raw read of every item into one file');
    const floorRead = await rawRead(src, join(dir.path, 'raw.bin'));
    ctx.log('  credsync backup');
    const backup = await credsync(['backup', '--from', src, '--out', archive, '--json']);
    const archiveBytes = (await stat(archive)).size;

    ctx.log('  floor: raw copy of the same items from a directory store into an empty schema');
    await rawCopy(src, dirUrl(dir.path, 'items'));
    const floorWrite = await rawCopy(dirUrl(dir.path, 'items'), await emptyPg(ctx, 'bench_bak_floor'));
    ctx.log('  credsync restore into an empty schema');
    const restore = await credsync(['restore', '--in', archive, '--to', await emptyPg(ctx, 'bench_bak_dst'), '--json']);
    const r = JSON.parse(restore.stdout) as { counts: { created: number; verified: number } };
    if (r.counts.created !== n + 1 || r.counts.verified !== n + 1) throw new Error(`restore: ${JSON.stringify(r.counts)}`);
    await dir.remove();
    const k = n.toLocaleString('en-US');
    return {
      figures: [
        { label: `backup ${k} wall`, unit: 'ms', value: backup.wallMs, floor: floorRead.wallMs, floorName: 'raw read' },
        { label: `backup ${k} peak RSS`, unit: 'MiB', value: mib(backup), floor: mib(floorRead), floorName: 'raw read' },
        { label: `restore ${k} wall`, unit: 'ms', value: restore.wallMs, floor: floorWrite.wallMs, floorName: 'raw write' },
        { label: `restore ${k} peak RSS`, unit: 'MiB', value: mib(restore), floor: mib(floorWrite), floorName: 'raw write' },
      ],
      floors: {
        'raw read': `bench/lib/raw-copy.mjs read: list and getMany in batches of 256 of the same ${n + 1} items, bytes appended to one file, fsynced`,
        'raw write': `bench/lib/raw-copy.mjs copy from a directory store holding the same ${n + 1} items into an empty schema (16 parallel gets, 8 unconditional puts)`,
      },
      details: { items: n, archiveBytes, backup: describeRun(backup), restore: describeRun(restore), floorRead: describeRun(floorRead), floorWrite: describeRun(floorWrite) },
      notes: ['backup parks items in a spool file and writes the archive through gzip; restore reads the archive twice (verification, then writing) and re-reads every item from the store'],
    };
  },
};
