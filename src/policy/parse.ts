/**
 * Policy YAML → `ParsedDocument`: the first half of Conjur's policy parser
 * (`gems/policy-parser/lib/conjur/policy/yaml/handler.rb` and `types/*.rb`).
 *
 * The YAML text is composed into an AST by the `yaml` package and then
 * walked by hand. No YAML tag ever constructs anything: tags are compared
 * with a fixed allow-list and only select which plain data object the walker
 * builds. That is what keeps `!!js/*`, `!include`, merge keys and other YAML
 * extensions inert.
 *
 * Like Conjur, the walker builds each YAML node once: an alias (`*x`) yields
 * the very object built for its anchor, so aliased records are shared, not
 * copied. The resolver relies on this (an aliased record keeps the id it got
 * where it was anchored).
 *
 * The work is bounded before anything is built (`limits.ts`): a linear
 * pre-scan bounds nodes, lines and aliases, and the tokenizing loop below
 * refuses nesting deeper than `maxDepth` before the composer (which
 * recurses) runs. Aliases are resolved through one map built in one pass, and
 * the values reached through them are expanded at most `maxNodes` times in
 * all, so an alias "billion laughs" stays linear.
 */
import { Composer, CST, isAlias, isMap, isScalar, isSeq, Lexer, LineCounter, Parser, Scalar as YamlScalar, visit, YAMLMap as YamlMapClass, YAMLSeq as YamlSeqClass } from 'yaml';
import type { Alias, Document, Node as YamlNode, Scalar, Tags, YAMLMap, YAMLSeq } from 'yaml';
import { PolicyError } from '../errors.js';
import { DEFAULT_POLICY_LIMITS, depthError, isStackOverflow, prescanPolicy, type PolicyLimits } from './limits.js';
import type { SourcePosition } from './types.js';

// ---------------------------------------------------------------------------
// Output types
// ---------------------------------------------------------------------------

/** Record tags (without the `!`). */
export type RecordTag =
  | 'user'
  | 'host'
  | 'group'
  | 'layer'
  | 'policy'
  | 'variable'
  | 'webservice'
  | 'host-factory'
  | 'role'
  | 'resource';

/** A raw scalar with the place it was written, for errors raised after parsing. */
export interface ParsedScalar {
  value: string;
  position: SourcePosition;
}

/**
 * A record: a declaration when it is a statement (in the document or a policy
 * body), a reference when it is an attribute value (`role: !group admins`).
 * Conjur uses the same class for both, and so do we: a reference may carry
 * every attribute a declaration can, the resolver just ignores them.
 */
export interface ParsedRecord {
  readonly node: 'record';
  readonly tag: RecordTag;
  /** As written; undefined or blank means "blank id". */
  id?: string;
  account?: string;
  /** `!role`/`!resource` only: the kind of the generic record. */
  kind?: string;
  owner?: ParsedRecord;
  /** User-written annotations, values as strings (null → ''). */
  annotations?: Map<string, string>;
  /** `!variable` `kind` (becomes annotation `conjur/kind`). */
  variableKind?: string;
  /** `!variable` `mime_type` (becomes annotation `conjur/mime_type`). */
  mimeType?: string;
  /** `!user` `uidnumber`. */
  uidnumber?: number;
  /** `!group` `gidnumber`. */
  gidnumber?: number;
  /** `!user` `public_keys` lines. */
  publicKeys?: string[];
  /** `!user`/`!host` `restricted_to`, unvalidated (the resolver normalizes). */
  restrictedTo?: ParsedScalar[];
  /** `!host-factory` `layers` (undefined when absent). */
  layers?: ParsedRecord[];
  /** `!host-factory` `role` (parsed, unused by the loader, but a dependency). */
  role?: ParsedRecord;
  /** `!policy` body. */
  body?: ParsedStatement[];
  position: SourcePosition;
}

/** `!member {role: …, admin: true}`, or a role reference wrapped by a grant. */
export interface ParsedMember {
  readonly node: 'member';
  role: ParsedRecord;
  admin: boolean;
  position: SourcePosition;
}

export interface ParsedGrant {
  readonly node: 'grant';
  roles: ParsedRecord[];
  members: ParsedMember[];
  position: SourcePosition;
}

export interface ParsedRevoke {
  readonly node: 'revoke';
  roles: ParsedRecord[];
  members: ParsedRecord[];
  position: SourcePosition;
}

/** `!permit`, or `!deny` (same attributes). */
export interface ParsedPermit {
  readonly node: 'permit' | 'deny';
  roles: ParsedRecord[];
  privileges: string[];
  resources: ParsedRecord[];
  position: SourcePosition;
}

export interface ParsedDelete {
  readonly node: 'delete';
  records: ParsedRecord[];
  position: SourcePosition;
}

export type ParsedStatement = ParsedRecord | ParsedGrant | ParsedRevoke | ParsedPermit | ParsedDelete;

/**
 * A parsed, not yet resolved, policy document. Statements are in document
 * order with nested YAML lists flattened. Objects may be shared (YAML
 * aliases), so treat the whole graph as read-only.
 */
export interface ParsedDocument {
  statements: ParsedStatement[];
}

// ---------------------------------------------------------------------------
// Type system (mirrors Conjur's Types::* classes and their attributes)
// ---------------------------------------------------------------------------

/** Conjur's class names; they appear in error messages. */
export type TypeName =
  | 'User'
  | 'Host'
  | 'Group'
  | 'Layer'
  | 'Policy'
  | 'Variable'
  | 'Webservice'
  | 'HostFactory'
  | 'Role'
  | 'Resource'
  | 'Grant'
  | 'Revoke'
  | 'Permit'
  | 'Deny'
  | 'Delete'
  | 'Member'
  | 'Record'
  | 'Hash';

const TAG_TYPES: ReadonlyMap<string, TypeName> = new Map([
  ['!user', 'User'],
  ['!host', 'Host'],
  ['!group', 'Group'],
  ['!layer', 'Layer'],
  ['!policy', 'Policy'],
  ['!variable', 'Variable'],
  ['!webservice', 'Webservice'],
  ['!host-factory', 'HostFactory'],
  ['!role', 'Role'],
  ['!resource', 'Resource'],
  ['!grant', 'Grant'],
  ['!revoke', 'Revoke'],
  ['!permit', 'Permit'],
  ['!deny', 'Deny'],
  ['!delete', 'Delete'],
  ['!member', 'Member'],
]);

const RECORD_TAGS: Readonly<Partial<Record<TypeName, RecordTag>>> = {
  User: 'user',
  Host: 'host',
  Group: 'group',
  Layer: 'layer',
  Policy: 'policy',
  Variable: 'variable',
  Webservice: 'webservice',
  HostFactory: 'host-factory',
  Role: 'role',
  Resource: 'resource',
};

const TAG_TO_TYPE: Readonly<Record<RecordTag, TypeName>> = {
  user: 'User',
  host: 'Host',
  group: 'Group',
  layer: 'Layer',
  policy: 'Policy',
  variable: 'Variable',
  webservice: 'Webservice',
  'host-factory': 'HostFactory',
  role: 'Role',
  resource: 'Resource',
};

/** Conjur's class name for a record tag (`host-factory` → `HostFactory`). */
export function recordTypeName(tag: RecordTag): TypeName {
  return TAG_TO_TYPE[tag];
}

/** Records that are roles (Conjur's `role?`): everything but resource-only records. */
export function isRoleTag(tag: RecordTag): boolean {
  return tag !== 'variable' && tag !== 'webservice' && tag !== 'resource';
}

/** Records that are resources (Conjur's `resource?`): everything but `!role`. */
export function isResourceTag(tag: RecordTag): boolean {
  return tag !== 'role';
}

/** YAML core tags that Conjur ignores (Psych reports them as `tag:yaml.org,2002:*`, which its `!x` match skips). */
const TRANSPARENT_CORE_TAGS = new Set(['str', 'int', 'float', 'bool', 'null', 'seq', 'map']);
const CORE_TAG_PREFIX = 'tag:yaml.org,2002:';

type Check =
  | 'string'
  | 'integer'
  | 'boolean'
  | 'cidr'
  | 'hash'
  | 'role'
  | 'resource'
  | 'layer'
  | 'member'
  | 'statements';

interface AttributeSpec {
  /** Singular name: the name Conjur uses in messages and the bag key. */
  field: string;
  check: Check;
  plural: boolean;
  /** Type given to untagged YAML values of this attribute. */
  hint?: TypeName;
}

type AttributeTable = Readonly<Record<string, AttributeSpec>>;

function attr(field: string, check: Check, plural = false, hint?: TypeName): AttributeSpec {
  return { field, check, plural, hint };
}

/** Adds the plural alias (`members` for `member`) of every plural attribute. */
function table(...specs: AttributeSpec[]): AttributeTable {
  const out: Record<string, AttributeSpec> = {};
  for (const spec of specs) {
    out[spec.field] = spec;
    if (spec.plural) out[`${spec.field}s`] = spec;
  }
  return out;
}

const RESOURCE_BASE = [
  attr('id', 'string'),
  attr('account', 'string'),
  attr('owner', 'role', false, 'Role'),
  attr('annotations', 'hash', false, 'Hash'),
];
const ROLE_REFS = attr('role', 'role', true, 'Role');

const ATTRIBUTES: Readonly<Record<TypeName, AttributeTable>> = {
  User: table(
    ...RESOURCE_BASE,
    attr('uidnumber', 'integer'),
    attr('public_key', 'string', true),
    attr('restricted_to', 'cidr', true),
  ),
  Host: table(...RESOURCE_BASE, attr('restricted_to', 'cidr', true)),
  Group: table(...RESOURCE_BASE, attr('gidnumber', 'integer')),
  Layer: table(...RESOURCE_BASE),
  Policy: table(...RESOURCE_BASE, attr('body', 'statements')),
  Variable: table(...RESOURCE_BASE, attr('kind', 'string'), attr('mime_type', 'string')),
  Webservice: table(...RESOURCE_BASE),
  HostFactory: table(...RESOURCE_BASE, attr('role', 'role', false, 'Role'), attr('layer', 'layer', true, 'Layer')),
  Role: table(attr('id', 'string'), attr('kind', 'string'), attr('account', 'string')),
  Resource: table(...RESOURCE_BASE, attr('kind', 'string')),
  Grant: table(ROLE_REFS, attr('member', 'member', true, 'Member')),
  // Conjur types revoke members as Member but checks them as roles, so an
  // untagged `{role: …}` mapping is refused with "Expected a Role".
  Revoke: table(ROLE_REFS, attr('member', 'role', true, 'Member')),
  Permit: table(ROLE_REFS, attr('privilege', 'string', true), attr('resource', 'resource', true, 'Resource')),
  Deny: table(ROLE_REFS, attr('privilege', 'string', true), attr('resource', 'resource', true, 'Resource')),
  Delete: table(attr('record', 'resource', true, 'Record')),
  Member: table(attr('role', 'role', true, 'Role'), attr('admin', 'boolean')),
  Record: table(),
  Hash: table(),
};

// ---------------------------------------------------------------------------
// Intermediate values built from YAML nodes
// ---------------------------------------------------------------------------

type RubyClass = 'String' | 'Integer' | 'Float' | 'TrueClass' | 'FalseClass' | 'NilClass';

/** An untyped scalar, classified the way Conjur's SafeYAML guesses types. */
interface Primitive {
  readonly vt: 'primitive';
  text: string;
  rubyClass: RubyClass;
  position: SourcePosition;
}

interface SeqValue {
  readonly vt: 'seq';
  items: Value[];
  position: SourcePosition;
}

interface HashValue {
  readonly vt: 'hash';
  entries: Map<string, string>;
  position: SourcePosition;
}

/** A typed object with no use of its own (an untagged `record:` mapping: Conjur's abstract `Record`). */
interface Opaque {
  readonly vt: 'opaque';
  typeName: TypeName;
  position: SourcePosition;
}

type ParsedObject = ParsedStatement | ParsedMember;

/** A built statement, record or member (shared when reached through an alias). */
interface ObjectValue {
  readonly vt: 'object';
  object: ParsedObject;
  position: SourcePosition;
}

type Value = Primitive | SeqValue | HashValue | Opaque | ObjectValue;

const BUILDING = Symbol('building');

/** Keys of objects being built, to a converted attribute value. */
type Bag = Map<string, unknown>;

interface BuildContext {
  /** The attribute the node is the value of (undefined for sequence entries). */
  attribute?: string;
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

/**
 * Parses Conjur policy YAML.
 *
 * @throws PolicyError `policy_invalid` with 1-based line/column for YAML
 *   syntax errors, unknown tags (`Unrecognized data type '!foo'`), unknown
 *   attributes (`No such attribute 'k' on type User`), repeated attributes
 *   (`Duplicate attribute: k`), type mismatches (`Expected a Role for field
 *   'role', got Variable`), several documents and a non-sequence root.
 */
export function parsePolicy(text: string, limits: PolicyLimits = DEFAULT_POLICY_LIMITS): ParsedDocument {
  prescanPolicy(text, limits);
  const lineCounter = new LineCounter();
  try {
    const { docs, tokenStarts } = compose(text, lineCounter, limits.maxDepth);
    const doc = singleDocument(docs, lineCounter, limits.maxDepth);
    if (!doc) return { statements: [] };
    return new Walker(doc, lineCounter, tokenStarts, text, limits).document();
  } catch (err) {
    // Depth is bounded before anything recursive runs; should a stack still
    // overflow (a smaller stack), it is a 422 naming the limit, never a 500.
    if (isStackOverflow(err)) throw depthError(limits.maxDepth, { line: 1, column: 1 });
    throw err;
  }
}

/**
 * The allow-listed tags, registered so the composer neither warns about them
 * (a warning is an Error with a stack trace: slow on big policies) nor does
 * anything with them: each resolver returns the node or string unchanged.
 */
const INERT_TAGS: Tags = [...TAG_TYPES.keys()].flatMap((tag): Tags => [
  { tag, resolve: (text: string) => text },
  { tag, collection: 'map', resolve: (map: unknown) => map },
  { tag, collection: 'seq', resolve: (seq: unknown) => seq },
]);

function compose(
  text: string,
  lineCounter: LineCounter,
  maxDepth: number,
): { docs: Document.Parsed[]; tokenStarts: Map<unknown, number> } {
  // Parser.parse(), unrolled to check the parser's stack of open collections
  // (document, block and flow collections) after every token: nesting is
  // refused as soon as it passes the limit, before any recursion.
  const parser = new Parser(lineCounter.addNewLine);
  lineCounter.addNewLine(0);
  const tokens: CST.Token[] = [];
  // The stack holds the document and the collections; allow one level for the document.
  const maxStack = maxDepth + 1;
  for (const lexeme of new Lexer().lex(text)) {
    for (const token of parser.next(lexeme)) tokens.push(token);
    if (parser.stack.length > maxStack) throw depthError(maxDepth, linePos(lineCounter, parser.offset));
  }
  for (const token of parser.end()) tokens.push(token);
  const composer = new Composer({
    customTags: INERT_TAGS,
    keepSourceTokens: true,
    // Duplicates are reported by the walker with Conjur's wording.
    uniqueKeys: false,
    merge: false,
    prettyErrors: false,
  });
  const docs = Array.from(composer.compose(tokens, true, text.length));
  return { docs, tokenStarts: propertyStarts(tokens) };
}

/**
 * A node's range starts at its value; an error about `- !user\n  id: x` should
 * point at the `!user` tag (or `&anchor`) instead. The CST has those property
 * tokens in the enclosing collection item, so map each value token to the
 * offset of its first property.
 */
function propertyStarts(tokens: CST.Token[]): Map<unknown, number> {
  const starts = new Map<unknown, number>();
  const firstProperty = (list: CST.SourceToken[] | undefined): number | undefined =>
    list?.find((t) => t.type === 'tag' || t.type === 'anchor')?.offset;
  for (const token of tokens) {
    if (token.type !== 'document') continue;
    CST.visit(token, (item) => {
      const before = firstProperty(item.start);
      const between = firstProperty(item.sep);
      if (item.key) {
        if (before !== undefined) starts.set(item.key, before);
        if (item.value && between !== undefined) starts.set(item.value, between);
      } else if (item.value) {
        const at = before ?? between;
        if (at !== undefined) starts.set(item.value, at);
      }
    });
  }
  return starts;
}

/** Reports YAML errors and extra documents; returns undefined for an empty policy. */
function singleDocument(docs: Document.Parsed[], lineCounter: LineCounter, maxDepth: number): Document.Parsed | undefined {
  for (const doc of docs) {
    const error = doc.errors[0];
    if (error) {
      // The composer reports errors thrown inside it (a tag resolver's stack
      // overflow, say) as YAML errors carrying the original message.
      if (error.message.includes('call stack')) throw depthError(maxDepth, linePos(lineCounter, error.pos[0]));
      throw new PolicyError('policy_invalid', error.message, linePos(lineCounter, error.pos[0]));
    }
  }
  const extra = docs[1];
  if (extra) {
    throw new PolicyError(
      'policy_invalid',
      'A policy must be a single YAML document',
      linePos(lineCounter, extra.range[0]),
    );
  }
  const doc = docs[0];
  if (!doc || doc.contents === null) return undefined;
  const root = doc.contents;
  if (isScalar(root) && root.value === null && root.source === '') return undefined;
  return doc;
}

function linePos(lineCounter: LineCounter, offset: number): SourcePosition {
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

// ---------------------------------------------------------------------------
// The walker
// ---------------------------------------------------------------------------

class Walker {
  private readonly built = new Map<YamlNode, Value | typeof BUILDING>();
  /** Each alias's anchored node, found in one pass (yaml's `Alias.resolve` walks the whole document per call). */
  private readonly aliasTargets = new Map<Alias, YamlNode>();
  private depth = 0;
  /** Values still allowed to be expanded while flattening lists (aliases may reach one list many times). */
  private expansions: number;
  /** Deepest build recursion: a node is one level below its collection; aliases may add a level each. */
  private readonly maxBuildDepth: number;

  constructor(
    private readonly doc: Document.Parsed,
    private readonly lineCounter: LineCounter,
    private readonly tokenStarts: Map<unknown, number>,
    private readonly text: string,
    private readonly limits: PolicyLimits,
  ) {
    this.expansions = limits.maxNodes;
    this.maxBuildDepth = 2 * limits.maxDepth + 2;
  }

  document(): ParsedDocument {
    this.checkAnchors();
    const root = this.doc.contents as YamlNode;
    if (!isSeq(root)) {
      const what = isMap(root) ? 'mapping' : 'scalar';
      throw this.error(`Unexpected ${what}: a policy must be a sequence of statements`, root);
    }
    // Through build(), so an alias inside an anchored root is caught like any other.
    return { statements: this.statements(this.build(root, undefined, {}) as SeqValue) };
  }

  // -- positions and errors -------------------------------------------------

  private position(node: YamlNode): SourcePosition {
    const token = (node as { srcToken?: unknown }).srcToken;
    const mapped = token !== undefined ? this.tokenStarts.get(token) : undefined;
    const offset = mapped ?? this.propertiesBefore(node, node.range?.[0] ?? 0);
    return linePos(this.lineCounter, offset);
  }

  /**
   * An empty value (`- !layer` at the end of a line) has no CST token of its
   * own, and its range starts after its properties: step back over them.
   */
  private propertiesBefore(node: YamlNode, offset: number): number {
    const props = [node.tag, node.anchor === undefined ? undefined : `&${node.anchor}`];
    let at = offset;
    for (let found = true; found; ) {
      found = false;
      let before = at;
      while (before > 0 && (this.text[before - 1] === ' ' || this.text[before - 1] === '\t')) before--;
      for (const prop of props) {
        // (startsWith clamps a negative position to 0: without the bound this never ends at the text's start.)
        if (prop && before >= prop.length && this.text.startsWith(prop, before - prop.length)) {
          at = before - prop.length;
          found = true;
        }
      }
    }
    return at;
  }

  private error(message: string, at: YamlNode | SourcePosition): PolicyError {
    const position = 'line' in at ? at : this.position(at);
    return new PolicyError('policy_invalid', message, position);
  }

  /**
   * Conjur refuses a second anchor with the same name (YAML would let it
   * shadow the first). The same pass, in document order, maps each alias to
   * its anchor (an alias before its anchor stays unmapped: "Unknown anchor").
   */
  private checkAnchors(): void {
    const anchors = new Map<string, YamlNode>();
    visit(this.doc, (_key, node) => {
      // A flow map's implicit value (`{a, b}`) is visited as null.
      if (node === null || typeof node !== 'object') return;
      if (isAlias(node)) {
        const target = anchors.get(node.source);
        if (target) this.aliasTargets.set(node, target);
        return;
      }
      const anchor = (node as { anchor?: string }).anchor;
      if (!anchor) return;
      if (anchors.has(anchor)) throw this.error(`Duplicate anchor ${anchor}`, node as YamlNode);
      anchors.set(anchor, node as YamlNode);
    });
  }

  // -- building values from nodes -------------------------------------------

  private build(node: YamlNode | null | undefined, hint: TypeName | undefined, ctx: BuildContext, at?: YamlNode): Value {
    if (node === null || node === undefined) {
      return { vt: 'primitive', text: '', rubyClass: 'NilClass', position: at ? this.position(at) : { line: 1, column: 1 } };
    }
    if (isAlias(node)) return this.buildAlias(node, hint, ctx);
    if (++this.depth > this.maxBuildDepth) throw depthError(this.limits.maxDepth, this.position(node));
    try {
      const anchored = Boolean((node as { anchor?: string }).anchor);
      if (anchored) this.built.set(node, BUILDING);
      const value = this.buildNode(node, hint, ctx);
      if (anchored) this.built.set(node, value);
      return value;
    } finally {
      this.depth--;
    }
  }

  private buildAlias(node: Alias, hint: TypeName | undefined, ctx: BuildContext): Value {
    const target = this.aliasTargets.get(node);
    if (!target) throw this.error(`Unknown anchor '${node.source}'`, node);
    const cached = this.built.get(target);
    if (cached === BUILDING) throw this.error(`Alias '*${node.source}' refers to a node that contains it`, node);
    return cached ?? this.build(target, hint, ctx);
  }

  private buildNode(node: YamlNode, hint: TypeName | undefined, ctx: BuildContext): Value {
    this.requirePlain(node);
    if (isScalar(node)) return this.buildScalar(node, hint);
    if (isMap(node)) return this.buildMap(node, hint, ctx);
    if (isSeq(node)) return this.buildSeq(node, hint);
    throw this.error('Unexpected YAML node', node);
  }

  /**
   * Only plain YAML data reaches the walker: a scalar holding a string,
   * number, boolean or null, and plain maps and sequences. The YAML 1.1 types
   * (sets, ordered maps, pairs, binary, timestamps) are subclasses or
   * non-string values; their tags are refused by `tagType`, and whatever
   * else produces one (a `%YAML 1.1` directive) is refused here.
   */
  private requirePlain(node: YamlNode): void {
    this.tagType(node);
    const cls = Object.getPrototypeOf(node);
    if (cls === YamlMapClass.prototype || cls === YamlSeqClass.prototype) return;
    if (cls === YamlScalar.prototype) {
      const value = (node as Scalar).value;
      const type = typeof value;
      if (value === null || type === 'string' || type === 'number' || type === 'boolean' || type === 'bigint') return;
    }
    const what = cls?.constructor?.name === 'Scalar' ? `${Object.prototype.toString.call((node as Scalar).value).slice(8, -1)} scalar` : 'collection';
    throw this.error(`Unsupported YAML ${what}: a policy holds only plain strings, numbers, booleans, nulls, mappings and sequences`, node);
  }

  /**
   * Resolves a node's tag against the allow-list. Returns the type for a
   * policy tag, undefined for no tag (or a transparent core tag).
   */
  private tagType(node: YamlNode): TypeName | undefined {
    const tag = node.tag;
    if (tag === undefined) return undefined;
    const type = TAG_TYPES.get(tag);
    if (type) return type;
    if (tag.startsWith(CORE_TAG_PREFIX)) {
      const name = tag.slice(CORE_TAG_PREFIX.length);
      if (TRANSPARENT_CORE_TAGS.has(name)) return undefined;
      throw this.error(`Unrecognized data type '!!${name}'`, node);
    }
    throw this.error(`Unrecognized data type '${tag}'`, node);
  }

  private buildScalar(node: Scalar, hint: TypeName | undefined): Value {
    const type = this.tagType(node);
    const position = this.position(node);
    const text = scalarText(node);
    // Conjur gives an untagged scalar the attribute's type only when that type
    // is a concrete record (`layers: [ myapp ]`); Role/Resource/Member hints
    // would create kindless records, so those stay plain and fail the type check.
    const recordType = type ?? (hint === 'Layer' ? hint : undefined);
    if (!recordType && isEmptyPlain(node) && (hint === 'Role' || hint === 'Resource')) {
      // `resource:` with nothing after it: Conjur builds a record with a blank
      // id, so the resolver reports "resource has a blank id" (cucumber
      // policy_load_errors) instead of silently dropping the attribute.
      const tag = hint === 'Role' ? 'role' : 'resource';
      return { vt: 'object', object: { node: 'record', tag, id: '', position }, position };
    }
    if (recordType) {
      if (!RECORD_TAGS[recordType]) throw this.error(`No such attribute 'id' on type ${recordType}`, node);
      return this.materialize(recordType, new Map([['id', text]]), position);
    }
    const forcedString = node.tag === `${CORE_TAG_PREFIX}str`;
    return { vt: 'primitive', text, rubyClass: forcedString ? 'String' : classify(node, text), position };
  }

  private buildSeq(node: YAMLSeq, hint: TypeName | undefined): SeqValue {
    // Conjur ignores tags on sequences; only refuse the unknown ones.
    this.tagType(node);
    const items = node.items.map((item) => this.build(item as YamlNode, hint, {}, node));
    return { vt: 'seq', items, position: this.position(node) };
  }

  private buildMap(node: YAMLMap, hint: TypeName | undefined, ctx: BuildContext): Value {
    const type = this.tagType(node) ?? hint;
    if (!type) {
      const message =
        ctx.attribute === undefined
          ? 'No type given or inferred for sequence entry'
          : `Attribute '${ctx.attribute}' can't be a mapping`;
      throw this.error(message, node);
    }
    if (type === 'Hash') return this.buildHash(node);
    const bag: Bag = new Map();
    const seenKeys = new Set<string>();
    for (const pair of node.items) {
      const keyNode = pair.key as YamlNode | null;
      const key = this.keyText(keyNode, node);
      const spec = ATTRIBUTES[type][key];
      if (seenKeys.has(key) || (spec && bag.has(spec.field))) {
        throw this.error(`Duplicate attribute: ${key}`, keyNode ?? node);
      }
      seenKeys.add(key);
      if (!spec) throw this.error(`No such attribute '${key}' on type ${type}`, keyNode ?? node);
      const value = this.build(pair.value as YamlNode | null, spec.hint, { attribute: key }, keyNode ?? node);
      bag.set(spec.field, this.convert(spec, value));
    }
    return this.materialize(type, bag, this.position(node));
  }

  /** `annotations:` — any key, scalar values kept as written. */
  private buildHash(node: YAMLMap): HashValue {
    const entries = new Map<string, string>();
    for (const pair of node.items) {
      const keyNode = pair.key as YamlNode | null;
      const key = this.keyText(keyNode, node);
      if (keyNode && isMergeKey(keyNode)) throw this.error('Merge keys (<<) are not supported in a policy', keyNode);
      if (entries.has(key)) throw this.error(`Duplicate attribute: ${key}`, keyNode ?? node);
      const value = this.build(pair.value as YamlNode | null, undefined, { attribute: key }, keyNode ?? node);
      if (value.vt !== 'primitive') {
        throw this.error(`Expected a string for annotation '${key}', got ${typeNameOf(value)}`, value.position);
      }
      entries.set(key, value.text);
    }
    return { vt: 'hash', entries, position: this.position(node) };
  }

  private keyText(keyNode: YamlNode | null, parent: YamlNode): string {
    if (keyNode === null) return '';
    const node = isAlias(keyNode) ? this.aliasTargets.get(keyNode) : keyNode;
    if (!node || !isScalar(node)) throw this.error('Attribute names must be scalars', keyNode ?? parent);
    // A merge key (`<<`, a special value under `%YAML 1.1`) is only its text
    // here: an unknown attribute on records (Conjur's message), refused in
    // annotations by `buildHash`.
    if (isMergeKey(node)) return '<<';
    this.requirePlain(node);
    return scalarText(node);
  }

  // -- attribute type checks (Conjur's TypeChecking#expect_*) -----------------

  private convert(spec: AttributeSpec, value: Value): unknown {
    if (isNil(value)) return undefined;
    if (spec.check === 'statements') return this.bodyStatements(value, spec.field);
    if (value.vt === 'seq') {
      if (!spec.plural) throw this.expected(spec, value);
      return this.flatten(value).map((item) => this.convertOne(spec, item));
    }
    const one = this.convertOne(spec, value);
    return spec.plural ? [one] : one;
  }

  private convertOne(spec: AttributeSpec, value: Value): unknown {
    switch (spec.check) {
      case 'string':
        if (value.vt === 'primitive' && value.rubyClass !== 'NilClass') return value.text;
        break;
      case 'integer':
        if (value.vt === 'primitive' && value.rubyClass === 'Integer') return parseRubyInteger(value.text);
        break;
      case 'boolean':
        if (value.vt === 'primitive' && (value.rubyClass === 'TrueClass' || value.rubyClass === 'FalseClass')) {
          return value.rubyClass === 'TrueClass';
        }
        break;
      case 'cidr':
        if (value.vt === 'primitive') return { value: value.text, position: value.position } satisfies ParsedScalar;
        break;
      case 'hash':
        if (value.vt === 'hash') return value.entries;
        break;
      case 'role':
        if (isRecord(value) && isRoleTag(value.object.tag)) return value.object;
        break;
      case 'resource':
        if (isRecord(value) && isResourceTag(value.object.tag)) return value.object;
        break;
      case 'layer':
        if (isRecord(value) && value.object.tag === 'layer') return value.object;
        break;
      case 'member':
        if (value.vt === 'object' && value.object.node === 'member') return value.object;
        if (isRecord(value) && isRoleTag(value.object.tag)) return wrapMember(value.object);
        break;
      case 'statements':
        break;
    }
    throw this.expected(spec, value);
  }

  private expected(spec: AttributeSpec, value: Value): PolicyError {
    const wanted = EXPECTED_NAMES[spec.check];
    return this.error(`Expected a ${wanted} for field '${spec.field}', got ${typeNameOf(value)}`, value.position);
  }

  private bodyStatements(value: Value, field: string): ParsedStatement[] {
    if (value.vt !== 'seq') {
      throw this.error(`Expected a sequence for field '${field}', got ${typeNameOf(value)}`, value.position);
    }
    return this.statements(value);
  }

  /** Flattens nested lists (aliases to whole lists included) into statements. */
  private statements(seq: SeqValue): ParsedStatement[] {
    const seen = new Set<ParsedObject>();
    const out: ParsedStatement[] = [];
    for (const item of this.flatten(seq)) {
      if (item.vt === 'object' && item.object.node !== 'member') {
        if (seen.has(item.object)) continue;
        seen.add(item.object);
        out.push(item.object);
      } else if (item.vt === 'primitive') {
        throw this.error('No type given or inferred for sequence entry', item.position);
      } else {
        throw this.error(`Expected a policy statement, got ${typeNameOf(item)}`, item.position);
      }
    }
    return out;
  }

  /** `flattenValues`, charging every value produced to the document's expansion budget. */
  private flatten(seq: SeqValue): Value[] {
    const out = flattenValues(seq);
    this.expansions -= out.length;
    if (this.expansions < 0) {
      const max = this.limits.maxNodes.toLocaleString('en-US');
      throw this.error(`Policy expands to more than ${max} values through aliases (limit: ${max})`, seq.position);
    }
    return out;
  }

  // -- typed objects ---------------------------------------------------------

  private materialize(type: TypeName, bag: Bag, position: SourcePosition): Value {
    if (type === 'Record' || type === 'Hash') return { vt: 'opaque', typeName: type, position };
    return { vt: 'object', object: this.object(type, bag, position), position };
  }

  private object(type: Exclude<TypeName, 'Record' | 'Hash'>, bag: Bag, position: SourcePosition): ParsedObject {
    const list = <T>(field: string): T[] => (bag.get(field) as T[] | undefined) ?? [];
    switch (type) {
      case 'Grant':
        return { node: 'grant', roles: list('role'), members: list('member'), position };
      case 'Revoke':
        return { node: 'revoke', roles: list('role'), members: list('member'), position };
      case 'Permit':
      case 'Deny':
        return {
          node: type === 'Permit' ? 'permit' : 'deny',
          roles: list('role'),
          privileges: list('privilege'),
          resources: list('resource'),
          position,
        };
      case 'Delete': {
        const records = list<ParsedRecord>('record');
        if (records.length === 0) throw this.error("Missing attribute 'record' on type Delete", position);
        return { node: 'delete', records, position };
      }
      case 'Member':
        return this.member(bag, position);
      default:
        return this.record(RECORD_TAGS[type] as RecordTag, type, bag, position);
    }
  }

  private member(bag: Bag, position: SourcePosition): ParsedMember {
    const roles = (bag.get('role') as ParsedRecord[] | undefined) ?? [];
    const role = roles[0];
    if (!role) throw this.error("Missing attribute 'role' on type Member", position);
    if (roles.length > 1) throw this.error("Expected a single Role for field 'role' on type Member", position);
    return { node: 'member', role, admin: (bag.get('admin') as boolean | undefined) ?? false, position };
  }

  private record(tag: RecordTag, type: TypeName, bag: Bag, position: SourcePosition): ParsedRecord {
    const record: ParsedRecord = { node: 'record', tag, position };
    const str = (field: string) => bag.get(field) as string | undefined;
    assignDefined(record, 'id', str('id'));
    assignDefined(record, 'account', str('account'));
    assignDefined(record, 'owner', bag.get('owner') as ParsedRecord | undefined);
    assignDefined(record, 'annotations', bag.get('annotations') as Map<string, string> | undefined);
    if (tag === 'role' || tag === 'resource') {
      const kind = str('kind');
      if (kind === undefined || kind.trim() === '') throw this.error(`Missing attribute 'kind' on type ${type}`, position);
      record.kind = kind;
    }
    if (tag === 'variable') {
      assignDefined(record, 'variableKind', str('kind'));
      assignDefined(record, 'mimeType', str('mime_type'));
    }
    assignDefined(record, 'uidnumber', bag.get('uidnumber') as number | undefined);
    assignDefined(record, 'gidnumber', bag.get('gidnumber') as number | undefined);
    assignDefined(record, 'publicKeys', bag.get('public_key') as string[] | undefined);
    assignDefined(record, 'restrictedTo', bag.get('restricted_to') as ParsedScalar[] | undefined);
    assignDefined(record, 'layers', bag.get('layer') as ParsedRecord[] | undefined);
    if (tag === 'host-factory') assignDefined(record, 'role', bag.get('role') as ParsedRecord | undefined);
    if (tag === 'policy') record.body = (bag.get('body') as ParsedStatement[] | undefined) ?? [];
    return record;
  }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const EXPECTED_NAMES: Readonly<Record<Check, string>> = {
  string: 'string',
  integer: 'integer',
  boolean: 'boolean',
  cidr: 'CIDR',
  hash: 'hash',
  role: 'Role',
  resource: 'Resource',
  layer: 'Layer',
  member: 'Member',
  statements: 'sequence',
};

function assignDefined<K extends keyof ParsedRecord>(record: ParsedRecord, key: K, value: ParsedRecord[K] | undefined): void {
  if (value !== undefined) record[key] = value;
}

function wrapMember(role: ParsedRecord): ParsedMember {
  return { node: 'member', role, admin: false, position: role.position };
}

function isRecord(value: Value): value is ObjectValue & { object: ParsedRecord } {
  return value.vt === 'object' && value.object.node === 'record';
}

function isNil(value: Value): boolean {
  return value.vt === 'primitive' && value.rubyClass === 'NilClass';
}

/** Ruby class name of a value, as Conjur's type errors print it. */
function typeNameOf(value: Value): string {
  switch (value.vt) {
    case 'object': {
      const object = value.object;
      if (object.node === 'record') return recordTypeName(object.tag);
      return object.node.charAt(0).toUpperCase() + object.node.slice(1);
    }
    case 'primitive':
      return value.rubyClass;
    case 'seq':
      return 'Array';
    case 'hash':
      return 'Hash';
    case 'opaque':
      return value.typeName;
  }
}

/**
 * Flattens nested sequences. A sequence reached twice (through aliases) is
 * expanded once, which keeps alias "billion laughs" documents linear.
 */
function flattenValues(seq: SeqValue): Value[] {
  const out: Value[] = [];
  const expanded = new Set<SeqValue>();
  const walk = (list: SeqValue): void => {
    if (expanded.has(list)) return;
    expanded.add(list);
    for (const item of list.items) {
      if (item.vt === 'seq') walk(item);
      else out.push(item);
    }
  };
  walk(seq);
  return out;
}

/** A plain `<<` key: YAML 1.1's merge key, which Conjur's policies never apply. */
function isMergeKey(node: YamlNode): boolean {
  return isScalar(node) && node.type === 'PLAIN' && node.source === '<<';
}

/** A value left out entirely (`key:` with nothing after it), as opposed to an explicit `~`/`null`. */
function isEmptyPlain(node: Scalar): boolean {
  return node.type === 'PLAIN' && node.tag === undefined && (node.source ?? '') === '';
}

function scalarText(node: Scalar): string {
  if (typeof node.value === 'string') return node.value;
  return node.source ?? (node.value === null || node.value === undefined ? '' : String(node.value));
}

const NULL_RE = /^(?:~|null|Null|NULL)?$/;
const TRUE_RE = /^(?:true|True|TRUE|yes|Yes|YES|on|On|ON)$/;
const FALSE_RE = /^(?:false|False|FALSE|no|No|NO|off|Off|OFF)$/;
const INT_RE = /^[-+]?(?:0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o?[0-7_]+)$/;
const FLOAT_RE = /^[-+]?(?:(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;

/** SafeYAML-style type guess for an untagged scalar (YAML 1.1 booleans included, as in Conjur). */
function classify(node: Scalar, text: string): RubyClass {
  if (node.type !== 'PLAIN') return 'String';
  if (NULL_RE.test(text)) return 'NilClass';
  if (TRUE_RE.test(text)) return 'TrueClass';
  if (FALSE_RE.test(text)) return 'FalseClass';
  if (INT_RE.test(text)) return 'Integer';
  if (FLOAT_RE.test(text)) return 'Float';
  return 'String';
}

function parseRubyInteger(text: string): number {
  const clean = text.replace(/_/g, '');
  const sign = clean.startsWith('-') ? -1 : 1;
  const digits = clean.replace(/^[-+]/, '');
  if (/^0x/i.test(digits)) return sign * parseInt(digits.slice(2), 16);
  if (/^0o/i.test(digits)) return sign * parseInt(digits.slice(2), 8);
  if (/^0[0-7]+$/.test(digits)) return sign * parseInt(digits.slice(1), 8);
  return sign * Number(digits);
}
