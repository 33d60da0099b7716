/**
 * Single-use `jti` bookkeeping for authn-jwt replay protection.
 *
 * @module
 */

/**
 * Remembers which `jti` values a service has accepted until the token that
 * carried them can no longer be valid. The server's implementation persists
 * entries so replay protection survives restarts.
 */
export interface JtiStore {
  /**
   * Records `jti` for `serviceKey` (e.g. `account:service-id`) if it is not
   * already recorded and unexpired. Check and record are one atomic step
   * (two concurrent uses of one jti: exactly one gets `true`). The server's
   * implementation answers asynchronously (a store call).
   *
   * @param expiresAt Epoch **seconds** after which the entry may be forgotten
   *   (the token's `exp` plus the clock tolerance used to verify it).
   * @returns `true` on first use, `false` when the jti was already used.
   */
  markUsed(serviceKey: string, jti: string, expiresAt: number): boolean | Promise<boolean>;
}

/** Options of {@link InMemoryJtiStore}. */
export interface InMemoryJtiStoreOptions {
  /** Clock in epoch milliseconds. */
  readonly now?: () => number;
  /** Expired entries are swept once the map grows past this size. */
  readonly sweepThreshold?: number;
}

/**
 * A process-local {@link JtiStore} for tests and single-process development.
 *
 * @example
 * const store = new InMemoryJtiStore();
 * store.markUsed('acme:gitlab', 'abc', exp); // true
 * store.markUsed('acme:gitlab', 'abc', exp); // false
 */
export class InMemoryJtiStore implements JtiStore {
  readonly #entries = new Map<string, number>();
  readonly #now: () => number;
  readonly #sweepThreshold: number;

  constructor(opts: InMemoryJtiStoreOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#sweepThreshold = opts.sweepThreshold ?? 10_000;
  }

  markUsed(serviceKey: string, jti: string, expiresAt: number): boolean {
    const nowSec = this.#now() / 1000;
    // NUL cannot appear in an account or service id, so keys cannot collide.
    const key = `${serviceKey}\u0000${jti}`;
    const existing = this.#entries.get(key);
    if (existing !== undefined && existing >= nowSec) return false;
    if (this.#entries.size >= this.#sweepThreshold) this.#sweep(nowSec);
    this.#entries.set(key, expiresAt);
    return true;
  }

  /** Number of remembered entries (expired ones included until swept). */
  get size(): number {
    return this.#entries.size;
  }

  #sweep(nowSec: number): void {
    for (const [key, expiresAt] of this.#entries) {
      if (expiresAt < nowSec) this.#entries.delete(key);
    }
  }
}
