/** Conjur's limit/offset rules for listings (reference §1.6, §8 item 22). */
import { unprocessable } from '../errors.js';
import { queryParam, type Ctx } from './request.js';

export const LIST_LIMIT_MAX = 1000;
const MAGIC_LIMIT = 10000;

export interface Paging {
  limit?: number;
  offset?: number;
}

export function parsePaging(c: Ctx, defaultLimit: number | undefined): Paging {
  const rawLimit = queryParam(c, 'limit');
  const rawOffset = queryParam(c, 'offset');
  let limit: number | undefined;
  let offset: number | undefined;
  if (rawLimit !== undefined) {
    if (!/^\d+$/.test(rawLimit) || Number(rawLimit) < 1) {
      throw unprocessable("'limit' contains an invalid value. 'limit' must be a positive integer.");
    }
    limit = Number(rawLimit);
    if (limit > LIST_LIMIT_MAX && limit !== MAGIC_LIMIT) {
      throw unprocessable(`'limit' contains an invalid value. 'limit' must be a positive integer less than or equal to ${LIST_LIMIT_MAX}.`);
    }
  }
  if (rawOffset !== undefined) {
    if (!/^\d+$/.test(rawOffset) || !Number.isSafeInteger(Number(rawOffset))) {
      throw unprocessable(
        `'offset' contains an invalid value. 'offset' must be an integer greater than or equal to 0 and at most ${Number.MAX_SAFE_INTEGER}.`,
      );
    }
    offset = Number(rawOffset);
  }
  if (limit === undefined && offset === undefined) limit = defaultLimit;
  else if (limit === undefined) limit = 10;
  return { limit, offset };
}

/**
 * A whole-number query parameter from `min` to `max` (both safe integers):
 * digits only, so `1e3`, `0x10`, `-1`, `1.0`, ` 1` and values past
 * Number.MAX_SAFE_INTEGER are refused with `message` (422) instead of
 * reaching SQLite as a float or a rounded number.
 */
export function integerParam(raw: string, min: number, max: number, message: string): number {
  const n = /^\d{1,20}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw unprocessable(message);
  return n;
}

export function page<T>(items: T[], p: Paging): T[] {
  const start = p.offset ?? 0;
  return p.limit === undefined ? items.slice(start) : items.slice(start, start + p.limit);
}

export function isTrue(value: string | undefined): boolean {
  return value !== undefined && value.toLowerCase() === 'true';
}
