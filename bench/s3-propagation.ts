/**
 * S3 propagation: a credential rewritten in daemon A's mirror (atomic rename, as the proxy does it) →
 * the new content in daemon B's mirror, both daemons on one bucket at the default poll interval (1 s).
 * Samples start at random moments (0–1 s apart), so the poll phase is uniformly spread.
 *
 * Floor, same server, same run, same poll interval and jitter: the raw pipeline the design needs —
 * PutObject of the credential and of the generation object by one client; another client polling the
 * generation object with a conditional GET, and on a change GETting the credential. Plus the raw round
 * trip without any poll wait (PUT, then GET at once) for scale.
 */
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { tempDir } from './lib/cleanup.js';
import { canonical, credId, fileText, makeCred, refreshed, SAMPLE_CONFIG, type Cred } from './lib/creds.js';
import { countJson, FileWaiter, proxyWrite } from './lib/fsx.js';
import { Daemon, sleep, waitFor } from './lib/daemon.js';
import type { BenchOutcome, Figure } from './lib/report.js';
import { roundSummary, summarize } from './lib/stats.js';
import { benchBucket, putMany, rawClient, s3Env, type S3TestServer } from './lib/s3.js';
import type { S3Bench, S3BenchContext } from './s3.js';

const POLL_MS = 1000;
const POPULATION = 100;

/** The floor: raw PUT → poll (conditional GET of the generation, jittered 1 s) → GET. */
async function rawFloor(srv: S3TestServer, bucket: string, samples: number): Promise<{ pipeline: number[]; roundTrip: number[] }> {
  const writer = rawClient(srv);
  const reader = rawClient(srv);
  const genKey = '.credsync/generation';
  const key = 'auths/floor.json';
  const put = (Key: string, body: string): Promise<unknown> => writer.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Buffer.from(body), ContentType: 'application/json' }));
  await put(genKey, 'g0');
  let genEtag = (await reader.send(new GetObjectCommand({ Bucket: bucket, Key: genKey }))).ETag!;
  let stopped = false;
  const state: { waiting: { expect: string; resolve: (at: number) => void } | null } = { waiting: null };
  // The reader: the same loop credsync's poller runs (one conditional GET per jittered interval).
  const loop = (async () => {
    while (!stopped) {
      const started = performance.now();
      try {
        const r = await reader.send(new GetObjectCommand({ Bucket: bucket, Key: genKey, IfNoneMatch: genEtag }));
        await r.Body!.transformToByteArray();
        genEtag = r.ETag!;
        const o = await reader.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        const body = Buffer.from(await o.Body!.transformToByteArray()).toString();
        const w = state.waiting;
        if (w && body === w.expect) {
          w.resolve(performance.now());
          state.waiting = null;
        }
      } catch (err) {
        if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 304) throw err;
      }
      await sleep(Math.max(0, started + POLL_MS * (0.9 + Math.random() * 0.2) - performance.now()));
    }
  })();
  const pipeline: number[] = [];
  const roundTrip: number[] = [];
  for (let i = 0; i < samples; i++) {
    await sleep(Math.random() * POLL_MS);
    const body = `{"n":${i},"pad":"${'x'.repeat(1200)}"}`;
    const arrived = new Promise<number>((resolve) => (state.waiting = { expect: body, resolve }));
    const t0 = performance.now();
    await put(key, body);
    await put(genKey, `g${i + 1}`);
    pipeline.push((await arrived) - t0);
    // no poll wait: PUT then GET at once
    const t1 = performance.now();
    await put('auths/rt.json', body);
    const o = await reader.send(new GetObjectCommand({ Bucket: bucket, Key: 'auths/rt.json' }));
    await o.Body!.transformToByteArray();
    roundTrip.push(performance.now() - t1);
  }
  stopped = true;
  await loop;
  writer.destroy();
  reader.destroy();
  return { pipeline, roundTrip };
}

export const s3PropagationBench: S3Bench = {
  name: 's3-propagation',
  title: 'S3 propagation A → B at the default 1 s poll interval',
  async run(ctx: S3BenchContext): Promise<BenchOutcome> {
    const samples = ctx.quick ? 10 : Number(process.env.BENCH_S3_PROP_SAMPLES ?? 60);
    const c = rawClient(ctx.server);
    const bucket = await benchBucket(c, 'bench-prop');
    const creds: Cred[] = Array.from({ length: POPULATION }, (_, i) => makeCred(i));
    await putMany(c, bucket, [
      ...creds.map((cr, i) => ({ key: `auths/${credId(i)}`, body: fileText(cr), contentType: 'application/json' })),
      { key: 'config/config.yaml', body: SAMPLE_CONFIG, contentType: 'application/x-yaml' },
    ]);
    const dirA = await tempDir('s3prop-a');
    const dirB = await tempDir('s3prop-b');
    ctx.log(`  starting daemons A and B on ${ctx.server.name} (bucket of ${POPULATION})`);
    const [a, b] = await Promise.all([Daemon.start('A', s3Env(ctx.server, bucket, dirA.path)), Daemon.start('B', s3Env(ctx.server, bucket, dirB.path))]);
    const authsB = join(dirB.path, 'auths');
    await waitFor('B mirror complete', async () => (await countJson(authsB)) === POPULATION, 60_000, 50);
    await Promise.all([a.quiet(1500), b.quiet(1500)]);
    const waiter = new FileWaiter(authsB);
    const latency: number[] = [];
    for (let i = 0; i < samples; i++) {
      await sleep(Math.random() * POLL_MS + 200);
      const k = (i * 7) % POPULATION;
      creds[k] = refreshed(creds[k]!, i + 1);
      const arrived = waiter.waitForContent(join(authsB, credId(k)), canonical(creds[k]), 15_000);
      const t0 = performance.now();
      await proxyWrite(join(dirA.path, 'auths', credId(k)), fileText(creds[k]!));
      latency.push((await arrived) - t0);
    }
    waiter.close();
    await Promise.all([a.stop(), b.stop()]);
    ctx.log(`  raw floor: PUT → poll → GET, ${samples} samples`);
    const floor = await rawFloor(ctx.server, bucket, samples);
    c.destroy();
    const s = summarize(latency);
    const f = summarize(floor.pipeline);
    const rt = summarize(floor.roundTrip);
    const figures: Figure[] = [
      { label: 'A → B p50', unit: 'ms', value: s.p50, floor: f.p50, floorName: 'raw-poll' },
      { label: 'A → B p95', unit: 'ms', value: s.p95, floor: f.p95, floorName: 'raw-poll' },
      { label: 'A → B p99', unit: 'ms', value: s.p99, floor: f.p99, floorName: 'raw-poll' },
      { label: 'A → B max', unit: 'ms', value: s.max, floor: f.max, floorName: 'raw-poll' },
      { label: 'raw PUT → GET (no poll wait) p50', unit: 'ms', value: rt.p50 },
    ];
    return {
      figures,
      floors: { 'raw-poll': 'PutObject + generation PutObject by one client; another polls the generation (conditional GET, 1 s ± 10 %) and GETs the object on a change' },
      details: { server: ctx.server.name, samples, population: POPULATION, latencyMs: roundSummary(s), floorMs: roundSummary(f), rawRoundTripMs: roundSummary(rt) },
      notes: [`${ctx.server.name}: half a poll interval on average is the price of polling; the rest is debounce (25 ms), the write, the generation bump (15 ms coalescing), a listing and a GET`],
    };
  },
};
