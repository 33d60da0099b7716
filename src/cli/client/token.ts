/**
 * The client's view of a Conjur access token: the exact JSON to send back
 * (base64 in `Authorization: Token token="…"`) and its lifetime. The CLI never
 * verifies the signature — the server does; it only reads `iat`/`exp` to know
 * when to re-authenticate, as conjur-api-go does.
 */
import { CliError } from '../io.js';
import { EXIT } from './exit-codes.js';

export interface AccessToken {
  /** Authorization header value. */
  header: string;
  /** Lifetime in ms (exp − iat), or 5 minutes when the token has no exp (conjur-api-go's fallback). */
  lifetimeMs: number;
  /** exp in seconds since the epoch, when present. */
  exp?: number;
}

const FALLBACK_LIFETIME_MS = 5 * 60_000;

/** Parses the token JSON (or base64 of it, as some tools store CONJUR_AUTHN_TOKEN). */
export function parseAccessToken(raw: string, origin: string): AccessToken {
  let text = raw.trim();
  if (!text.startsWith('{')) {
    const decoded = Buffer.from(text.replace(/\s+/g, ''), 'base64').toString('utf8').trim();
    if (decoded.startsWith('{')) text = decoded;
  }
  const bad = () => new CliError(`${origin} does not hold a Conjur access token`, EXIT.UNAUTHENTICATED);
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    throw bad();
  }
  const t = obj as Record<string, unknown>;
  if (!t || typeof t.protected !== 'string' || typeof t.payload !== 'string' || typeof t.signature !== 'string') throw bad();
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(Buffer.from(t.payload, 'base64').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw bad();
  }
  const iat = typeof claims.iat === 'number' ? claims.iat : undefined;
  const exp = typeof claims.exp === 'number' ? claims.exp : undefined;
  const lifetimeMs = iat !== undefined && exp !== undefined && exp > iat ? (exp - iat) * 1000 : FALLBACK_LIFETIME_MS;
  return { header: `Token token="${Buffer.from(text).toString('base64')}"`, lifetimeMs, ...(exp !== undefined ? { exp } : {}) };
}
