/**
 * Issue 8 items 5 and 7 (the file-system half): what the scanner cannot read is never "absent".
 * A directory it cannot list is reported as unreadable and the keys the caller knows below it are
 * inspected one by one; a file it cannot open is present and invalid.
 */
import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../support/tmp.js';
import { isCi } from '../support/pg-server.js';

const child = fileURLToPath(new URL('./fixtures/scan-child.ts', import.meta.url));
const isRoot = process.getuid?.() === 0;
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
const cannotRun = isRoot && !setpriv ? 'running as root without setpriv: permissions cannot be made to bite' : '';
if (cannotRun && isCi()) throw new Error(`${cannotRun}; in CI this is a failure`);

/** Runs the scan child without the power to bypass permissions; returns its JSON. */
function scanAsUnprivileged(root: string, known: string[]): Promise<Record<string, any>> {
  const node = [process.execPath, '--import', 'tsx', child, root, JSON.stringify(known)];
  const [cmd, ...args] = isRoot ? [setpriv!, '--bounding-set=-dac_override,-dac_read_search', '--inh-caps=-dac_override,-dac_read_search', ...node] : node;
  return new Promise((resolve, reject) => {
    execFile(cmd!, args, { cwd: fileURLToPath(new URL('../..', import.meta.url)), timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout) as Record<string, any>);
    });
  });
}

describe.skipIf(cannotRun !== '')(`unreadable parts of the mirror${cannotRun ? ` (skipped: ${cannotRun})` : ''}`, () => {
  it('a directory that cannot be listed makes its files unknown, never absent; a mode-000 file is present and invalid', async () => {
    const d = await tempDir();
    try {
      const root = d.path;
      await mkdir(join(root, 'auths/locked'), { recursive: true });
      await mkdir(join(root, 'auths/listless'), { recursive: true });
      await writeFile(join(root, 'auths/ok.json'), '{"a":1}');
      await writeFile(join(root, 'auths/locked/a.json'), '{"a":1}');
      await writeFile(join(root, 'auths/listless/b.json'), '{"b":1}');
      await writeFile(join(root, 'auths/secret.json'), '{"c":1}');
      await chmod(join(root, 'auths/locked'), 0o000); // neither listable nor traversable
      await chmod(join(root, 'auths/listless'), 0o100); // traversable, not listable
      await chmod(join(root, 'auths/secret.json'), 0o000);
      const known = ['auths/locked/a.json', 'auths/listless/b.json', 'auths/listless/gone.json', 'auths/secret.json'];
      const out = await scanAsUnprivileged(root, known);
      await chmod(join(root, 'auths/locked'), 0o700);
      await chmod(join(root, 'auths/listless'), 0o700);

      const items = out.withKnown.items as Record<string, { present: boolean; valid?: boolean; reason?: string }>;
      expect(out.withKnown.unreadable).toEqual([
        { prefix: 'auths/listless/', reason: 'cannot list the directory: permission denied (EACCES)', vanished: false },
        { prefix: 'auths/locked/', reason: 'cannot list the directory: permission denied (EACCES)', vanished: false },
      ]);
      expect(items['auths/ok.json']).toMatchObject({ present: true, valid: true });
      // cannot even be reached: present, invalid, with the reason — not absent
      expect(items['auths/locked/a.json']).toEqual({ present: true, valid: false, reason: 'cannot read: permission denied (EACCES)' });
      // reachable by name although not listable: judged normally
      expect(items['auths/listless/b.json']).toMatchObject({ present: true, valid: true });
      // truly absent
      expect(items['auths/listless/gone.json']).toBeUndefined();
      // a mode-000 file is found by the listing and is present and invalid
      expect(items['auths/secret.json']).toEqual({ present: true, valid: false, reason: 'cannot read: permission denied (EACCES)' });
      expect(out.inspect['auths/secret.json']).toEqual({ present: true, valid: false, reason: 'cannot read: permission denied (EACCES)' });
      expect(out.inspect['auths/locked/a.json']).toEqual({ present: true, valid: false, reason: 'cannot read: permission denied (EACCES)' });
      expect(out.inspect['auths/listless/gone.json']).toEqual({ present: false });
      // a caller that cannot represent "unknown" gets an error, not a mirror with files missing
      expect(out.withoutKnown).toMatchObject({ name: 'UnreadableDirError' });
      expect(out.withoutKnown.message).toMatch(/cannot list auths\/(listless|locked)\//);
      // the emptied-mirror guard must not count a partly unlistable auths/ as "has files, go ahead"
      expect(out.count).toBe(0);
    } finally {
      await chmod(join(d.path, 'auths/locked'), 0o700).catch(() => {});
      await chmod(join(d.path, 'auths/listless'), 0o700).catch(() => {});
      await d.remove();
    }
  });
});
