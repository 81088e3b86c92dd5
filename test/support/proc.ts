/**
 * Process helpers shared by the tests and the benchmarks. No vitest import here: bench/ uses it too.
 */
import { createServer } from 'node:net';

/** A TCP port that was free a moment ago (listen on 0, read it, close). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Variables that select or configure a store; removed from the inherited environment so tests start clean. */
const CONFIG_VAR = /^(CREDSYNC_|PGSTORE_|OBJECTSTORE_|GITSTORE_|WRITABLE_PATH$)/i;

/** The test runner's environment minus every credsync/CLIProxyAPI setting, plus `extra`. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!CONFIG_VAR.test(k) && v !== undefined) env[k] = v;
  // Force JSON logs (non-TTY anyway, but be explicit that nothing pretty-prints).
  delete env.FORCE_COLOR;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}
