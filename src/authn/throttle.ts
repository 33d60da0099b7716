/**
 * Throttles failed authentication per (login, client IP): after `maxFailures`
 * failures inside `windowMs`, further attempts get 429 with Retry-After until
 * the window has passed. Successful authentication clears the counter.
 */
import { CofferError } from '../errors.js';
import type { Clock } from '../context.js';

interface Entry {
  failures: number[];
}

export class AuthThrottle {
  private entries = new Map<string, Entry>();

  constructor(
    private readonly clock: Clock,
    private readonly maxFailures = 10,
    private readonly windowMs = 60_000,
  ) {}

  private recent(key: string): number[] {
    const entry = this.entries.get(key);
    if (!entry) return [];
    const cutoff = this.clock.nowMs() - this.windowMs;
    entry.failures = entry.failures.filter((t) => t > cutoff);
    if (entry.failures.length === 0) this.entries.delete(key);
    return entry.failures;
  }

  /** Throws 429 when the key is over its limit. */
  check(key: string): void {
    const failures = this.recent(key);
    if (failures.length >= this.maxFailures) {
      const retryAfter = Math.max(1, Math.ceil((failures[0]! + this.windowMs - this.clock.nowMs()) / 1000));
      throw new CofferError('too_many_requests', `Too many failed authentication attempts; retry after ${retryAfter} s`, {
        retryAfter,
        auditReason: 'throttled: too many failed attempts',
      });
    }
  }

  fail(key: string): void {
    if (this.entries.size > 100_000) this.entries.clear();
    const entry = this.entries.get(key) ?? { failures: [] };
    entry.failures.push(this.clock.nowMs());
    this.entries.set(key, entry);
  }

  succeed(key: string): void {
    this.entries.delete(key);
  }
}
