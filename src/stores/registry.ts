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
    case 's3': {
      const { createS3Store } = await import('./s3/index.js');
      return createS3Store({
        endpoint: spec.endpoint,
        bucket: spec.bucket,
        accessKey: spec.accessKey,
        secretKey: spec.secretKey,
        prefix: spec.prefix,
        region: spec.region,
        virtualHostedStyle: spec.virtualHostedStyle,
        createBucket: spec.createBucket,
        conditionalWrites: spec.conditionalWrites,
        pollIntervalMs: spec.pollIntervalMs,
        listIntervalMs: ctx.reconcileIntervalMs,
        log: ctx.log,
      });
    }
    case 'git':
      throw new ConfigError(`store ${spec.kind}: not available in this version of credsync (supported: file://, postgres://, s3://)`);
  }
}
