/**
 * The one place that turns domain errors into Conjur's statuses and bodies
 * (reference §7): `{"error":{"code","message"[,"target"][,"details"]}}`, an
 * empty body for 403, text/plain for the token middleware's 401s.
 * Unexpected errors become a generic 500 whose body never carries the cause.
 */
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { CofferError, PolicyError, isStackOverflow, storageFailureOf, storageUnavailable, type ErrorCode } from '../errors.js';

const STATUS: Record<ErrorCode, ContentfulStatusCode> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  not_acceptable: 406,
  conflict: 409,
  policy_conflict: 409,
  payload_too_large: 413,
  unprocessable_entity: 422,
  argument_error: 422,
  validation_failed: 422,
  policy_invalid: 422,
  data_key_invalid: 422,
  too_many_requests: 429,
  service_unavailable: 503,
  bad_gateway: 502,
  internal_error: 500,
};

export function statusOf(code: ErrorCode): ContentfulStatusCode {
  return STATUS[code];
}

export function errorBody(err: CofferError): Record<string, unknown> {
  const error: Record<string, unknown> = { code: err.code, message: err.message };
  if (err.target !== undefined) error.target = err.target;
  if (err.details !== undefined) error.details = err.details;
  if (err instanceof PolicyError && err.line !== undefined) {
    error.innererror = { line: err.line, column: err.column ?? null };
  }
  if (err.extra) Object.assign(error, err.extra);
  return { error };
}

/** Renders an error; `log` receives unexpected errors (never shown to the client). */
export function renderError(c: Context, err: unknown, log: (err: unknown) => void): Response {
  if (!(err instanceof CofferError)) {
    // A full or failing disk is the operator's to fix, not a bug: 503 like an unwritable audit log.
    if (storageFailureOf(err)) return renderError(c, storageUnavailable(err), log);
    log(err);
    // A stack overflow is the input's nesting, not a server fault: say so, never V8's message.
    if (isStackOverflow(err)) {
      return c.json({ error: { code: 'unprocessable_entity', message: 'Request is nested too deeply to process' } }, 422);
    }
    return c.json({ error: { code: 'internal_error', message: 'Internal server error; see the server log for the request id' } }, 500);
  }
  const status = statusOf(err.code);
  if (err.retryAfter !== undefined) c.header('Retry-After', String(err.retryAfter));
  if (err.code === 'internal_error' || err.code === 'service_unavailable') log(err);
  if (err.emptyBody) return c.body(null, status);
  if (err.code === 'unauthorized' && (err.message === 'Unauthorized' || err.message === 'Authorization missing' || err.message === 'Unauthorized: Invalid token')) {
    // Conjur answers bad credentials with an empty body and token problems with plain text.
    if (err.message === 'Unauthorized') return c.body(null, 401);
    return c.text(err.message, 401);
  }
  return c.json(errorBody(err), status);
}
