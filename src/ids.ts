/**
 * Conjur ids: `account:kind:identifier`. The identifier may contain `/` and
 * `:`; the account and kind may not contain `:`.
 */
import { argumentError } from './errors.js';

export const ROLE_KINDS = ['user', 'host', 'group', 'layer', 'policy', 'host_factory'] as const;
export const RESOURCE_ONLY_KINDS = ['variable', 'webservice', 'public_key'] as const;
export const KNOWN_KINDS = [...ROLE_KINDS, ...RESOURCE_ONLY_KINDS] as const;

export interface ParsedId {
  account: string;
  kind: string;
  identifier: string;
}

const MAX_ID_LENGTH = 4096;

/** Splits `account:kind:identifier`. Returns undefined when the id has fewer than 3 parts. */
export function parseFullId(id: string): ParsedId | undefined {
  const first = id.indexOf(':');
  if (first <= 0) return undefined;
  const second = id.indexOf(':', first + 1);
  if (second <= first + 1 || second === id.length - 1) return undefined;
  return {
    account: id.slice(0, first),
    kind: id.slice(first + 1, second),
    identifier: id.slice(second + 1),
  };
}

export function fullId(account: string, kind: string, identifier: string): string {
  return `${account}:${kind}:${identifier}`;
}

/**
 * Conjur's `make_full_id`: `kind:id` → `account:kind:id`; a full id is kept.
 * Fewer than two parts is an argument error (422).
 */
export function makeFullId(id: string, account: string): string {
  const parts = id.split(':');
  if (parts.length < 2 || parts.some((p, i) => i < 2 && p === '')) {
    throw argumentError(`Invalid id: '${id}' must be of the form kind:identifier or account:kind:identifier`);
  }
  if (parts.length === 2) return `${account}:${id}`;
  return id;
}

/** `alice` → `acct:user:alice`; `host/app/01` → `acct:host:app/01`. */
export function roleIdFromLogin(account: string, login: string): string {
  const slash = login.indexOf('/');
  if (slash > 0) {
    const kind = login.slice(0, slash);
    if ((ROLE_KINDS as readonly string[]).includes(kind)) {
      return fullId(account, kind, login.slice(slash + 1));
    }
  }
  return fullId(account, 'user', login);
}

/** `acct:user:alice` → `alice`; `acct:host:app` → `host/app`. */
export function loginFromRoleId(roleId: string): string {
  const p = parseFullId(roleId);
  if (!p) return roleId;
  return p.kind === 'user' ? p.identifier : `${p.kind}/${p.identifier}`;
}

export function isRoleKind(kind: string): boolean {
  return (ROLE_KINDS as readonly string[]).includes(kind);
}

/**
 * Validates a path identifier taken from a URL, a policy, a request body or
 * a JWT claim. Rejects control characters (NUL included), ill-formed Unicode
 * (a lone UTF-16 surrogate, which a JSON or YAML `\ud800` escape can make:
 * no UTF-8 store can hold it, so the stored id would not be the one asked
 * for) and over-long ids; everything else Conjur accepts is accepted.
 */
export function validateIdentifier(identifier: string, what = 'id'): string {
  if (identifier.length === 0) throw argumentError(`${what} must not be empty`);
  if (identifier.length > MAX_ID_LENGTH) throw argumentError(`${what} is longer than ${MAX_ID_LENGTH} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(identifier)) throw argumentError(`${what} contains a control character`);
  if (!identifier.isWellFormed()) throw argumentError(`${what} contains ill-formed Unicode (a lone UTF-16 surrogate)`);
  return identifier;
}

/** Account names: no `:`, no `/`, no whitespace or control characters. */
export function validateAccountName(name: string): string {
  if (!/^[A-Za-z0-9_.@-][A-Za-z0-9_.@ -]{0,127}$/.test(name) || name.trim() !== name) {
    throw argumentError(
      `Invalid account name '${name}': use letters, digits, '.', '_', '-' or '@' (at most 128 characters)`,
    );
  }
  return name;
}
