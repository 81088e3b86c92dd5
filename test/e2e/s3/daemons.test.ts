/**
 * Real `credsync run` daemons (dist/cli.js) on one S3 bucket, configured as CLIProxyAPI is
 * (OBJECTSTORE_*), against every S3 server of the global setup (s3rver always; Swift and RGW when
 * their variables are set — in CI they must be). Each describe uses a bucket that does not exist yet:
 * the daemons create it.
 *
 * What a user of several proxy pods would notice: propagation within the poll interval + 500 ms, no
 * echo, a restart with an empty mirror that pulls everything and deletes nothing, simultaneous edits
 * (one winner by last_refresh and the loser kept where the server enforces conditional writes; the
 * race documented where it does not), a foreign PutObject without a generation bump arriving within
 * one reconcile interval, the request count of an idle daemon, and configuration errors (exit 2).
 */
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import { rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { processGroup, type Daemon } from '../../support/daemon.js';
import { tempDir } from '../../support/tmp.js';
import { sleep, waitFor } from '../../support/wait.js';
import { emptyPrefix, getRaw, headRaw, putRaw, rawClient, uniqueName } from '../../support/s3-server.js';
import { startS3Proxy, type S3Proxy } from '../../support/s3-proxy.js';
import {
  authPath,
  bucketState,
  conflictFiles,
  cred,
  exists,
  fileSig,
  logged,
  readJson,
  s3Env,
  stats,
  stderrTails,
  waitGone,
  waitJson,
  writeAuth,
  writeConfig,
} from './helpers.js';

const servers = inject('s3Servers');
const missing = inject('s3Missing');
if (missing.length) console.warn(`[e2e/s3] not run against: ${missing.join('; ')}`);

/** The default poll interval (OBJECTSTORE_POLL_INTERVAL unset) and the propagation bound the issue sets. */
const POLL_MS = 1000;
const PROPAGATION_BOUND_MS = POLL_MS + 500;

function dumpOnFailure(daemons: () => Array<Daemon | undefined>): void {
  onTestFailed(() => {
    console.error(stderrTails(daemons()));
  });
}

for (const srv of servers) {
  describe(`credsync daemons on one S3 bucket (${srv.name})`, () => {
    const raw = rawClient(srv);
    afterAll(() => raw.destroy());

    // ------------------------------------------------------------------ a pair on a new bucket

    describe('two daemons, one bucket they create', () => {
      const g = processGroup('all');
      const bucket = uniqueName(`e2e-${srv.kind}`);
      let root: { path: string; remove(): Promise<void> };
      let A: Daemon, B: Daemon;
      let a: string, b: string;
      const RECONCILE_MS = 4000;
      const env = (mirror: string): Record<string, string> => s3Env(srv, bucket, mirror, { CREDSYNC_RECONCILE_INTERVAL: `${RECONCILE_MS}ms` });
      const latency = { create: [] as number[], edit: [] as number[], delete: [] as number[] };

      beforeAll(async () => {
        root = await tempDir('credsync-s3e2e-');
        a = join(root.path, 'a');
        b = join(root.path, 'b');
        const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
        expect(await raw.send(new ListObjectsV2Command({ Bucket: bucket })).then(() => 'exists', (e: Error) => e.name), 'the bucket does not exist yet').toBe('NoSuchBucket');
        [A, B] = await Promise.all([g.start({ env: env(a), name: 'A' }), g.start({ env: env(b), name: 'B' })]);
      });
      afterAll(async () => {
        console.info(`[e2e/s3 ${srv.name}] propagation A↔B at the default 1 s poll interval:\n` + Object.entries(latency).map(([k, v]) => `  ${k}: ${stats(v)}`).join('\n'));
        await g.killAll();
        await emptyPrefix(raw, bucket);
        await raw.send(new (await import('@aws-sdk/client-s3')).DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
        await root?.remove();
      });

      it('OBJECTSTORE_* selects the S3 store, and the missing bucket is created', async () => {
        dumpOnFailure(() => [A, B]);
        const created = [A, B].flatMap((d) => logged(d, /bucket .* did not exist; created it/));
        expect(created.length, 'one of the daemons created the bucket').toBeGreaterThanOrEqual(1);
        for (const d of [A, B]) expect(logged(d, /^run: store s3:\/\/.* \(from OBJECTSTORE_ENDPOINT\)/)).toHaveLength(1);
        const status = JSON.parse((await A.get('/status')).body) as { capabilities: { cas: string; watch: string; pollIntervalMs: number } };
        expect(status.capabilities).toMatchObject({ watch: 'poll', pollIntervalMs: POLL_MS, cas: srv.kind === 'rgw' ? 'enforced' : srv.kind === 'custom' ? status.capabilities.cas : 'checked' });
        if (status.capabilities.cas === 'checked') {
          for (const d of [A, B]) expect(logged(d, /conditional writes are NOT enforced by this server/), `${d.name} says so in its log`).toHaveLength(1);
        }
        const metrics = (await A.get('/metrics')).body;
        expect(metrics).toMatch(new RegExp(`^credsync_store_cas_enforced ${status.capabilities.cas === 'enforced' ? 1 : 0}$`, 'm'));
      });

      it(`create, edit and delete propagate within the poll interval + 500 ms (${PROPAGATION_BOUND_MS} ms), at CLIProxyAPI's object keys`, async () => {
        dumpOnFailure(() => [A, B]);
        const ids = ['claude-one@example.com.json', 'gemini-two@example.com.json', 'team/three.json'];
        for (const id of ids) {
          const v = cred(id);
          const t0 = Date.now();
          await writeAuth(a, id, v);
          const ms = await waitJson(authPath(b, id), v, 5000, t0);
          latency.create.push(ms);
          expect(ms, `create ${id} A → B (ms)`).toBeLessThan(PROPAGATION_BOUND_MS);
        }
        await writeConfig(b, 'port: 8317\nauth-dir: ./auths\n');
        await waitFor('config on A', async () => exists(join(a, 'config', 'config.yaml')), 5000);
        for (const [i, id] of ids.entries()) {
          const v = cred(id, { access_token: `at-edited-${i}`, last_refresh: `2025-02-0${i + 1}T00:00:00Z` });
          const [from, to] = i % 2 ? [a, b] : [b, a];
          await sleep(50);
          const t0 = Date.now();
          await writeAuth(from, id, v);
          const ms = await waitJson(authPath(to, id), v, 5000, t0);
          latency.edit.push(ms);
          expect(ms, `edit ${id} (ms)`).toBeLessThan(PROPAGATION_BOUND_MS);
        }
        const t0 = Date.now();
        await unlink(authPath(a, 'gemini-two@example.com.json'));
        const ms = await waitGone(authPath(b, 'gemini-two@example.com.json'), 5000, t0);
        latency.delete.push(ms);
        expect(ms, 'delete A → B (ms)').toBeLessThan(PROPAGATION_BOUND_MS);

        // The bucket holds exactly CLIProxyAPI's objects (plus credsync's generation object).
        const objs = await bucketState(raw, bucket);
        expect([...objs.keys()].sort()).toEqual(['.credsync/generation', 'auths/claude-one@example.com.json', 'auths/team/three.json', 'config/config.yaml']);
        expect(objs.get('config/config.yaml')!.contentType).toBe('application/x-yaml');
        expect(objs.get('auths/team/three.json')!.contentType).toBe('application/json');
        expect(JSON.parse((await getRaw(raw, bucket, 'auths/team/three.json'))!.body.toString())).toEqual(await readJson(authPath(a, 'team/three.json')));
        for (const d of [A, B]) expect(logged(d, /^conflict /), `${d.name} conflicts`).toEqual([]);
      });

      it('no echo: once synced, nothing is rewritten — in the bucket or in either mirror — across a periodic reconcile', async () => {
        dumpOnFailure(() => [A, B]);
        const v = cred('quiet.json', { access_token: 'at-quiet' });
        await writeAuth(a, 'quiet.json', v);
        await waitJson(authPath(b, 'quiet.json'), v, 5000);
        await sleep(1500); // every poll has seen the last bump
        const before = await bucketState(raw, bucket);
        const files = await Promise.all([a, b].map((m) => fileSig(authPath(m, 'quiet.json'))));
        const since = Date.now();
        await sleep(RECONCILE_MS + 1500); // a full reconcile of each daemon happens meanwhile
        expect(await bucketState(raw, bucket), 'objects (ETag, Last-Modified) after a quiet period').toEqual(before);
        expect(await Promise.all([a, b].map((m) => fileSig(authPath(m, 'quiet.json'))))).toEqual(files);
        for (const d of [A, B]) expect(logged(d, /^(push|pull|delete|conflict) /, since), `${d.name} acted while nothing changed`).toEqual([]);
      });

      it('simultaneous edits of one credential on both mirrors: one winner by last_refresh, the loser kept' + (srv.kind === 'rgw' ? ' (enforced)' : ' — or, without enforcement, the race documented'), async () => {
        dumpOnFailure(() => [A, B]);
        const id = 'race.json';
        await writeAuth(a, id, cred(id, { round: -1 }));
        await waitJson(authPath(b, id), cred(id, { round: -1 }), 5000);
        const outcomes: string[] = [];
        const ROUNDS = 4;
        for (let round = 0; round < ROUNDS; round++) {
          await sleep(1500); // both daemons hold the same base, every poll settled
          const t = Date.UTC(2025, 5, 1, 0, round, 0);
          const older = cred(id, { access_token: `at-r${round}-older`, last_refresh: new Date(t).toISOString(), round });
          const newer = cred(id, { access_token: `at-r${round}-newer`, last_refresh: new Date(t + 5000).toISOString(), round });
          const [winnerMirror, loserMirror] = round % 2 === 0 ? [a, b] : [b, a];
          const since = Date.now();
          await Promise.all([writeFile(authPath(winnerMirror, id), JSON.stringify(newer, null, 2)), writeFile(authPath(loserMirror, id), JSON.stringify(older, null, 2))]);
          // Everyone converges on one copy, whichever it is — unless the server itself mixed the two
          // writes (s3rver stores body and metadata as separate files: concurrent PUTs of one key can
          // leave the body of one and the ETag of the other, which no client can repair).
          let mixedSince = 0;
          let mixed = false;
          const final = await waitFor(
            `round ${round}: both mirrors and the store hold the same copy`,
            async () => {
              const [x, y] = await Promise.all([readJson(authPath(a, id)), readJson(authPath(b, id))]);
              const s = await getRaw(raw, bucket, `auths/${id}`);
              if (s && /^[0-9a-f]{32}$/.test(s.etag) && createHash('md5').update(s.body).digest('hex') !== s.etag) {
                mixedSince ||= Date.now();
                if (Date.now() - mixedSince > 1500) return (mixed = true) && {};
              } else mixedSince = 0;
              const st = s ? (JSON.parse(s.body.toString()) as Record<string, unknown>) : undefined;
              const same = JSON.stringify(x) === JSON.stringify(y) && JSON.stringify(x) === JSON.stringify(st);
              return same && (x as { round?: number }).round === round ? (x as Record<string, unknown>) : null;
            },
            8000,
          );
          if (mixed) {
            outcomes.push(`r${round}: the server kept the body of one write under the ETag of the other`);
            expect(srv.kind, 'only s3rver mixes concurrent writes').toBe('s3rver');
            continue;
          }
          await sleep(300);
          const kept = [...(await conflictFiles(a)), ...(await conflictFiles(b))].some((f) => f.text.includes(String(older.access_token)));
          const conflictLogs = [A, B].flatMap((d) => logged(d, /^conflict auths\/race\.json/, since));
          const newerWon = final.access_token === newer.access_token;
          const outcome = newerWon && kept ? 'resolved' : newerWon ? 'newer won, nothing to keep' : kept ? 'older won, newer kept aside' : 'older won silently (lost update)';
          outcomes.push(`r${round}: ${outcome}${conflictLogs.length ? ` (${conflictLogs.length} conflict log line(s))` : ''}`);
          if (srv.kind === 'rgw') {
            expect(newerWon, `round ${round}: the newer copy wins everywhere`).toBe(true);
            expect(kept, `round ${round}: the losing copy is kept under .credsync/conflicts/`).toBe(true);
            expect(conflictLogs.length, `round ${round}: conflict logged`).toBeGreaterThanOrEqual(1);
          }
        }
        // Without enforcement two writers that both read before either wrote can each "win" their
        // check; the later PUT then silently replaces the other. The verification read after each write
        // catches a writer landing after ours, but not one that lands between its read and its write.
        console.info(`[e2e/s3 ${srv.name}] simultaneous edits (cas ${srv.kind === 'rgw' ? 'enforced' : 'checked'}): ${outcomes.join('; ')}`);
      });

      it('a foreign PutObject (no generation bump, e.g. CLIProxyAPI or `aws s3 cp`) reaches both mirrors within one reconcile interval', async () => {
        dumpOnFailure(() => [A, B]);
        await sleep(500);
        const gen0 = await headRaw(raw, bucket, '.credsync/generation');
        const v = { type: 'codex', email: 'foreign@example.com', access_token: 'at-foreign', refresh_token: 'rt-foreign' };
        const t0 = Date.now();
        await putRaw(raw, bucket, 'auths/codex-foreign@example.com.json', JSON.stringify(v), 'application/json');
        const ms = Math.max(...(await Promise.all([a, b].map((m) => waitJson(authPath(m, 'codex-foreign@example.com.json'), v, RECONCILE_MS + 3000, t0)))));
        console.info(`[e2e/s3 ${srv.name}] foreign PutObject reached both mirrors after ${ms} ms (reconcile interval ${RECONCILE_MS} ms)`);
        expect(ms).toBeLessThan(RECONCILE_MS + POLL_MS * 1.1 + 500);
        expect((await headRaw(raw, bucket, '.credsync/generation'))?.etag, 'the foreign write did not bump the generation object').toBe(gen0?.etag);
      });

      it('a restart with an empty mirror pulls everything and deletes nothing', async () => {
        dumpOnFailure(() => [A, B]);
        await sleep(1500);
        const before = await bucketState(raw, bucket);
        const aFiles = await Promise.all([...before.keys()].filter((k) => k.startsWith('auths/')).map((k) => fileSig(join(a, k))));
        const st = await B.stop();
        expect(st.code).toBe(0);
        await rm(b, { recursive: true, force: true });
        B = await g.start({ env: env(b), name: 'B (restarted, empty)' });
        // ready = initial reconcile done: everything is there already
        for (const k of before.keys()) {
          if (k.startsWith('.credsync/')) continue;
          const obj = (await getRaw(raw, bucket, k))!;
          const local = await readJson(join(b, k)).catch(() => undefined);
          if (k.endsWith('.json')) expect(local, k).toEqual(JSON.parse(obj.body.toString()));
          else expect(await exists(join(b, k)), k).toBe(true);
        }
        await sleep(1500);
        const after = await bucketState(raw, bucket);
        expect([...after.keys()].sort(), 'no object deleted').toEqual([...before.keys()].sort());
        for (const [k, o] of after) if (!k.startsWith('.credsync/')) expect(o.etag, `${k} not rewritten`).toBe(before.get(k)!.etag);
        expect(logged(B, /^(push|delete) /), 'the restarted daemon pushed or deleted').toEqual([]);
        expect(await Promise.all([...before.keys()].filter((k) => k.startsWith('auths/')).map((k) => fileSig(join(a, k)))), 'A untouched').toEqual(aFiles);
      });
    });

    // ------------------------------------------------------------------ idle cost

    describe('an idle daemon', () => {
      const g = processGroup('all');
      const bucket = uniqueName(`idle-${srv.kind}`);
      let proxy: S3Proxy;
      let root: { path: string; remove(): Promise<void> };
      let D: Daemon | undefined;
      beforeAll(async () => {
        proxy = await startS3Proxy(srv.endpoint);
        root = await tempDir('credsync-s3idle-');
      });
      afterAll(async () => {
        await g.killAll();
        await proxy?.close();
        await emptyPrefix(raw, bucket);
        await raw.send(new (await import('@aws-sdk/client-s3')).DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
        await root?.remove();
      });

      it('sends at most one request per poll interval (a conditional GET answered 304), plus the periodic listing', async () => {
        dumpOnFailure(() => [D]);
        const m = join(root.path, 'm');
        await writeAuth(m, 'a.json', cred('a.json'));
        await writeConfig(m, 'port: 8317\n');
        D = await g.start({ env: s3Env({ ...srv, endpoint: proxy.endpoint }, bucket, m, { CREDSYNC_RECONCILE_INTERVAL: '60s' }), name: 'idle' });
        await sleep(1500);
        proxy.reset();
        const t0 = Date.now();
        await sleep(6000);
        const elapsed = Date.now() - t0;
        const reqs = [...proxy.requests];
        const gens = reqs.filter((r) => r.method === 'GET' && r.path === `/${bucket}/.credsync/generation`);
        const perMinute = Math.round((reqs.length * 60_000) / elapsed);
        console.info(
          `[e2e/s3 ${srv.name}] idle daemon: ${reqs.length} requests in ${elapsed} ms (${perMinute}/min at the default 1 s poll interval; ` +
            `${gens.filter((r) => r.status === 304).length} answered 304; other: ${reqs.filter((r) => !gens.includes(r)).map((r) => `${r.method} ${r.path}${r.query}`).join(', ') || 'none'})`,
        );
        expect(reqs.length - gens.length, 'requests other than the generation GET (no listing before the 60 s reconcile)').toBe(0);
        expect(gens.length).toBeLessThanOrEqual(Math.ceil(elapsed / (POLL_MS * 0.9)) + 1);
        // a GET still in flight as the window closes has no status yet
        expect(gens.filter((r) => r.status !== undefined).every((r) => r.status === 304)).toBe(true);
        expect(logged(D, /./, t0), 'log lines while idle').toEqual([]);
      });
    });

    // ------------------------------------------------------------------ one object denied

    describe('an object the credentials may not write (bucket policy)', () => {
      const g = processGroup('all');
      const bucket = uniqueName(`deny-${srv.kind}`);
      let root: { path: string; remove(): Promise<void> };
      let D: Daemon | undefined;
      beforeAll(async () => {
        root = await tempDir('credsync-s3deny-');
      });
      afterAll(async () => {
        await g.killAll();
        const { DeleteBucketPolicyCommand, DeleteBucketCommand } = await import('@aws-sdk/client-s3');
        await raw.send(new DeleteBucketPolicyCommand({ Bucket: bucket })).catch(() => {});
        await emptyPrefix(raw, bucket);
        await raw.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
        await root?.remove();
      });

      it('is rejected alone, named with the S3 action and the object; the others sync and the daemon stays ready', async (tc) => {
        if (srv.kind !== 'rgw') tc.skip('needs bucket policies (RGW): Swift s3api and s3rver have none');
        dumpOnFailure(() => [D]);
        const { CreateBucketCommand, PutBucketPolicyCommand } = await import('@aws-sdk/client-s3');
        await raw.send(new CreateBucketCommand({ Bucket: bucket }));
        const Policy = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Deny', Principal: '*', Action: ['s3:PutObject'], Resource: [`arn:aws:s3:::${bucket}/auths/denied.json`] }] });
        await raw.send(new PutBucketPolicyCommand({ Bucket: bucket, Policy }));
        const m = join(root.path, 'm');
        await writeAuth(m, 'ok-1.json', cred('ok-1.json'));
        await writeAuth(m, 'denied.json', cred('denied.json'));
        const push = await g.cli(['push'], { env: s3Env(srv, bucket, m) });
        expect(push.code, push.stderr).toBe(1); // one item rejected (documented exit code), the rest pushed
        expect(push.stdout).toMatch(/rejected auths\/denied\.json \(local\): .*s3:PutObject on auths\/denied\.json: access denied/);
        expect(await getRaw(raw, bucket, 'auths/ok-1.json')).not.toBeNull();
        expect(await getRaw(raw, bucket, 'auths/denied.json')).toBeNull();
        D = await g.start({ env: s3Env(srv, bucket, m), name: 'deny' });
        await writeAuth(m, 'ok-2.json', cred('ok-2.json'));
        await waitFor('ok-2 stored', async () => (await getRaw(raw, bucket, 'auths/ok-2.json')) !== null, 5000);
        expect((await D.get('/readyz')).status).toBe(200);
        expect((await D.get('/metrics')).body).toMatch(/^credsync_rejected_files 1$/m);
        expect(logged(D, /s3:PutObject on auths\/denied\.json: access denied/).length).toBeGreaterThanOrEqual(1);
      });
    });

    // ------------------------------------------------------------------ configuration errors

    describe('configuration errors exit 2 and say why', () => {
      const g = processGroup('all');
      const bucket = uniqueName(`cfg-${srv.kind}`);
      let root: { path: string; remove(): Promise<void> };
      beforeAll(async () => {
        root = await tempDir('credsync-s3cfg-');
      });
      afterAll(async () => {
        await g.killAll();
        await emptyPrefix(raw, bucket);
        await raw.send(new (await import('@aws-sdk/client-s3')).DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
        await root?.remove();
      });

      it(`OBJECTSTORE_CONDITIONAL_WRITES=require: ${srv.kind === 'rgw' ? 'pull works (writes are enforced)' : 'pull and run exit 2 naming the reason'}`, async () => {
        const env = s3Env(srv, bucket, join(root.path, 'req'), { OBJECTSTORE_CONDITIONAL_WRITES: 'require' });
        const r = await g.cli(['pull', '--allow-empty'], { env });
        if (srv.kind === 'rgw') {
          expect(r.code, r.stderr).toBe(0);
          return;
        }
        if (srv.kind === 'custom' && r.code === 0) return;
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr).toMatch(/OBJECTSTORE_CONDITIONAL_WRITES=require, but the server at .* does not enforce conditional writes/);
        expect(r.stderr).toMatch(srv.kind === 'swift' ? /501/ : /ignored/);
        const d = await g.start({ env, waitReady: false, name: 'run require' });
        const ex = await Promise.race([d.exit, sleep(15_000).then(() => null)]);
        expect(ex?.code, d.stderr).toBe(2);
        expect(d.stderr).toMatch(/does not enforce conditional writes/);
      });

      it('a wrong secret key (s3rver: a wrong access key): pull exits 2 with the fix, run exits 2 instead of retrying, and the key appears nowhere', async () => {
        // s3rver does not verify SigV4 signatures, only the access key id.
        const wrong = srv.kind === 's3rver' ? { OBJECTSTORE_ACCESS_KEY: 'WRONGACCESSKEY0123456789' } : { OBJECTSTORE_SECRET_KEY: `${srv.secretKey}-WRONG-9f8e7d6c5b4a` };
        const secret = Object.values(wrong)[0]!;
        const env = s3Env(srv, bucket, join(root.path, 'wrong'), { ...(wrong as unknown as Record<string, string>), CREDSYNC_LOG_LEVEL: 'trace' });
        const r = await g.cli(['pull'], { env });
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr).toMatch(/SignatureDoesNotMatch|InvalidAccessKeyId/);
        expect(r.stderr).toMatch(/check OBJECTSTORE_ACCESS_KEY and OBJECTSTORE_SECRET_KEY/);
        for (const out of [r.stdout, r.stderr]) {
          expect(out).not.toContain(secret);
          expect(out).not.toContain(encodeURIComponent(secret));
        }
        const j = await g.cli(['pull', '--json'], { env });
        expect(j.code).toBe(2);
        expect(j.stdout + j.stderr).not.toContain(secret);
        const d = await g.start({ env, waitReady: false, name: 'run wrong key' });
        const ex = await Promise.race([d.exit, sleep(15_000).then(() => null)]);
        expect(ex?.code, `run exits instead of looping; stderr:\n${d.stderr}`).toBe(2);
        expect(d.stderr + d.stdout).not.toContain(secret);
      });
    });
  });
}

describe('e2e/s3 servers', () => {
  it('at least one S3 server is available (all of them in CI)', () => {
    if (/^(1|true|yes)$/i.test(process.env.CI ?? '')) expect(missing.filter((m) => !/=skip$/.test(m))).toEqual([]);
    expect(servers.length + missing.length).toBeGreaterThan(0);
  });
});
