/** Turns server answers into one clear, safe line and a documented exit code. */
import { CliError } from '../io.js';
import { EXIT } from './exit-codes.js';
import type { HttpResult } from './http.js';

const STATUS_TEXT: Record<number, string> = {
  400: 'bad request',
  401: 'unauthorized (not logged in, or the token expired or was revoked)',
  403: 'forbidden (the role lacks the privilege)',
  404: 'not found (or not visible to this role)',
  405: 'method not allowed',
  406: 'not acceptable',
  409: 'conflict',
  413: 'request too large',
  422: 'unprocessable',
  429: 'too many requests',
  500: 'internal server error',
  503: 'service unavailable',
};

/**
 * Server-provided text made safe for a terminal: no control characters (a
 * hostile server could otherwise inject escape sequences), one line, bounded.
 */
export function sanitize(text: string, max = 500): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '').replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** The server's error message: Conjur's JSON envelope, a dry-run YAML error, or a short text body. */
export function serverMessage(res: HttpResult): string {
  const text = res.body.toString('utf8').trim();
  const type = res.headers['content-type'] ?? '';
  if (text && type.includes('json')) {
    try {
      const j = JSON.parse(text) as any;
      if (j?.error && typeof j.error.message === 'string') {
        const at = j.error.innererror && typeof j.error.innererror.line === 'number' ? ` (line ${j.error.innererror.line}${typeof j.error.innererror.column === 'number' ? `, column ${j.error.innererror.column}` : ''})` : '';
        return sanitize(j.error.message + at);
      }
      if (Array.isArray(j?.errors) && j.errors.length) {
        return sanitize(
          j.errors.map((e: any) => `${typeof e.line === 'number' ? `line ${e.line}${typeof e.column === 'number' ? `, column ${e.column}` : ''}: ` : ''}${e.message ?? ''}`).join('; '),
        );
      }
    } catch {
      /* fall through to the status text */
    }
  }
  if (text && !type.includes('html') && !type.includes('json') && text.length <= 500) return sanitize(text);
  return STATUS_TEXT[res.status] ?? `HTTP ${res.status}`;
}

export function exitCodeFor(status: number): number {
  if (status === 401) return EXIT.UNAUTHENTICATED;
  if (status === 403 || status === 404) return EXIT.NOT_FOUND;
  return EXIT.FAILURE;
}

/** A non-2xx HttpResult as a CliError carrying the server's message and the documented exit code. */
export function httpError(res: HttpResult, context: string): CliError {
  let msg = serverMessage(res);
  if (res.status === 429 && res.headers['retry-after']) msg += ` (retry after ${sanitize(res.headers['retry-after'], 20)} s)`;
  return new CliError(`${context}: ${msg}`, exitCodeFor(res.status));
}
