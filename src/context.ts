/** Who is acting, passed from the HTTP layer into domain calls. */
import type { RequestInfo } from './audit/log.js';
import type { TokenClaims } from './authn/tokens.js';

export interface Actor {
  account: string;
  /** Full role id, e.g. `acme:host:ci/executor-01`. */
  roleId: string;
  /** Conjur login form: `alice` or `host/ci/executor-01`. */
  login: string;
  /** The access token the request carried, when it carried one. */
  claims?: TokenClaims;
  request: RequestInfo;
}

/** A clock injected everywhere time matters (tests move it). */
export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

export const nowSeconds = (clock: Clock) => Math.floor(clock.nowMs() / 1000);
export const nowIso = (clock: Clock) => new Date(clock.nowMs()).toISOString();
