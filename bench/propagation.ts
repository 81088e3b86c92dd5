/**
 * Propagation latency: a credential rewritten in daemon A's mirror (atomic rename of a new version, as
 * the proxy does it) → the new content present in daemon B's mirror. Measured from just before A's
 * write to the first check (inotify event or 1 ms poll) that finds the new content on B.
 *
 * Floors, same server, same run:
 * - notify: raw NOTIFY round trip between two plain connections (pg_notify → LISTEN callback);
 * - pipeline: the minimum work the design needs without file watching and debouncing: UPDATE of the
 *   row (credsync's trigger sends the NOTIFY) → listener → SELECT of the row → durable atomic write
 *   (temp, fsync, rename, directory fsync).
 */
import { join } from 'node:path';
import { pgChannelFor } from '../src/stores/postgres/index.js';
import { tempDir } from './lib/cleanup.js';
import { canonical, credId, fileText, makeCred, refreshed, SAMPLE_CONFIG, type Cred } from './lib/creds.js';
import { countJson, durableWrite, FileWaiter, proxyWrite } from './lib/fsx.js';
import { Daemon, histogram, pgEnv, sleep, waitFor } from './lib/daemon.js';
import { client, createStoreSchema, putConfig, quoteIdent, uniqueName, upsertAuths } from './lib/pg.js';
import type { Bench, BenchContext, BenchOutcome, Figure } from './lib/report.js';
import { roundSummary, summarize, type Summary } from './lib/stats.js';

const WARMUP = 5;
/** Pause between updates (plus 0–20 ms jitter): lets both daemons finish their follow-up work (echo checks, state saves). */
const GAP_MS = 40;
const TIMEOUT_MS = 15_000;

interface ScenarioOptions {
  readonly name: string;
  readonly description: string;
  readonly population: number;
  readonly keys: number;
  readonly updates: number;
  readonly debounce?: string;
  /** Extra environment for both daemons (the encryption bench sets its keys here). */
  readonly env?: Record<string, string>;
}

interface ScenarioResult {
  readonly name: string;
  readonly description: string;
  readonly latencyMs: Summary;
  /** From the write on A to A's "push … stored" log line, and to B's "pull … written to mirror" line. */
  readonly aStoredMs: Summary;
  readonly bWrittenMs: Summary;
  /** Daemon-side histograms (means): A from noticing the file change to stored, B from notification to written. */
  readonly daemonPushMeanMs: number;
  readonly daemonPullMeanMs: number;
  readonly daemonPushes: number;
  readonly daemonPulls: number;
  readonly schema: string;
  readonly firstKeyId: string;
  readonly firstCred: Cred;
  readonly exitCodes: Array<number | null>;
}

export async function scenario(ctx: BenchContext, o: ScenarioOptions): Promise<ScenarioResult> {
  const { url } = ctx.pg;
  const schema = uniqueName('bench_prop');
  await createStoreSchema(ctx.admin, url, schema);
  const creds: Cred[] = Array.from({ length: o.population }, (_, i) => makeCred(i));
  await upsertAuths(
    ctx.admin,
    schema,
    creds.map((c, i) => ({ id: credId(i), content: JSON.stringify(c) })),
  );
  await putConfig(ctx.admin, schema, SAMPLE_CONFIG);
  const dirA = await tempDir('prop-a');
  const dirB = await tempDir('prop-b');
  const env = (dir: string): Record<string, string> => ({ ...pgEnv(url, schema, dir), ...(o.debounce ? { CREDSYNC_DEBOUNCE: o.debounce } : {}), ...o.env });
  ctx.log(`  ${o.name}: starting daemons A and B (store of ${o.population})`);
  const [a, b] = await Promise.all([Daemon.start('A', env(dirA.path)), Daemon.start('B', env(dirB.path))]);
  const authsA = join(dirA.path, 'auths');
  const authsB = join(dirB.path, 'auths');
  await waitFor('B mirror complete', async () => (await countJson(authsB)) === o.population, 60_000, 50);
  await waitFor('A mirror complete', async () => (await countJson(authsA)) === o.population, 60_000, 50);
  await Promise.all([a.quiet(500), b.quiet(500)]);

  // Keys spread over the population (round robin).
  const idx = Array.from({ length: o.keys }, (_, k) => Math.floor((k * o.population) / o.keys));
  const waiter = new FileWaiter(authsB);
  const samples: number[] = [];
  // Breakdown from the daemons' own log lines (time the bench received them): A stored, B written.
  const storedAt = new Map<string, number>();
  const writtenAt = new Map<string, number>();
  const stopA = a.onLine((l) => {
    const m = l.msg ? /^push auths\/(.+): stored$/.exec(l.msg) : null;
    if (m) storedAt.set(m[1]!, l.at);
  });
  const stopB = b.onLine((l) => {
    const m = l.msg ? /^pull auths\/(.+): written to mirror$/.exec(l.msg) : null;
    if (m) writtenAt.set(m[1]!, l.at);
  });
  const aStored: number[] = [];
  const bWritten: number[] = [];
  try {
    for (let j = 0; j < WARMUP + o.updates; j++) {
      const i = idx[j % idx.length]!;
      creds[i] = refreshed(creds[i]!, j);
      const text = fileText(creds[i]!);
      const expected = canonical(creds[i]);
      const id = credId(i);
      storedAt.delete(id);
      writtenAt.delete(id);
      const t0 = performance.now();
      await proxyWrite(join(authsA, id), text);
      const t1 = await waiter.waitForContent(join(authsB, id), expected, TIMEOUT_MS).catch((err: Error) => {
        throw new Error(`${err.message}\n--- A ---\n${a.stderrTail}\n--- B ---\n${b.stderrTail}`);
      });
      if (j >= WARMUP) samples.push(t1 - t0);
      await sleep(GAP_MS + Math.random() * 20);
      if (j >= WARMUP && storedAt.has(id) && writtenAt.has(id)) {
        aStored.push(storedAt.get(id)! - t0);
        bWritten.push(writtenAt.get(id)! - t0);
      }
    }
  } finally {
    waiter.close();
    stopA();
    stopB();
  }
  const push = histogram(await a.metrics(), 'credsync_propagation_latency_seconds', 'direction="push"');
  const pull = histogram(await b.metrics(), 'credsync_propagation_latency_seconds', 'direction="pull"');
  const exits = await Promise.all([a.stop(), b.stop()]);
  return {
    name: o.name,
    description: o.description,
    latencyMs: summarize(samples),
    aStoredMs: summarize(aStored),
    bWrittenMs: summarize(bWritten),
    daemonPushMeanMs: push.count ? (push.sum / push.count) * 1000 : NaN,
    daemonPullMeanMs: pull.count ? (pull.sum / pull.count) * 1000 : NaN,
    daemonPushes: push.count,
    daemonPulls: pull.count,
    schema,
    firstKeyId: credId(idx[0]!),
    firstCred: creds[idx[0]!]!,
    exitCodes: exits.map((e) => e.code),
  };
}

/** Raw NOTIFY round trip: pg_notify on one connection → LISTEN callback on another. */
async function notifyFloor(ctx: BenchContext, n: number): Promise<Summary> {
  const sender = client(ctx.pg.url, 'bench-notify-sender');
  const listener = client(ctx.pg.url, 'bench-notify-listener');
  const channel = 'credsync_bench_floor';
  let waiting: { seq: string; resolve: (at: number) => void } | null = null;
  await listener.listen(channel, (payload) => {
    const at = performance.now();
    if (waiting && payload === waiting.seq) {
      const w = waiting;
      waiting = null;
      w.resolve(at);
    }
  });
  const samples: number[] = [];
  for (let i = 0; i < n + 20; i++) {
    const seq = String(i);
    const got = new Promise<number>((resolve) => (waiting = { seq, resolve }));
    const t0 = performance.now();
    const sent = sender.notify(channel, seq);
    const t1 = await got;
    await sent;
    if (i >= 20) samples.push(t1 - t0);
  }
  await sender.end({ timeout: 2 });
  await listener.end({ timeout: 2 });
  return summarize(samples);
}

/**
 * UPDATE (trigger → NOTIFY) → listener → SELECT content → durable atomic write. The schema has
 * credsync's trigger installed (the scenario's daemons did it); no daemon is running any more.
 * Also the floor of the fleet bench.
 */
export async function pipelineFloor(ctx: BenchContext, schema: string, id: string, cred: Cred, n: number): Promise<Summary> {
  const writer = client(ctx.pg.url, 'bench-pipe-writer');
  const reader = client(ctx.pg.url, 'bench-pipe-reader');
  const listener = client(ctx.pg.url, 'bench-pipe-listener');
  const dir = await tempDir('prop-floor');
  const table = `${quoteIdent(schema)}.auth_store`;
  let waiting: ((payload: string) => void) | null = null;
  await listener.listen(pgChannelFor(schema), (payload) => waiting?.(payload));
  const samples: number[] = [];
  let c = cred;
  for (let i = 0; i < n + WARMUP; i++) {
    c = refreshed(c, i);
    const content = JSON.stringify(c);
    const done = new Promise<number>((resolve, reject) => {
      waiting = (payload: string) => {
        let p: { id?: string };
        try {
          p = JSON.parse(payload) as { id?: string };
        } catch {
          return;
        }
        if (p.id !== id) return;
        waiting = null;
        reader
          .unsafe(`SELECT content::text AS c, md5(content::text) AS v FROM ${table} WHERE id = $1`, [id])
          .then((rows) => durableWrite(join(dir.path, id), rows[0]!.c as string))
          .then(() => resolve(performance.now()), reject);
      };
    });
    const t0 = performance.now();
    await writer.unsafe(`UPDATE ${table} SET content = $2::text::jsonb, updated_at = NOW() WHERE id = $1`, [id, content]);
    const t1 = await done;
    if (i >= WARMUP) samples.push(t1 - t0);
    await sleep(2);
  }
  await Promise.all([writer.end({ timeout: 2 }), reader.end({ timeout: 2 }), listener.end({ timeout: 2 })]);
  await dir.remove();
  return summarize(samples);
}

function latencyFigures(prefix: string, s: Summary, floor: Summary, floorName: string): Figure[] {
  return [
    { label: `${prefix} p50`, unit: 'ms', value: s.p50, floor: floor.p50, floorName },
    { label: `${prefix} p95`, unit: 'ms', value: s.p95, floor: floor.p95, floorName },
    { label: `${prefix} p99`, unit: 'ms', value: s.p99, floor: floor.p99, floorName },
    { label: `${prefix} max`, unit: 'ms', value: s.max, floor: floor.max, floorName },
  ];
}

export const propagationBench: Bench = {
  name: 'propagation',
  title: 'Propagation latency: file rewritten on A → new content on B',
  async run(ctx: BenchContext): Promise<BenchOutcome> {
    const updates = ctx.quick ? 30 : Number(process.env.BENCH_PROP_UPDATES ?? 200);
    ctx.log('  floor: raw NOTIFY round trip');
    const notify = await notifyFloor(ctx, ctx.quick ? 200 : 1000);

    const single = await scenario(ctx, {
      name: 'one-key',
      description: `${updates} sequential updates of one credential, store of 1 credential + config, default debounce (25 ms)`,
      population: 1,
      keys: 1,
      updates,
    });
    ctx.log('  floor: raw pipeline (UPDATE → NOTIFY → SELECT → durable write)');
    const pipeline = await pipelineFloor(ctx, single.schema, single.firstKeyId, single.firstCred, ctx.quick ? 30 : updates);
    const many = await scenario(ctx, {
      name: 'five-keys-1000',
      description: `${updates} sequential updates round-robin over 5 credentials, store of 1,000 credentials + config, default debounce`,
      population: ctx.quick ? 200 : 1000,
      keys: 5,
      updates,
    });
    const nodebounce = await scenario(ctx, {
      name: 'one-key-debounce-0',
      description: `${updates} sequential updates of one credential, CREDSYNC_DEBOUNCE=0ms (isolates the debounce's share)`,
      population: 1,
      keys: 1,
      updates,
      debounce: '0ms',
    });

    const figures: Figure[] = [
      ...latencyFigures('1 key', single.latencyMs, notify, 'notify'),
      { label: '1 key p50', unit: 'ms', value: single.latencyMs.p50, floor: pipeline.p50, floorName: 'pipeline' },
      { label: '1 key p99', unit: 'ms', value: single.latencyMs.p99, floor: pipeline.p99, floorName: 'pipeline' },
      ...latencyFigures('5 keys, store of 1,000', many.latencyMs, notify, 'notify'),
      ...latencyFigures('1 key, debounce 0', nodebounce.latencyMs, notify, 'notify'),
    ];
    const scen = (s: ScenarioResult): Record<string, unknown> => ({
      description: s.description,
      latencyMs: roundSummary(s.latencyMs),
      logBreakdownMs: { writeToStoredOnA: roundSummary(s.aStoredMs), writeToWrittenOnB: roundSummary(s.bWrittenMs) },
      daemonHistogramMeansMs: { pushOnA: Number(s.daemonPushMeanMs.toFixed(3)), pullOnB: Number(s.daemonPullMeanMs.toFixed(3)), pushes: s.daemonPushes, pulls: s.daemonPulls },
      daemonExitCodes: s.exitCodes,
    });
    return {
      figures,
      floors: {
        notify: 'raw NOTIFY round trip between two plain connections on the same server (pg_notify → LISTEN callback)',
        pipeline: "raw UPDATE of the row (credsync's trigger NOTIFYs) → LISTEN callback → SELECT content → temp+fsync+rename+dir fsync, in one process",
      },
      details: {
        updatesPerScenario: updates,
        warmupUpdates: WARMUP,
        gapBetweenUpdatesMs: `${GAP_MS}–${GAP_MS + 20}`,
        floorNotifyMs: roundSummary(notify),
        floorPipelineMs: roundSummary(pipeline),
        scenarios: { [single.name]: scen(single), [many.name]: scen(many), [nodebounce.name]: scen(nodebounce) },
      },
      notes: [
        ...[single, many, nodebounce].map(
          (s) =>
            `${s.name}: p50 from A's write to A's "stored" log ${s.aStoredMs.p50.toFixed(1)} ms, to B's "written" log ${s.bWrittenMs.p50.toFixed(1)} ms, to the bench seeing it on B ${s.latencyMs.p50.toFixed(1)} ms`,
        ),
        `daemon-side means (credsync_propagation_latency_seconds): one-key push on A ${single.daemonPushMeanMs.toFixed(2)} ms (after the debounce), pull on B ${single.daemonPullMeanMs.toFixed(2)} ms; store of 1,000: push ${many.daemonPushMeanMs.toFixed(2)} ms, pull ${many.daemonPullMeanMs.toFixed(2)} ms`,
      ],
    };
  },
};
