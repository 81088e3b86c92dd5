import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** Writes `data` at `rel` under `root` (a mirror or a directory store), creating folders as needed. */
export async function put(root: string, rel: string, data = '{}'): Promise<void> {
  const p = join(root, ...rel.split('/'));
  await mkdir(dirname(p), { recursive: true });
  await writeFile(p, data);
}

/** Writes each `rel → content` under `root`. */
export async function fill(root: string, files: Record<string, string>): Promise<void> {
  for (const [rel, data] of Object.entries(files)) await put(root, rel, data);
}
