import type { StoreSpec } from './spec.js';
import { ConfigError } from '../core/errors.js';
import type { Store, StoreContext } from '../core/store.js';

/**
 * Store spec → store instance. Concrete stores are loaded with dynamic `import()` so that, for
 * example, a directory-store user never loads the PostgreSQL driver. Does not connect (call `init`).
 */
export async function openStore(spec: StoreSpec, ctx: StoreContext = {}): Promise<Store> {
  switch (spec.kind) {
    case 'dir': {
      const { createDirStore } = await import('./dir.js');
      return createDirStore({ path: spec.path, log: ctx.log, debounceMs: ctx.debounceMs });
    }
    case 'postgres': {
      const { createPostgresStore } = await import('./postgres/index.js');
      return createPostgresStore({ dsn: spec.dsn, schema: spec.schema, log: ctx.log });
    }
    case 'git': {
      // The private clone lives in <mirror>/.credsync/git/: never the mirror itself, never a guess.
      if (!ctx.workDir) throw new ConfigError('store git: no working directory for the clone (expected <mirror>/.credsync/git/); this is a bug in the caller');
      const { createGitStore } = await import('./git/index.js');
      return createGitStore({
        url: spec.url,
        username: spec.username,
        token: spec.token,
        branch: spec.branch,
        author: spec.author,
        pollIntervalMs: spec.pollIntervalMs,
        workDir: ctx.workDir,
        log: ctx.log,
      });
    }
    case 's3':
      throw new ConfigError(`store ${spec.kind}: not available in this version of credsync (supported: file://, postgres://, git)`);
  }
}
