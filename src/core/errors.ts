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
