import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DRIVER_ENV_VARS, ENV_VARS } from '../../src/config/env.js';
import { Metrics } from '../../src/http/metrics.js';

/** README is the front door: these checks keep it true to the code. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const readme = readFileSync(`${ROOT}README.md`, 'utf8');
const section = (title: string): string => {
  const start = readme.indexOf(`## ${title}`);
  expect(start, `README has a "${title}" section`).toBeGreaterThanOrEqual(0);
  const next = readme.indexOf('\n## ', start + 3);
  return readme.slice(start, next < 0 ? undefined : next);
};

describe('README agrees with the code', () => {
  it('documents every variable credsync reads in the Configuration section', () => {
    const cfg = section('Configuration');
    for (const v of [...ENV_VARS, ...DRIVER_ENV_VARS]) expect(cfg, v).toContain(`\`${v}\``);
  });

  it('lists every command of `credsync --help` in the Commands section', () => {
    const help = execFileSync(process.execPath, [`${ROOT}dist/cli.js`, '--help'], { encoding: 'utf8' });
    const commands = [...help.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
    expect(commands.length).toBeGreaterThanOrEqual(5);
    const text = section('Commands') + section('Operator commands');
    for (const c of commands) expect(text, c).toContain(`\`credsync ${c}`);
  });

  it('states the exit codes the CLI uses', () => {
    const help = execFileSync(process.execPath, [`${ROOT}dist/cli.js`, '--help'], { encoding: 'utf8' });
    const codes = [...help.matchAll(/^ {2}(\d)\s{2}/gm)].map((m) => m[1]!);
    expect(codes).toEqual(['0', '1', '2', '3', '4']);
    for (const c of codes) expect(section('Commands'), `exit code ${c}`).toContain(`\`${c}\``);
  });

  it('names only metrics that exist, and every credsync metric of the registry', async () => {
    const m = new Metrics();
    const names = new Set((await m.registry.getMetricsAsJSON()).map((x) => x.name));
    const documented = [...section('HTTP endpoints and metrics').matchAll(/`(credsync_[a-z_]+)[{`]/g)].map((x) => x[1]!);
    for (const d of documented) if (!d.endsWith('_')) expect(names, d).toContain(d);
    for (const n of names) if (!/^credsync_(process|nodejs)_/.test(n)) expect(documented, n).toContain(n);
  });
});
