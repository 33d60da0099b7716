/**
 * Host-factory token values: generation, keyed hashing for lookup, the short
 * id that names a token in audit events, and the request rules for creating
 * them (expiration, count, CIDRs). Tokens have Conjur's form (that of an API
 * key: 32 random bytes as Crockford base32), so they carry 256 bits.
 */
import { createHmac } from 'node:crypto';
import { generateApiKey } from '../authn/api-keys.js';
import { CofferError, argumentError, unprocessable } from '../errors.js';
import { normalizeCidr } from '../cidr.js';

/** Most tokens one request may create (Conjur has no bound; a token is reusable, so few are needed). */
export const MAX_TOKENS_PER_REQUEST = 100;
/** Most CIDRs one token may carry. */
export const MAX_TOKEN_CIDRS = 100;

/** What a presented token must look like before it is even hashed. */
const TOKEN_SHAPE = /^[0-9a-z]{16,128}$/;

export const generateHostFactoryToken = generateApiKey;

export class HostFactoryTokenHasher {
  constructor(private readonly pepper: Buffer) {}

  /**
   * HMAC-SHA-256 under the server pepper. Looking the hash up through an
   * index is not constant-time, but what it compares is a keyed hash an
   * attacker cannot compute, so its timing says nothing about the token.
   */
  hash(token: string): Buffer {
    return createHmac('sha256', this.pepper).update(token, 'utf8').digest();
  }
}

/** True when `text` could be a token (anything else is refused without a lookup). */
export function looksLikeToken(text: string): boolean {
  return TOKEN_SHAPE.test(text);
}

/**
 * The id that names a token in audit events and errors: 16 hex digits of its
 * keyed hash. It identifies the token to someone who holds it (or the data
 * key) and reveals nothing to anyone else.
 */
export function tokenId(hash: Buffer): string {
  return hash.subarray(0, 8).toString('hex');
}

/** Conjur renders expirations as `expiration.utc.iso8601`: seconds, `Z`. */
export function formatExpiration(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const ISO8601 =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

/**
 * Parses an ISO 8601 date or date-time as Ruby's `DateTime.iso8601` does for
 * the forms clients send (`2050-12-31`, `2050-12-31T00:00:00Z`,
 * `…T10:00:00+01:00`, fractions); a missing offset means UTC (as in Ruby, not
 * local time as in `Date.parse`). Impossible dates (February 30th) are refused.
 * Returns unix milliseconds, or undefined when the text is not such a date.
 */
export function parseIso8601(text: string): number | undefined {
  const m = ISO8601.exec(text.trim());
  if (!m) return undefined;
  const [year, month, day, hour = 0, minute = 0, second = 0] = m.slice(1, 7).map((v) => (v === undefined ? undefined : Number(v)));
  const fraction = m[7] === undefined ? 0 : Number(`0.${m[7]}`);
  if (month! < 1 || month! > 12 || day! < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const utc = Date.UTC(year!, month! - 1, day!, hour, minute, second);
  const check = new Date(utc);
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month! - 1 || check.getUTCDate() !== day) return undefined;
  let offsetMinutes = 0;
  const zone = m[8];
  if (zone && zone.toUpperCase() !== 'Z') {
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (oh > 23 || om > 59) return undefined;
    offsetMinutes = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  return utc + Math.floor(fraction * 1000) - offsetMinutes * 60_000;
}

export interface TokenRules {
  /** Unix ms at which the tokens stop working. */
  expiresAt: number;
  count: number;
  /** Normalized CIDRs (`10.0.0.1` → `10.0.0.1/32`). */
  cidr: string[];
}

/**
 * Validates the parameters of `POST /host_factory_tokens` other than the
 * factory. Every problem is a 422 naming the parameter.
 */
export function tokenRules(
  params: { expiration?: string; count?: string; cidr: string[] },
  nowMs: number,
): TokenRules {
  if (params.expiration === undefined || params.expiration.trim() === '') {
    throw argumentError("param is missing or the value is empty: expiration");
  }
  const expiresAt = parseIso8601(params.expiration);
  if (expiresAt === undefined) {
    throw unprocessable(`'expiration' must be an ISO 8601 date-time such as 2050-12-31T00:00:00Z, got '${clip(params.expiration)}'`);
  }
  if (expiresAt <= nowMs) throw unprocessable(`'expiration' must be in the future, got '${clip(params.expiration)}'`);

  let count = 1;
  if (params.count !== undefined && params.count.trim() !== '') {
    const raw = params.count.trim();
    if (!/^\d{1,6}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_TOKENS_PER_REQUEST) {
      throw unprocessable(`'count' must be an integer from 1 to ${MAX_TOKENS_PER_REQUEST}, got '${clip(raw)}'`);
    }
    count = Number(raw);
  }

  if (params.cidr.length > MAX_TOKEN_CIDRS) throw unprocessable(`'cidr' may list at most ${MAX_TOKEN_CIDRS} ranges`);
  const cidr: string[] = [];
  for (const c of params.cidr) {
    if (c.length > 64) throw unprocessable(`Invalid IP address or CIDR range '${clip(c)}'`);
    try {
      const normalized = normalizeCidr(c.trim());
      if (!cidr.includes(normalized)) cidr.push(normalized);
    } catch (err) {
      // Conjur answers a bad CIDR with 422 and the CIDR helper's message.
      if (err instanceof CofferError) throw unprocessable(err.message);
      throw err;
    }
  }
  return { expiresAt, count, cidr };
}

/** Echoed parameters are clipped so an error body cannot be used to reflect large input. */
function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}
