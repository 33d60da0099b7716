/** Ids as users type them: `kind:id`, `account:kind:id`, or (where a kind is implied) a bare `id`. */
import { CliError } from '../io.js';
import { EXIT } from '../client/exit-codes.js';

export const RESOURCE_KINDS = ['user', 'host', 'group', 'layer', 'policy', 'variable', 'webservice', 'host_factory', 'public_key'] as const;
export const ROLE_KINDS = ['user', 'host', 'group', 'layer', 'policy', 'host_factory'] as const;

export interface ParsedId {
  account: string;
  kind: string;
  identifier: string;
  full: string;
}

/**
 * `acct:kind:id` when the second part is a kind, else `kind:id` when the first
 * is, else `defaultKind:raw`. Identifiers may themselves contain ':'.
 */
export function parseId(raw: string, account: string, defaultKind?: string, kinds: readonly string[] = RESOURCE_KINDS): ParsedId {
  const parts = raw.split(':');
  let out: ParsedId | undefined;
  if (parts.length >= 3 && kinds.includes(parts[1]!)) {
    out = { account: parts[0]!, kind: parts[1]!, identifier: parts.slice(2).join(':'), full: raw };
  } else if (parts.length >= 2 && kinds.includes(parts[0]!)) {
    out = { account, kind: parts[0]!, identifier: parts.slice(1).join(':'), full: '' };
  } else if (defaultKind) {
    out = { account, kind: defaultKind, identifier: raw, full: '' };
  }
  if (!out || !out.identifier || !out.account) {
    throw new CliError(`'${raw}' is not an id of the form KIND:ID (KIND one of ${kinds.join(', ')})`, EXIT.USAGE);
  }
  out.full = `${out.account}:${out.kind}:${out.identifier}`;
  return out;
}

/** `/{prefix}/{account}/{kind}/{id}` with each segment percent-encoded (slashes in ids included). */
export function idPath(prefix: string, id: ParsedId): string {
  return `/${prefix}/${encodeURIComponent(id.account)}/${encodeURIComponent(id.kind)}/${encodeURIComponent(id.identifier)}`;
}

/** A role for a query parameter: full id, with the session's account when the user gave `kind:id`. */
export function fullRoleId(raw: string, account: string): string {
  return parseId(raw, account, undefined, ROLE_KINDS).full;
}
