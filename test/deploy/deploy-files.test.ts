import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { cp, copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, dirname, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { DRIVER_ENV_VARS, ENV_VARS } from '../../src/config/env.js';
import { resolveConfig, type Config } from '../../src/config/config.js';
import { tempDir } from '../support/tmp.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/cli.js');
const read = (p: string): string => readFileSync(join(ROOT, p), 'utf8');

type Obj = Record<string, unknown>;
const COMMANDS = ['run', 'pull', 'push', 'sync', 'status'];

/** The flags a command's --help lists (the CLI is the source of truth). */
const helpCache = new Map<string, string>();
async function helpOf(cmd: string): Promise<string> {
  if (!helpCache.has(cmd)) helpCache.set(cmd, (await run(process.execPath, [CLI, cmd, '--help'])).stdout);
  return helpCache.get(cmd)!;
}

/** Checks a credsync invocation (args + env) against the real CLI and config parser. */
async function checkInvocation(where: string, args: string[], env: Record<string, string>): Promise<Config> {
  const [cmd, ...rest] = args;
  expect(COMMANDS, `${where}: command ${cmd}`).toContain(cmd);
  const help = await helpOf(cmd!);
  for (const a of rest.filter((x) => x.startsWith('--'))) expect(help, `${where}: flag ${a} of ${cmd}`).toContain(a.split('=')[0]!);
  for (const name of Object.keys(env)) expect([...ENV_VARS, ...DRIVER_ENV_VARS] as readonly string[], `${where}: env ${name}`).toContain(name);
  return resolveConfig({}, { cwd: '/data', env });
}

/** Compose-style ${VAR:-default} / ${VAR:?msg} interpolation with sample values. */
const interpolate = (s: string): string =>
  s.replace(/\$\{([A-Z_]+)(?::?[-?]([^}]*))?\}/g, (_m, name: string, def?: string) => (name === 'POSTGRES_PASSWORD' ? 'sample-password' : (def ?? '')));

const durationSeconds = (s: string): number => {
  const m = /^(\d+)(ms|s|m)?$/.exec(s)!;
  return Number(m[1]) * ({ ms: 0.001, s: 1, m: 60 }[(m[2] ?? 's') as 'ms' | 's' | 'm']);
};

beforeAll(() => {
  expect(existsSync(CLI), 'dist/cli.js (npm test builds it first)').toBe(true);
});

describe('.env.example stays complete', () => {
  it('lists every variable the code reads, and the code reads only declared variables', () => {
    const example = read('.env.example');
    const listed = new Set([...example.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]));
    for (const v of ENV_VARS) expect(listed, `.env.example misses ${v}`).toContain(v);
    // Every variable name written in the source is declared in ENV_VARS (test-only variables aside).
    const files = readdirSync(join(ROOT, 'src'), { recursive: true }).map(String).filter((f) => f.endsWith('.ts'));
    const named = new Set<string>();
    for (const f of files) {
      for (const m of read(join('src', f)).matchAll(/['"]((?:PGSTORE|OBJECTSTORE|GITSTORE|CREDSYNC)_[A-Z_]*[A-Z]|WRITABLE_PATH)['"]/g)) named.add(m[1]!);
    }
    expect(named.size).toBeGreaterThan(10);
    for (const v of named) expect(ENV_VARS as readonly string[], `${v} is read but not declared`).toContain(v);
    // And nothing credsync-looking is listed that the code does not know.
    for (const v of listed) if (v !== 'POSTGRES_PASSWORD') expect(ENV_VARS as readonly string[], `.env.example lists unknown ${v}`).toContain(v);
  });
});

describe('config.example.yaml', () => {
  it('is a CLIProxyAPI config whose auth-dir is the mirror the deployments use', () => {
    const cfg = parseYaml(read('config.example.yaml')) as Obj;
    expect(cfg.port).toBe(8317);
    expect(cfg['auth-dir']).toBe('/data/pgstore/auths');
    expect(Array.isArray(cfg['api-keys'])).toBe(true);
    expect(cfg['remote-management']).toMatchObject({ 'allow-remote': false });
  });
});

describe('docker-compose.postgres.yml', () => {
  const compose = parseYaml(read('docker-compose.postgres.yml'), { merge: true }) as { services: Record<string, Obj>; volumes: Obj };

  it('runs PostgreSQL with a volume and a healthcheck, and two credsync instances started after it is healthy', () => {
    const pg = compose.services.postgres!;
    expect(String(pg.image)).toMatch(/^postgres:18/);
    expect((pg.healthcheck as Obj).test).toBeTruthy();
    expect(pg.ports).toBeUndefined(); // not published
    const credsync = Object.entries(compose.services).filter(([, s]) => String(s.image).startsWith('credsync'));
    expect(credsync.map(([n]) => n).sort()).toEqual(['credsync-a', 'credsync-b']);
    const volumes = new Set<string>();
    for (const [, s] of credsync) {
      expect(s.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
      volumes.add(String((s.volumes as string[])[0]).split(':')[0]!);
    }
    expect(volumes.size).toBe(2); // each instance has its own mirror
    expect(read('docker-compose.postgres.yml')).toMatch(/POSTGRES_PASSWORD:\?/); // password from .env, required
  });

  it('only uses commands, env vars, ports and paths the CLI really has', async () => {
    for (const [name, s] of Object.entries(compose.services)) {
      if (!String(s.image).startsWith('credsync')) continue;
      const env = Object.fromEntries(Object.entries(s.environment as Obj).map(([k, v]) => [k, interpolate(String(v))]));
      const config = await checkInvocation(name, s.command as string[], env);
      expect(config.store.kind).toBe('postgres');
      const mount = String((s.volumes as string[])[0]).split(':')[1]!;
      expect(config.localDir.startsWith(mount + '/'), `${name}: mirror ${config.localDir} under ${mount}`).toBe(true);
      const published = (s.ports as string[]).map((p) => Number(p.split(':').pop()));
      expect(published).toEqual([config.http!.port]);
      expect(durationSeconds(String(s.stop_grace_period))).toBeGreaterThan(config.shutdownTimeoutMs / 1000);
    }
  });
});

describe('deploy/kubernetes', () => {
  const dir = join(ROOT, 'deploy/kubernetes');
  const docs: Obj[] = [];
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    for (const d of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
      expect(d.errors, f).toEqual([]);
      docs.push(d.toJS() as Obj);
    }
  }
  const kinds = (k: string): Obj[] => docs.filter((d) => d.kind === k);

  it('has a kustomization whose resources all exist', () => {
    const k = kinds('Kustomization')[0]!;
    for (const r of k.resources as string[]) expect(existsSync(join(dir, r)), r).toBe(true);
    expect(existsSync(join(dir, 'README.md'))).toBe(true);
  });

  it('runs credsync pull as an init container and credsync run as a sidecar, consistently with the CLI', async () => {
    const dep = kinds('Deployment')[0] as { spec: { template: { spec: Obj } } };
    const pod = dep.spec.template.spec as { initContainers: Obj[]; containers: Obj[]; volumes: Obj[]; terminationGracePeriodSeconds: number };
    // One story for the Secret: the README's `kubectl create secret` is the only place it is made.
    expect(kinds('Secret'), 'the kustomization must not carry a Secret that apply -k would overwrite').toEqual([]);
    const readme = read(join('deploy/kubernetes', 'README.md'));
    const create = /create secret generic (\S+)((?:\s*\\?\s*--from-literal=[A-Z_]+='[^']*')+)/.exec(readme);
    expect(create, 'README creates the Secret').not.toBeNull();
    const secret = { metadata: { name: create![1]! }, stringData: Object.fromEntries([...create![2]!.matchAll(/--from-literal=([A-Z_]+)='([^']*)'/g)].map((m) => [m[1]!, m[2]!])) };
    expect(secret.stringData.PGSTORE_DSN).not.toContain('the-database-password');
    const envOf = (c: Obj): Record<string, string> =>
      Object.fromEntries(
        (c.env as Array<{ name: string; value?: string; valueFrom?: { secretKeyRef: { name: string; key: string } } }>).map((e) => {
          if (e.valueFrom) {
            expect(e.valueFrom.secretKeyRef.name).toBe(secret.metadata.name);
            return [e.name, secret.stringData[e.valueFrom.secretKeyRef.key]!];
          }
          return [e.name, String(e.value)];
        }),
      );
    const [pull, sidecar] = pod.initContainers;
    expect(pull!.args).toEqual(['pull']);
    expect(sidecar!.args).toEqual(['run']);
    expect(sidecar!.restartPolicy).toBe('Always');
    const pullCfg = await checkInvocation('credsync-pull', pull!.args as string[], envOf(pull!));
    const runCfg = await checkInvocation('credsync', sidecar!.args as string[], envOf(sidecar!));
    expect(pullCfg.localDir).toBe(runCfg.localDir);
    expect(pullCfg.store).toEqual(runCfg.store);
    // Probes hit the sidecar's real endpoints on its real port.
    const port = (sidecar!.ports as Array<{ name: string; containerPort: number }>)[0]!;
    expect(port.containerPort).toBe(runCfg.http!.port);
    expect(runCfg.http!.host).toBe('0.0.0.0');
    expect(((sidecar!.livenessProbe as Obj).httpGet as Obj).path).toBe('/healthz');
    expect(((sidecar!.readinessProbe as Obj).httpGet as Obj).path).toBe('/readyz');
    expect(((sidecar!.readinessProbe as Obj).httpGet as Obj).port).toBe(port.name);
    // The shared emptyDir holds the mirror in every container.
    const mirrorVolume = (pod.volumes[0] as { name: string; emptyDir: Obj }).name;
    for (const c of [pull!, sidecar!, ...pod.containers]) {
      const m = (c.volumeMounts as Array<{ name: string; mountPath: string }>).find((v) => v.name === mirrorVolume)!;
      expect(runCfg.localDir.startsWith(m.mountPath + '/'), `${String(c.name)} mounts the mirror`).toBe(true);
    }
    // The proxy reads the mirror's config, whose auth-dir is the mirror's auths/.
    const proxy = pod.containers[0]!;
    expect(proxy.args).toEqual(['-config', posix.join(runCfg.localDir, 'config/config.yaml')]);
    expect((parseYaml(read('config.example.yaml')) as Obj)['auth-dir']).toBe(posix.join(runCfg.localDir, 'auths'));
    // Grace period outlasts the flush; limits are set.
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(runCfg.shutdownTimeoutMs / 1000);
    for (const c of [pull!, sidecar!, proxy]) expect((c.resources as Obj).limits, String(c.name)).toBeTruthy();
  });

  it('has a PodDisruptionBudget selecting the Deployment', () => {
    const pdb = kinds('PodDisruptionBudget')[0] as { spec: { selector: { matchLabels: Obj } } };
    const dep = kinds('Deployment')[0] as { spec: { selector: { matchLabels: Obj } } };
    expect(pdb.spec.selector.matchLabels).toEqual(dep.spec.selector.matchLabels);
  });
});

describe('docker/Dockerfile', () => {
  const text = read('docker/Dockerfile');
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const runtimeAt = lines.findIndex((l) => /^FROM .* AS runtime$/.test(l));
  const runtime = lines.slice(runtimeAt);

  it('is multi-stage, non-root, with a volume, a healthcheck on /healthz and credsync run as the default', () => {
    expect(lines.filter((l) => l.startsWith('FROM ')).length).toBe(2);
    expect(runtime).toContain('USER node');
    expect(runtime.some((l) => l.startsWith('VOLUME'))).toBe(true);
    const hc = runtime.find((l) => l.startsWith('HEALTHCHECK'))!;
    const port = /CREDSYNC_HTTP_ADDR=([^\s]+)/.exec(text)![1]!.split(':')[1];
    expect(hc).toContain(`127.0.0.1:${port}/healthz`);
    expect(runtime).toContain(`EXPOSE ${port}`);
    expect(runtime).toContain('ENTRYPOINT ["/sbin/tini", "--", "credsync"]');
    expect(runtime).toContain('CMD ["run"]');
    for (const l of lines.filter((x) => x.startsWith('COPY ') && !x.includes('--from'))) {
      for (const src of l.split(/\s+/).slice(1, -1)) expect(existsSync(join(ROOT, src)), `COPY ${src}`).toBe(true);
    }
  });

  it('builds and runs when its runtime steps are reproduced in a clean directory', { timeout: 180_000 }, async () => {
    const d = await tempDir('credsync-image-');
    try {
      const app = join(d.path, 'app');
      await mkdir(app);
      for (const f of ['package.json', 'package-lock.json', '.npmrc', 'config.example.yaml']) await copyFile(join(ROOT, f), join(app, f));
      const npm = runtime.find((l) => l.startsWith('RUN npm ci'))!.replace(/^RUN /, '').split('&&')[0]!.trim();
      expect(npm).toMatch(/--omit=dev/);
      await run('sh', ['-c', npm], { cwd: app, env: { ...process.env, NODE_ENV: 'production' }, timeout: 170_000 });
      expect(existsSync(join(app, 'node_modules/vitest')), 'dev dependencies are not installed').toBe(false);
      await cp(join(ROOT, 'dist'), join(app, 'dist'), { recursive: true });
      const cli = join(app, 'dist/cli.js');
      const help = await run(process.execPath, [cli, '--help']);
      for (const c of COMMANDS) expect(help.stdout).toContain(c);
      // A short pull from a directory store, with the image's environment (WRITABLE_PATH, seed config).
      const data = join(d.path, 'data');
      const store = join(d.path, 'store');
      await mkdir(join(store, 'auths'), { recursive: true });
      await mkdir(join(store, 'config'));
      await copyFile(join(ROOT, 'config.example.yaml'), join(store, 'config/config.yaml'));
      await writeFile(join(store, 'auths/claude-a@b.com.json'), '{"type":"claude","email":"a@b.com"}');
      await mkdir(data);
      const res = await run(process.execPath, [cli, 'pull', '--store', `file://${store}`], {
        cwd: data,
        env: { PATH: process.env.PATH, WRITABLE_PATH: data, CREDSYNC_SEED_CONFIG: join(app, 'config.example.yaml'), CREDSYNC_LOG_LEVEL: 'warn' },
      });
      expect(res.stdout).toMatch(/pulled 2/);
      const mirror = join(data, 'data/mirror');
      expect(JSON.parse(await readFile(join(mirror, 'auths/claude-a@b.com.json'), 'utf8'))).toEqual({ type: 'claude', email: 'a@b.com' });
      expect((await stat(join(mirror, 'auths/claude-a@b.com.json'))).mode & 0o777).toBe(0o600);
      expect(dirname(mirror)).toBe(join(data, 'data'));
    } finally {
      await d.remove();
    }
  });
});
