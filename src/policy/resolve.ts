/**
 * `ParsedDocument` → `ResolvedPolicy`: a port of Conjur's
 * `gems/policy-parser/lib/conjur/policy/resolver.rb`.
 *
 * The passes run in Conjur's order and with Conjur's traversal rules (each
 * object is visited once per pass, references included), because the order
 * is observable: namespacing happens before `..` is resolved, `..` before
 * users are renamed to `name@ns`, and default owners are filled in last, so
 * they are never rewritten.
 *
 * Error codes: resolver errors are `validation_failed` (Conjur reports them
 * as `policy_text …` validation errors); a host factory without layers is
 * `policy_invalid` (Conjur raises it from the loader). Unlike Conjur, every
 * error carries the line/column of the statement or reference involved.
 */
import { normalizeCidr } from '../cidr.js';
import { CofferError, PolicyError } from '../errors.js';
import { validateIdentifier } from '../ids.js';
import { hasIllFormedString, hasNulString } from '../text.js';
import { isResourceTag, isRoleTag, recordTypeName } from './parse.js';
import type {
  ParsedDocument,
  ParsedMember,
  ParsedRecord,
  ParsedStatement,
  RecordTag,
} from './parse.js';
import type { RecordStatement, ResolveContext, ResolvedPolicy, SourcePosition, Statement } from './types.js';

/** Conjur's `PoliciesController::KNOWN_POLICY_ATTRIBUTES`. */
export const KNOWN_POLICY_ATTRIBUTES: readonly string[] = [
  'id', 'owner', 'body', 'user', 'annotations', 'restricted_to', 'permit', 'deny', 'role', 'privileges',
  'resource', 'grant', 'revoke', 'member', 'host-factory', 'layers', 'layer', 'variable', 'kind',
  'mime_type', 'delete', 'record', 'group', 'host', 'webservice',
];

/** Anything the traversals walk: statements and the members inside grants. */
type Item = ParsedStatement | ParsedMember;

const ORIGIN: SourcePosition = { line: 1, column: 1 };

/**
 * Resolves ids, owners and order (Conjur's resolver, §2.3 of the reference).
 * The input is not modified.
 *
 * Loading into a policy other than `root` resolves the statements as the body
 * of `!policy {id: <policyId>, owner: <policyOwner>}`, like Conjur; that
 * enclosing policy already exists and is not emitted.
 *
 * @throws PolicyError `validation_failed`: `<type> has a blank id` (the type
 *   is Conjur's class name in snake case: `user`, `host_factory`, `resource`…),
 *   `Invalid relative reference: <id>`, `Dependency cycle encountered between
 *   <a> and <b>`, `<record> is declared more than once` (`user 'alice'`,
 *   `host factory 'x'`, `group role 'x'`), `Illegal absolute id: /<id>`,
 *   `Invalid IP address or CIDR range '<x>'[: …]`.
 * @throws PolicyError `policy_invalid`: `Host factory '<id>' does not include any layers`.
 */
export function resolvePolicy(doc: ParsedDocument, ctx: ResolveContext): ResolvedPolicy {
  // structuredClone keeps shared (aliased) objects shared, which the passes rely on.
  const statements = structuredClone(doc.statements);
  const wrapper = ctx.policyId === 'root' ? undefined : wrapInPolicy(statements, ctx);
  const top: Item[] = wrapper ? [wrapper] : statements;

  resolveAccounts(top, ctx.account);
  resolveNamespaces(top);
  resolveRelativePaths(top);
  resolveUserIds(top);
  const roleOwners = resolveOwners(top, ctx.policyOwner);
  const flat = flatten(top);
  checkDuplicates(flat, ctx.account);
  const ordered = sortRecordsFirst(flat, wrapper, ctx.account);
  checkAbsoluteIds(ordered);
  checkAddressableIds(ordered, wrapper);

  const out: Statement[] = [];
  for (const item of ordered) {
    if (item !== wrapper) out.push(...toStatements(item, roleOwners));
  }
  checkWellFormedText(out);
  return { statements: out, warnings: annotationWarnings(flat) };
}

/**
 * 10. Every string a statement stores (ids, annotation names and values,
 * public keys, CIDRs) must be well-formed Unicode: a YAML `"\ud800"` escape
 * makes a lone UTF-16 surrogate, which SQLite's UTF-8 cannot hold, so what was
 * stored would not be what the policy says (and a later dry run would show it
 * as changed for ever).
 */
function checkWellFormedText(statements: Statement[]): void {
  const bad = statements.find((statement) => hasIllFormedString(statement));
  if (bad) throw resolveError('The policy contains ill-formed Unicode (a lone UTF-16 surrogate, e.g. a "\\ud800" escape)', bad.position);
  // PostgreSQL's TEXT cannot hold U+0000: refused on every backend, so a policy means the same on both.
  const nul = statements.find((statement) => hasNulString(statement));
  if (nul) throw resolveError('The policy contains U+0000 (a "\\0" or "\\x00" escape), which no stored text may hold', nul.position);
}

// ---------------------------------------------------------------------------
// Traversal (Conjur's Resolver#traverse)
// ---------------------------------------------------------------------------

type Handler = (item: Item) => void;

/** Visits each item once per pass; `onPolicy` runs after the handler for policies. */
function traverse(items: readonly Item[], visited: Set<Item>, handler: Handler, onPolicy?: (p: ParsedRecord) => void): void {
  for (const item of items) {
    if (visited.has(item)) continue;
    visited.add(item);
    handler(item);
    if (onPolicy && isPolicy(item)) onPolicy(item);
  }
}

/** Conjur's `referenced_records`: the objects an item points at (a policy's body excluded). */
function referenced(item: Item): Item[] {
  switch (item.node) {
    case 'record':
      return [item.owner, item.role, ...(item.layers ?? [])].filter((r): r is ParsedRecord => r !== undefined);
    case 'member':
      return [item.role];
    case 'grant':
      return [...item.roles, ...item.members];
    case 'revoke':
      return [...item.roles, ...item.members];
    case 'permit':
    case 'deny':
      return [...item.roles, ...item.resources];
    case 'delete':
      return [...item.records];
  }
}

function isPolicy(item: Item): item is ParsedRecord {
  return item.node === 'record' && item.tag === 'policy';
}

/**
 * A pass that visits records and references, tracking the enclosing policy id
 * (Conjur's `PolicyTraversal`).
 */
function policyTraversal(top: Item[], onItem: (item: Item, namespace: string | undefined) => void): void {
  const visited = new Set<Item>();
  let namespace: string | undefined;
  const handler: Handler = (item) => {
    onItem(item, namespace);
    traverse(referenced(item), visited, handler, onPolicy);
  };
  const onPolicy = (policy: ParsedRecord): void => {
    const saved = namespace;
    namespace = policy.id;
    try {
      traverse(policy.body ?? [], visited, handler, onPolicy);
    } finally {
      namespace = saved;
    }
  };
  traverse(top, visited, handler, onPolicy);
}

// ---------------------------------------------------------------------------
// Passes
// ---------------------------------------------------------------------------

function wrapInPolicy(body: ParsedStatement[], ctx: ResolveContext): ParsedRecord {
  return {
    node: 'record',
    tag: 'policy',
    id: ctx.policyId,
    account: ctx.account,
    owner: roleRef(ctx.policyOwner),
    body,
    position: ORIGIN,
  };
}

/** 1. Records and references without an account get the account of the load. */
function resolveAccounts(top: Item[], account: string): void {
  policyTraversal(top, (item) => {
    if (item.node === 'record' && item.account === undefined) item.account = account;
  });
}

/** 2. Prefix ids with the enclosing policy id; a blank id means the policy itself. */
function resolveNamespaces(top: Item[]): void {
  policyTraversal(top, (item, namespace) => {
    if (item.node !== 'record') return;
    const id = item.id;
    if (id === undefined || id.trim() === '') {
      if (namespace === undefined) throw resolveError(`${snakeTypeName(item.tag)} has a blank id`, item.position);
      item.id = namespace;
    } else if (!id.startsWith('/') && namespace !== undefined) {
      item.id = `${namespace}/${id}`;
    }
  });
}

/**
 * 3. Resolve `/abs` and `..` in owners, grant/revoke members, permit/deny roles
 * and annotation values. Nothing else: host-factory layers keep their `..`.
 */
function resolveRelativePaths(top: Item[]): void {
  policyTraversal(top, (item) => {
    switch (item.node) {
      case 'record':
        if (item.owner?.id) item.owner.id = absolutePathOf(item.owner.id, item.owner.position);
        resolveAnnotationPaths(item);
        break;
      case 'grant':
        for (const member of item.members) member.role.id = absolutePathOf(idOf(member.role), member.role.position);
        break;
      case 'revoke':
        for (const member of item.members) member.id = absolutePathOf(idOf(member), member.position);
        break;
      case 'permit':
      case 'deny':
        for (const role of item.roles) role.id = absolutePathOf(idOf(role), role.position);
        break;
      default:
        break;
    }
  });
}

/** An annotation value with a `..` segment is a path relative to the record's own id. */
function resolveAnnotationPaths(record: ParsedRecord): void {
  if (!record.annotations) return;
  for (const [name, value] of record.annotations) {
    if (rubySplit(value, '/').includes('..')) {
      record.annotations.set(name, absolutePathOf(`${idOf(record)}/${value}`, record.position));
    }
  }
}

/** A leading `/` is stripped; each `..` removes itself and the segment before it. */
function absolutePathOf(id: string, position: SourcePosition): string {
  const path = id.startsWith('/') ? id.slice(1) : id;
  const tokens = rubySplit(path, '/');
  for (let at = tokens.indexOf('..'); at >= 0; at = tokens.indexOf('..')) {
    if (at === 0) throw resolveError(`Invalid relative reference: ${path}`, position);
    tokens.splice(at - 1, 2);
  }
  if (tokens.length === 0) throw resolveError(`Invalid relative reference: ${path}`, position);
  return tokens.join('/');
}

/** 4. Users (and `!resource {kind: user}`) inside a namespace become `name@ns-with-dashes`. */
function resolveUserIds(top: Item[]): void {
  policyTraversal(top, (item) => {
    if (item.node !== 'record') return;
    if (item.tag === 'user' || (item.tag === 'resource' && item.kind === 'user')) {
      item.id = userId(idOf(item), item.position);
    }
  });
}

function userId(id: string, position: SourcePosition): string {
  const tokens = rubySplit(id, '/');
  // A valid `..` was resolved by the previous pass; one left here is in a place that pass skips.
  if (tokens.includes('..')) throw resolveError(`Invalid relative reference: ${id}`, position);
  const name = tokens.pop();
  if (name === undefined || tokens.length === 0) return name ?? id;
  return `${name}@${tokens.join('-')}`;
}

/**
 * 5. Records without an owner get the enclosing policy's role, or the load
 * owner at the top level. Only statements are visited, never references.
 *
 * `!role` records have no owner in Conjur (a bare role has no resource); the
 * owner they would get is returned separately so the output can still carry
 * one.
 */
function resolveOwners(top: Item[], loadOwner: string): Map<ParsedRecord, string> {
  const roleOwners = new Map<ParsedRecord, string>();
  const visited = new Set<Item>();
  let owner = loadOwner;
  const handler: Handler = (item) => {
    if (item.node !== 'record') return;
    if (item.tag === 'role') roleOwners.set(item, owner);
    else if (item.owner === undefined) item.owner = roleRef(owner);
  };
  const onPolicy = (policy: ParsedRecord): void => {
    const saved = owner;
    owner = `${policy.account}:policy:${policy.id}`;
    try {
      traverse(policy.body ?? [], visited, handler, onPolicy);
    } finally {
      owner = saved;
    }
  };
  traverse(top, visited, handler, onPolicy);
  return roleOwners;
}

/** 6a. All statements, each once, a policy followed by its body. */
function flatten(top: Item[]): ParsedStatement[] {
  const out: ParsedStatement[] = [];
  const visited = new Set<Item>();
  const handler: Handler = (item) => {
    if (item.node !== 'member') out.push(item);
  };
  const onPolicy = (policy: ParsedRecord): void => traverse(policy.body ?? [], visited, handler, onPolicy);
  traverse(top, visited, handler, onPolicy);
  return out;
}

/** 7. The same record type and id declared twice. */
function checkDuplicates(flat: ParsedStatement[], account: string): void {
  const seen = new Set<string>();
  for (const item of flat) {
    if (item.node !== 'record') continue;
    const key = `${item.tag}\u0000${idOf(item)}`;
    if (seen.has(key)) throw resolveError(`${describe(item, account)} is declared more than once`, item.position);
    seen.add(key);
  }
}

/**
 * 6b. Records first, each after the records it depends on (its owner, a host
 * factory's role and layers) when those are declared in this document; other
 * statements keep document order. Conjur only notices cycles between two
 * records; any cycle is refused here.
 */
function sortRecordsFirst(flat: ParsedStatement[], wrapper: ParsedRecord | undefined, account: string): ParsedStatement[] {
  const records = flat.filter((item): item is ParsedRecord => item.node === 'record');
  const others = flat.filter((item) => item.node !== 'record');
  const byRoleId = new Map<string, ParsedRecord>();
  for (const record of records) {
    // The enclosing policy of a non-root load exists already; depending on it can't form a real cycle.
    if (record === wrapper || !isRoleTag(record.tag)) continue;
    const id = fullIdOf(record);
    if (!byRoleId.has(id)) byRoleId.set(id, record);
  }
  const dependencies = (record: ParsedRecord): ParsedRecord[] =>
    [record.owner, record.role, ...(record.layers ?? [])]
      .filter((ref): ref is ParsedRecord => ref !== undefined && isRoleTag(ref.tag))
      .map((ref) => byRoleId.get(fullIdOf(ref)))
      .filter((dep): dep is ParsedRecord => dep !== undefined && dep !== record);
  return [...dependencyOrder(records, dependencies, account), ...others];
}

/** Depth-first topological order, iterative so long ownership chains can't overflow the stack. */
function dependencyOrder(
  records: ParsedRecord[],
  dependencies: (record: ParsedRecord) => ParsedRecord[],
  account: string,
): ParsedRecord[] {
  const state = new Map<ParsedRecord, 'visiting' | 'done'>();
  const out: ParsedRecord[] = [];
  for (const root of records) {
    if (state.has(root)) continue;
    state.set(root, 'visiting');
    const stack = [{ record: root, deps: dependencies(root), next: 0 }];
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      const dep = frame.deps[frame.next++];
      if (dep === undefined) {
        state.set(frame.record, 'done');
        out.push(frame.record);
        stack.pop();
        continue;
      }
      const seen = state.get(dep);
      if (seen === 'done') continue;
      if (seen === 'visiting') {
        throw resolveError(
          `Dependency cycle encountered between ${describe(dep, account)} and ${describe(frame.record, account)}`,
          frame.record.position,
        );
      }
      state.set(dep, 'visiting');
      stack.push({ record: dep, deps: dependencies(dep), next: 0 });
    }
  }
  return out;
}

/** 8. Subjects (declared ids, grant/revoke roles, permit/deny resources, deleted records) can't stay absolute. */
function checkAbsoluteIds(items: ParsedStatement[]): void {
  for (const item of items) {
    for (const subject of subjects(item)) {
      const id = idOf(subject);
      if (id.startsWith('/')) throw resolveError(`Illegal absolute id: ${id}`, subject.position);
    }
  }
}

/**
 * 9. A declared id must be one a request can name: requests reach a record by
 * its URL path, where `a//b`, `a/` (trailing slash), `.` and `..` segments are
 * normalised away or refused, and ids are at most 4,096 characters
 * (validateIdentifier, the rule every path, host-factory host id and JWT
 * identity already follows). Nesting counts: `!variable ../x` in policy `a`
 * declares `a/../x`. References and `!delete` are not checked, so a record
 * stored before this rule can still be named and removed.
 */
function checkAddressableIds(items: ParsedStatement[], wrapper: ParsedRecord | undefined): void {
  for (const item of items) {
    if (item.node !== 'record' || item === wrapper) continue;
    const id = idOf(item);
    try {
      validateIdentifier(id, `${snakeTypeName(item.tag)} id`);
    } catch (err) {
      if (err instanceof CofferError) throw resolveError(`Invalid id '${clipId(id)}': ${err.message}`, item.position);
      throw err;
    }
    const bad = id.split('/').find((seg) => seg === '' || seg === '.' || seg === '..');
    if (bad !== undefined) {
      const what = bad === '' ? 'an empty path segment (a leading, doubled or trailing slash)' : `a '${bad}' path segment`;
      throw resolveError(`Invalid id '${clipId(id)}': it has ${what}, so no request could address it`, item.position);
    }
  }
}

/** Ids in messages are cut to a readable length (the limit itself is 4,096). */
function clipId(id: string): string {
  return id.length > 200 ? `${id.slice(0, 200)}…` : id;
}

function subjects(item: ParsedStatement): ParsedRecord[] {
  switch (item.node) {
    case 'record':
      return [item];
    case 'grant':
    case 'revoke':
      return item.roles;
    case 'permit':
    case 'deny':
      return item.resources;
    case 'delete':
      return item.records;
  }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

function toStatements(item: ParsedStatement, roleOwners: Map<ParsedRecord, string>): Statement[] {
  switch (item.node) {
    case 'record':
      return [toRecord(item, roleOwners)];
    case 'grant':
      return item.roles.flatMap((role) =>
        item.members.map((member) => ({
          type: 'grant' as const,
          role: fullIdOf(role),
          member: fullIdOf(member.role),
          adminOption: member.admin,
          position: item.position,
        })),
      );
    case 'revoke':
      return item.roles.flatMap((role) =>
        item.members.map((member) => ({
          type: 'revoke' as const,
          role: fullIdOf(role),
          member: fullIdOf(member),
          position: item.position,
        })),
      );
    case 'permit':
    case 'deny': {
      const type = item.node;
      return item.resources.flatMap((resource) =>
        item.privileges.flatMap((privilege) =>
          item.roles.map((role) => ({
            type,
            role: fullIdOf(role),
            privilege,
            resource: fullIdOf(resource),
            position: item.position,
          })),
        ),
      );
    }
    case 'delete':
      return item.records.map((record) => ({ type: 'delete' as const, id: fullIdOf(record), position: item.position }));
  }
}

function toRecord(record: ParsedRecord, roleOwners: Map<ParsedRecord, string>): RecordStatement {
  const id = fullIdOf(record);
  const owner = record.owner ? fullIdOf(record.owner) : roleOwners.get(record);
  if (owner === undefined) throw new Error(`resolver bug: no owner for ${id}`);
  const out: RecordStatement = {
    type: 'record',
    kind: kindOf(record),
    id,
    owner,
    hasRole: isRoleTag(record.tag),
    hasResource: isResourceTag(record.tag),
    annotations: annotationsOf(record),
    position: record.position,
  };
  if (record.restrictedTo && (record.tag === 'user' || record.tag === 'host')) {
    out.restrictedTo = record.restrictedTo.map((cidr) => normalizeRestriction(cidr.value, cidr.position));
  }
  if (record.publicKeys && record.tag === 'user') out.publicKeys = [...record.publicKeys];
  if (record.tag === 'host-factory') out.layers = hostFactoryLayers(record);
  return out;
}

/**
 * User annotations plus those Conjur's loader derives from attributes. As in
 * the loader (`annotations['conjur/kind'] ||= kind`), an explicit annotation wins.
 */
function annotationsOf(record: ParsedRecord): Record<string, string> {
  const entries = new Map(record.annotations ?? []);
  const derive = (name: string, value: string | number | undefined): void => {
    if (value !== undefined && !entries.has(name)) entries.set(name, String(value));
  };
  derive('conjur/kind', record.variableKind);
  derive('conjur/mime_type', record.mimeType);
  derive('conjur/uidnumber', record.uidnumber);
  derive('conjur/gidnumber', record.gidnumber);
  // fromEntries defines own properties, so a `__proto__` annotation stays an annotation.
  return Object.fromEntries(entries);
}

function hostFactoryLayers(record: ParsedRecord): string[] {
  if (record.layers === undefined) {
    throw new PolicyError(
      'policy_invalid',
      `Host factory '${idOf(record)}' does not include any layers`,
      record.position,
    );
  }
  return record.layers.map(fullIdOf);
}

function normalizeRestriction(value: string, position: SourcePosition): string {
  try {
    return normalizeCidr(value);
  } catch (err) {
    if (err instanceof CofferError) throw resolveError(err.message, position);
    throw err;
  }
}

/** Conjur warns when an annotation is named like a policy attribute (`kind`, `owner`…). */
function annotationWarnings(flat: ParsedStatement[]): string[] {
  const names = new Set<string>();
  for (const item of flat) {
    if (item.node === 'record') for (const name of item.annotations?.keys() ?? []) names.add(name);
  }
  return [...names]
    .filter((name) => KNOWN_POLICY_ATTRIBUTES.includes(name))
    .map(
      (name) =>
        `Annotation '${name}' matches a known policy attribute. This annotation will not be treated as a standard attribute and may not have the intended effect.`,
    );
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function resolveError(message: string, position: SourcePosition): PolicyError {
  return new PolicyError('validation_failed', message, position);
}

/** Ids are always set after the namespace pass. */
function idOf(record: ParsedRecord): string {
  return record.id ?? '';
}

/** `user`, `host_factory`, or the `kind` of `!role`/`!resource`. */
function kindOf(record: ParsedRecord): string {
  if (record.tag === 'role' || record.tag === 'resource') {
    // Only an empty `role:`/`resource:` value yields a generic record without a kind.
    if (!record.kind) {
      throw resolveError(`${snakeTypeName(record.tag)} '${idOf(record)}' has no kind`, record.position);
    }
    return record.kind;
  }
  return record.tag === 'host-factory' ? 'host_factory' : record.tag;
}

function fullIdOf(record: ParsedRecord): string {
  return `${record.account ?? ''}:${kindOf(record)}:${idOf(record)}`;
}

/** A `!role` reference from a full id (`Types::Role.new("acct:kind:id")`). */
function roleRef(fullId: string): ParsedRecord {
  const first = fullId.indexOf(':');
  const second = fullId.indexOf(':', first + 1);
  if (first <= 0 || second <= first + 1) throw new Error(`owner must be a full id, got '${fullId}'`);
  return {
    node: 'record',
    tag: 'role',
    account: fullId.slice(0, first),
    kind: fullId.slice(first + 1, second),
    id: fullId.slice(second + 1),
    position: ORIGIN,
  };
}

/** Conjur's class name in snake case, as its blank-id message prints it. */
function snakeTypeName(tag: RecordTag): string {
  return recordTypeName(tag).replace(/(?<=[a-z])(?=[A-Z])/g, '_').toLowerCase();
}

/**
 * Conjur's `to_s` of a record: `user 'alice'`, `host factory 'x'`,
 * `group role 'x'`, `variable resource 'x'`, plus ` in account 'y'` for
 * another account.
 */
function describe(record: ParsedRecord, account: string): string {
  const kind = kindOf(record);
  const what =
    record.tag === 'role' || record.tag === 'resource' ? `${kind} ${record.tag}` : kind.replace(/_/g, ' ');
  const foreign = record.account !== undefined && record.account !== account ? ` in account '${record.account}'` : '';
  return `${what} '${idOf(record)}'${foreign}`;
}

/** Ruby's `String#split('/')`: trailing empty fields are dropped. */
function rubySplit(text: string, separator: string): string[] {
  const parts = text.split(separator);
  while (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}
