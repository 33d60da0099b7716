/**
 * Exit codes of the `coffer` client commands (documented in README, "CLI").
 * 3 stays "audit chain broken" because the offline `coffer audit verify
 * --data-dir` already used it before the client commands existed.
 */
export const EXIT = {
  OK: 0,
  /** The server refused (422, 409, 5xx…), a `check` answered "not permitted", or any other failure. */
  FAILURE: 1,
  /** Bad flags or arguments, missing configuration (`coffer init` not run). */
  USAGE: 2,
  /** `audit verify`: the hash chain is broken. */
  AUDIT_BROKEN: 3,
  /** 403 or 404: not found, or not visible / not permitted. */
  NOT_FOUND: 4,
  /** Cannot reach the server: connection, DNS, TLS or timeout. */
  NETWORK: 5,
  /** 401 or no usable credentials: log in again. */
  UNAUTHENTICATED: 6,
} as const;
