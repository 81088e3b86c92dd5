/**
 * S3 idle cost: one daemon with a synced mirror of 100 credentials, nothing changing, at the defaults
 * (OBJECTSTORE_POLL_INTERVAL 1 s, CREDSYNC_RECONCILE_INTERVAL 60 s). Every request it sends goes
 * through a counting proxy in front of the server: requests per minute by kind, and what a month of
 * them costs on AWS S3 Standard (GET $0.0004 and LIST $0.005 per 1,000 requests). Also the daemon's
 * CPU time while idle.
 *
 * Floor: what the design needs — one GET of the generation object per poll interval and one listing
 * per reconcile interval.
 */
import { tempDir } from './lib/cleanup.js';
import { credId, fileText, makeCred, SAMPLE_CONFIG } from './lib/creds.js';
import { cpuMs, Daemon, sleep } from './lib/daemon.js';
import type { BenchOutcome } from './lib/report.js';
import { round } from './lib/stats.js';
import { MINUTES_PER_MONTH, PRICE, benchBucket, putMany, rawClient, s3Env, startS3Proxy } from './lib/s3.js';
import type { S3Bench, S3BenchContext } from './s3.js';

const POLL_MS = 1000;
const RECONCILE_MS = 60_000;

export const s3IdleBench: S3Bench = {
  name: 's3-idle',
  title: 'S3 idle daemon: requests per minute and monthly request cost at the defaults',
  async run(ctx: S3BenchContext): Promise<BenchOutcome> {
    const windowMs = ctx.quick ? 15_000 : Number(process.env.BENCH_S3_IDLE_MS ?? 125_000);
    const c = rawClient(ctx.server);
    const bucket = await benchBucket(c, 'bench-idle');
    await putMany(c, bucket, [
      ...Array.from({ length: 100 }, (_, i) => ({ key: `auths/${credId(i)}`, body: fileText(makeCred(i)), contentType: 'application/json' })),
      { key: 'config/config.yaml', body: SAMPLE_CONFIG, contentType: 'application/x-yaml' },
    ]);
    c.destroy();
    const proxy = await startS3Proxy(ctx.server.endpoint);
    const dir = await tempDir('s3idle');
    // The defaults: no OBJECTSTORE_POLL_INTERVAL, no CREDSYNC_RECONCILE_INTERVAL.
    const d = await Daemon.start('idle', s3Env({ ...ctx.server, endpoint: proxy.endpoint }, bucket, dir.path));
    await d.quiet(2000);
    proxy.reset();
    const cpu0 = await cpuMs(d.pid);
    const t0 = performance.now();
    ctx.log(`  measuring for ${(windowMs / 1000).toFixed(0)} s`);
    await sleep(windowMs);
    const elapsed = performance.now() - t0;
    const cpu1 = await cpuMs(d.pid);
    const reqs = [...proxy.requests];
    await d.stop();
    await proxy.close();
    const minutes = elapsed / 60_000;
    const isList = (r: (typeof reqs)[number]): boolean => r.method === 'GET' && /[?&]list-type=2/.test(r.query);
    const lists = reqs.filter(isList).length;
    const gens = reqs.filter((r) => r.method === 'GET' && r.path.endsWith('/.credsync/generation')).length;
    const other = reqs.length - lists - gens;
    const perMin = { total: reqs.length / minutes, generationGet: gens / minutes, list: lists / minutes, other: other / minutes };
    const monthly = { get: perMin.generationGet * MINUTES_PER_MONTH, list: perMin.list * MINUTES_PER_MONTH };
    const cost = (monthly.get / 1000) * PRICE.getPer1000 + (monthly.list / 1000) * PRICE.listPer1000;
    const floorPerMin = 60_000 / POLL_MS + 60_000 / RECONCILE_MS;
    const floorCost = ((MINUTES_PER_MONTH * 60_000) / POLL_MS / 1000) * PRICE.getPer1000 + ((MINUTES_PER_MONTH * 60_000) / RECONCILE_MS / 1000) * PRICE.listPer1000;
    return {
      figures: [
        { label: 'requests per minute (idle)', unit: '/min', value: perMin.total, floor: floorPerMin, floorName: 'design' },
        { label: 'generation GETs per minute', unit: '/min', value: perMin.generationGet, floor: 60_000 / POLL_MS, floorName: 'design' },
        { label: 'listings per minute', unit: '/min', value: perMin.list, floor: 60_000 / RECONCILE_MS, floorName: 'design' },
        { label: 'request cost per month (AWS S3)', unit: '$', value: cost, floor: floorCost, floorName: 'design' },
        { label: 'daemon CPU while idle', unit: 'ms/min', value: cpu0 !== null && cpu1 !== null ? (cpu1 - cpu0) / minutes : NaN },
      ],
      floors: { design: `one conditional GET of the generation object per poll interval (${POLL_MS} ms) + one ListObjectsV2 per reconcile interval (${RECONCILE_MS / 1000} s)` },
      details: {
        server: ctx.server.name,
        windowMs: round(elapsed),
        requests: reqs.length,
        byKind: { generationGet: gens, list: lists, other },
        statuses: Object.fromEntries([...new Set(reqs.map((r) => r.status))].map((s) => [String(s), reqs.filter((r) => r.status === s).length])),
        perMinute: Object.fromEntries(Object.entries(perMin).map(([k, v]) => [k, round(v, 2)])),
        perMonth: { get: Math.round(monthly.get), list: Math.round(monthly.list) },
        costPerMonthUsd: round(cost, 3),
        prices: PRICE,
      },
      notes: [
        `${ctx.server.name}: ${reqs.length} requests in ${(elapsed / 1000).toFixed(1)} s (${gens} generation GETs, ${lists} listings, ${other} other); ` +
          `a month at this rate: ${Math.round(monthly.get).toLocaleString('en-US')} GET + ${Math.round(monthly.list).toLocaleString('en-US')} LIST = $${cost.toFixed(2)} per instance`,
      ],
    };
  },
};
