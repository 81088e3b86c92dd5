import type { Diagnosis } from '../core/store.js';
import type { StoreSpec } from './spec.js';
import { ConfigError } from '../core/errors.js';
import type { Store, StoreContext } from '../core/store.js';
import { createSealedStore, type EncryptionSettings } from './sealed/index.js';

/**
 * Store spec → store instance. Concrete stores are loaded with dynamic `import()` so that, for
 * example, a directory-store user never loads the PostgreSQL driver. Does not connect (call `init`).
 *
 * With `encryption`, the store is wrapped (`sealed/`): content is sealed on its way in and opened on its
 * way out, the same for every store kind; no store knows about keys. Without it, the store's bytes as
 * they are (backup archives ciphertext as ciphertext). Daemons always pass their settings, even `off`
 * without keys, so that envelopes met in the store are recognised and rejected with the reason.
 */
export async function openStore(spec: StoreSpec, ctx: StoreContext = {}, encryption?: EncryptionSettings): Promise<Store> {
  const inner = await openInner(spec, ctx);
  if (!encryption) return inner;
  return createSealedStore(inner, encryption, ctx.log);
}

async function openInner(spec: StoreSpec, ctx: StoreContext): Promise<Store> {
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
      return createS3Store({ ...spec, listIntervalMs: ctx.reconcileIntervalMs, log: ctx.log });
    }
    case 'git': {
      // The private clone lives in <mirror>/.credsync/git/: never the mirror itself, never a guess.
      if (!ctx.workDir) throw new ConfigError('store git: no working directory for the clone (expected <mirror>/.credsync/git/); this is a bug in the caller');
      const { createGitStore } = await import('./git/index.js');
      return createGitStore({ ...spec, workDir: ctx.workDir, log: ctx.log });
    }
  }
}

/**
 * What `doctor` needs to check a PostgreSQL deployment from outside the store: the NOTIFY channel the
 * trigger uses, identifier quoting and the driver options of a DSN (sslmode, hosts …). Pure; no
 * connection is made and the driver is not loaded.
 */
export { pgChannelFor, quoteIdent } from './postgres/schema.js';
export { connectionConfig as pgConnectionOptions } from './postgres/settings.js';

/**
 * Encryption at rest for the commands and the configuration (`rewrap`, `doctor`, `backup --decrypt`,
 * key parsing): the envelope and the key classification, without any store.
 */
export {
  ENCRYPTION_MODES,
  KEY_BYTES,
  KID_PATTERN,
  inspect,
  openItem,
  rejectionReason,
  seal,
  type Classification,
  type EncryptionMode,
  type EncryptionSettings,
  type SealKey,
  type SealedStore,
} from './sealed/index.js';

/**
 * The checks a store kind runs on its own deployment for `doctor` (S3: list/put/get/delete on the
 * prefix and conditional writes; Git: read and push rights, the branch). Loaded lazily like the stores;
 * kinds with checks elsewhere (PostgreSQL: commands/doctor-postgres) or none return an empty list.
 */
export async function diagnose(spec: StoreSpec): Promise<Diagnosis[]> {
  switch (spec.kind) {
    case 's3': {
      const { diagnoseS3 } = await import('./s3/diagnose.js');
      return diagnoseS3(spec);
    }
    case 'git': {
      const { diagnoseGit } = await import('./git/diagnose.js');
      return diagnoseGit(spec);
    }
    default:
      return [];
  }
}
