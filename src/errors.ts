/**
 * Domain errors. Domain modules throw these; `src/http/errors.ts` is the one
 * place that turns them into Conjur's status codes and JSON bodies. Messages
 * are shown to clients, so they must never contain a secret value, API key,
 * password or token.
 */

export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'not_acceptable'
  | 'conflict'
  | 'policy_conflict'
  | 'payload_too_large'
  | 'unprocessable_entity'
  | 'argument_error'
  | 'validation_failed'
  | 'policy_invalid'
  | 'data_key_invalid'
  | 'too_many_requests'
  | 'service_unavailable'
  | 'bad_gateway'
  | 'internal_error';

export interface ErrorDetail {
  code: string;
  target: string;
  message: string;
}

export interface CofferErrorOptions {
  /** Conjur's `target` (e.g. the resource kind for not_found). */
  target?: string;
  /** Conjur's `details`: an object for not_found, an array for validation_failed. */
  details?: ErrorDetail | ErrorDetail[];
  /** Extra fields merged into the error object (e.g. `innererror`). */
  extra?: Record<string, unknown>;
  /** When true the HTTP layer answers with an empty body (Conjur's `head :forbidden`). */
  emptyBody?: boolean;
  /** Seconds for a `Retry-After` header. */
  retryAfter?: number;
  /** Reason recorded in the audit log; defaults to the message. Never a secret. */
  auditReason?: string;
  cause?: unknown;
}

export class CofferError extends Error {
  readonly code: ErrorCode;
  readonly target?: string;
  readonly details?: ErrorDetail | ErrorDetail[];
  readonly extra?: Record<string, unknown>;
  readonly emptyBody: boolean;
  readonly retryAfter?: number;
  readonly auditReason?: string;

  constructor(code: ErrorCode, message: string, opts: CofferErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CofferError';
    this.code = code;
    this.target = opts.target;
    this.details = opts.details;
    this.extra = opts.extra;
    this.emptyBody = opts.emptyBody ?? false;
    this.retryAfter = opts.retryAfter;
    this.auditReason = opts.auditReason;
  }
}

export const badRequest = (message: string, opts?: CofferErrorOptions) =>
  new CofferError('bad_request', message, opts);
export const unauthorized = (message = 'Unauthorized', opts?: CofferErrorOptions) =>
  new CofferError('unauthorized', message, opts);
/** Conjur answers 403 with an empty body; `auditReason` says why. */
export const forbidden = (auditReason = 'Forbidden', opts?: CofferErrorOptions) =>
  new CofferError('forbidden', 'Forbidden', { emptyBody: true, auditReason, ...opts });
export const unprocessable = (message: string, opts?: CofferErrorOptions) =>
  new CofferError('unprocessable_entity', message, opts);
export const argumentError = (message: string, opts?: CofferErrorOptions) =>
  new CofferError('argument_error', message, opts);

/** "Variable" for variable, "Host factory" for host_factory, capitalised otherwise. */
export function kindTitle(kind: string): string {
  return kind.charAt(0).toUpperCase() + kind.slice(1).replace(/_/g, ' ');
}

/**
 * Conjur's record-not-found error:
 * `{"code":"not_found","message":"Variable 'x' not found in account 'a'","target":"variable",
 *   "details":{"code":"not_found","target":"id","message":"a:variable:x"}}`.
 */
export function recordNotFound(account: string, kind: string, identifier: string): CofferError {
  return new CofferError(
    'not_found',
    `${kindTitle(kind)} '${identifier}' not found in account '${account}'`,
    {
      target: kind,
      details: { code: 'not_found', target: 'id', message: `${account}:${kind}:${identifier}` },
    },
  );
}

export function notFound(message: string, opts?: CofferErrorOptions): CofferError {
  return new CofferError('not_found', message, opts);
}

/** Error thrown by the policy parser/resolver/loader; maps to 422. */
export class PolicyError extends CofferError {
  readonly line?: number;
  readonly column?: number;
  constructor(
    code: 'policy_invalid' | 'validation_failed',
    message: string,
    position?: { line?: number; column?: number },
    opts: CofferErrorOptions = {},
  ) {
    super(code, message, opts);
    this.name = 'PolicyError';
    this.line = position?.line;
    this.column = position?.column;
  }
}

/**
 * Codes that mean the database cannot be written (or reached) right now:
 * SQLite result codes (extended codes included: SQLITE_IOERR_WRITE…), errno
 * codes of the disk under it, and for PostgreSQL the driver's connection
 * failures, SQLSTATE classes 08 (connection exception), 53 (insufficient
 * resources: disk full, out of memory, too many connections), 58 (system
 * error: I/O), 57P01–57P03 (server shutting down, crashed, not accepting
 * connections yet) and 25006 (a read-only transaction: the node reached a
 * standby, before or during a failover).
 */
const STORAGE_FAILURE =
  /^(SQLITE_(FULL|IOERR|READONLY|CANTOPEN)(_[A-Z_]+)?|ENOSPC|EDQUOT|EIO|EROFS|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|CONNECTION_(CLOSED|ENDED|DESTROYED)|CONNECT_TIMEOUT|08[0-9A-Z]{3}|53[0-9A-Z]{3}|58[0-9A-Z]{3}|57P0[1-3]|25006)$/;

/**
 * The storage failure `err` is or was caused by (disk full, I/O error,
 * read-only file system), or undefined. Follows `cause` a few levels, so a
 * wrapped SqliteError is found too.
 */
export function storageFailureOf(err: unknown): { code: string; message: string } | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e instanceof Error; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && STORAGE_FAILURE.test(code)) return { code, message: e.message };
    e = e.cause;
  }
  return undefined;
}

/** What a request that hit a storage failure is answered (503, like an unwritable audit log). */
export function storageUnavailable(cause: unknown): CofferError {
  const failure = storageFailureOf(cause);
  return new CofferError(
    'service_unavailable',
    'The server cannot write to its database (the disk is full or failing), so the request was refused. Check the server log and disk.',
    { cause, auditReason: `storage unavailable (${failure?.code ?? 'I/O error'})` },
  );
}

/**
 * Why a request failed, for its audit event: the error's own reason, a
 * storage failure's code, or "internal error" (an unexpected error's message
 * is for the server log only).
 */
export function auditReasonOf(err: unknown): string {
  if (err instanceof CofferError) return err.auditReason ?? err.message;
  return storageFailureOf(err) ? storageUnavailable(err).auditReason! : 'internal error';
}

/**
 * A stack overflow (V8's RangeError "Maximum call stack size exceeded"):
 * always the input's nesting. Callers say "nested too deeply" instead of
 * showing V8's message.
 */
export function isStackOverflow(err: unknown): boolean {
  return err instanceof RangeError && err.message.includes('call stack');
}
