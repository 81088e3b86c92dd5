/**
 * Error classes shared by every layer. Callers branch on the class, never on the message.
 * Messages follow `op target: reason` and never contain secrets (callers pass redacted targets).
 */

export class CredsyncError extends Error {
  override name = 'CredsyncError';
}

/** Bad flags, env or .env values. The CLI maps it to exit code 2. */
export class ConfigError extends CredsyncError {
  override name = 'ConfigError';
}

/** A key that fails validation (path traversal, bad suffix, control characters …). */
export class InvalidKeyError extends CredsyncError {
  override name = 'InvalidKeyError';
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`validate key ${JSON.stringify(key)}: ${reason}`);
  }
}

/** Content that must not be stored or mirrored (not a JSON object, not a YAML mapping …). */
export class InvalidContentError extends CredsyncError {
  override name = 'InvalidContentError';
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`validate ${key}: ${reason}`);
  }
}

/** Any failure of a store operation other than not-found and a failed precondition. */
export class StoreError extends CredsyncError {
  override name = 'StoreError';
  constructor(
    readonly store: string,
    readonly op: string,
    readonly key: string | undefined,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${store} ${op}${key ? ` ${key}` : ''}: ${reason}`, options);
  }
}

/**
 * A store failure that retrying will not fix: wrong credentials, a missing database, role, bucket or
 * branch, no permission on the whole store. One-shot commands exit 2 with `fix`; the daemon stops at
 * start-up, or — when it appears later — logs it at error with the fix and retries slowly.
 */
export class StoreConfigError extends StoreError {
  override name = 'StoreConfigError';
  constructor(
    store: string,
    op: string,
    reason: string,
    /** What the operator should do, naming the setting (e.g. "check OBJECTSTORE_SECRET_KEY"). */
    readonly fix: string,
    options?: { cause?: unknown },
  ) {
    super(store, op, undefined, `${reason}; ${fix}`, options);
  }
}

/**
 * A failure that concerns one item only: the store refused this content or this key (a value the
 * database will not take, a permission on one object). That item is rejected — named in the log,
 * `status` and metrics — while every other key keeps syncing and the daemon stays ready.
 */
export class ItemRejectedError extends StoreError {
  override name = 'ItemRejectedError';
}

/** A conditional write whose precondition (`ifVersion`) did not hold. */
export class ConflictError extends StoreError {
  override name = 'ConflictError';
  constructor(
    store: string,
    op: string,
    key: string,
    readonly expected: string | null | undefined,
    readonly actual: string | null,
  ) {
    super(
      store,
      op,
      key,
      `version conflict (expected ${expected === null ? 'absent' : (expected ?? 'any')}, found ${actual ?? 'absent'})`,
    );
  }
}

/** Refused by a safety guard (mass delete, emptied mirror). Not retried automatically. */
export class GuardError extends CredsyncError {
  override name = 'GuardError';
}

/** `migrate`/`restore` re-read something whose hash did not match. The CLI maps it to exit code 3. */
export class VerificationError extends CredsyncError {
  override name = 'VerificationError';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
