/**
 * Everything a bench starts or creates registers its undo here; `runCleanups()` runs them in
 * reverse order (always: on success, on failure, on SIGINT/SIGTERM). Child processes are also
 * SIGKILLed synchronously on process exit as a last resort, so no daemon outlives the bench.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type Cleanup = { what: string; fn: () => Promise<void> };
const cleanups: Cleanup[] = [];
const children = new Map<ChildProcess, boolean>();

/** Registers an undo action; returns a function that runs it now (once) and unregisters it. */
export function onCleanup(what: string, fn: () => Promise<void>): () => Promise<void> {
  const entry: Cleanup = { what, fn };
  cleanups.push(entry);
  let done = false;
  return async () => {
    if (done) return;
    done = true;
    const i = cleanups.indexOf(entry);
    if (i >= 0) cleanups.splice(i, 1);
    await fn();
  };
}

export async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const c = cleanups.pop()!;
    try {
      await c.fn();
    } catch (err) {
      console.error(`[bench] cleanup "${c.what}" failed: ${(err as Error).message}`);
    }
  }
}

/**
 * Tracks a child process: it is SIGKILLed at exit if still running. `group`: the child was spawned
 * `detached` (its own process group, e.g. /usr/bin/time with node under it) and the whole group is killed.
 */
export function trackChild(child: ChildProcess, group = false): void {
  children.set(child, group);
  child.once('exit', () => children.delete(child));
}

export function killChild(child: ChildProcess, group: boolean): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    if (group && child.pid) process.kill(-child.pid, 'SIGKILL');
    else child.kill('SIGKILL');
  } catch {
    /* gone */
  }
}

export function liveChildren(): ChildProcess[] {
  return [...children.keys()];
}

process.on('exit', () => {
  for (const [c, group] of children) killChild(c, group);
});

/** A fresh temp directory, removed at cleanup (or earlier with the returned `remove`). */
export async function tempDir(prefix: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `credsync-bench-${prefix}-`));
  const remove = onCleanup(`remove ${path}`, () => rm(path, { recursive: true, force: true }));
  return { path, remove };
}
