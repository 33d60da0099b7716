/**
 * Summon's `secrets.yml` for `coffer run`.
 *
 * Behaviour follows cyberark/summon `pkg/secretsyml/{parser,substitution}.go`
 * and `pkg/summon/summon.go` (findInParentTree). Deliberate differences:
 * tags are parsed strictly (Summon's substring regex silently turns `!vra` into
 * a literal and `!variable` into `!var`), `${name}` is accepted next to
 * `$name`, and a `!var` whose path is empty is rejected here instead of failing
 * later at the server.
 *
 * @module
 */
import { statSync } from 'node:fs';
import { isAbsolute, join, dirname, resolve } from 'node:path';
import {
  LineCounter,
  isAlias,
  isMap,
  isScalar,
  parseDocument,
  type Document,
  type Node as YamlNode,
  type YAMLMap,
} from 'yaml';

/** One entry of a secrets.yml: what goes into which environment variable. */
export interface SecretSpec {
  /** Environment variable name (the YAML key, never interpolated). */
  name: string;
  /** `var`: fetch `value` from the vault; `literal`: use `value` as is. */
  kind: 'var' | 'literal';
  /** Variable path for `var`, literal text for `literal`, after interpolation. */
  value: string;
  /** Write the value to a private file and set the variable to its path. */
  toFile: boolean;
  /** Used when the fetched or literal value is empty (`default='x'`). */
  defaultValue?: string;
  /**
   * `!var:field NAME path` (Coffer addition): the value is JSON (a dynamic
   * variable's credential) and only its field NAME is delivered. Every field
   * of one path comes from a single fetch.
   */
  field?: string;
}

/** Options of {@link parseSecretsYml}. */
export interface ParseSecretsOptions {
  /** `-e`: the top-level section to use, merged over `common`/`default`. */
  env?: string;
  /** `-D name=value` definitions; the only source of `$name` interpolation. */
  defines: Readonly<Record<string, string>>;
}

/** A secrets.yml problem; `line` is 1-based when the position is known. */
export class SecretsYmlError extends Error {
  readonly line?: number;

  constructor(message: string, line?: number) {
    super(line === undefined ? message : `secrets.yml line ${line}: ${message}`);
    this.name = 'SecretsYmlError';
    if (line !== undefined) this.line = line;
  }
}

/** Sections merged into every environment; Summon uses only the first present. */
const COMMON_SECTIONS = ['common', 'default'] as const;
const CORE_TAG_PREFIX = 'tag:yaml.org,2002:';
const LITERAL_TAG_WORDS = new Set(['str', 'int', 'bool', 'float']);
// Greedy like Summon's `default='(.*)'`: the value runs to the last quote.
const DEFAULT_PART = /default='(.*)'/;
const INTERPOLATION = /\$(?:\$|\{(\w+)\}|(\w+))/g;

interface Entry {
  key: string;
  line: number | undefined;
  node: YamlNode | null;
}

interface Ctx {
  doc: Document;
  lines: LineCounter;
  defines: Readonly<Record<string, string>>;
}

/**
 * Parses secrets.yml text into specs, in document order (environment section
 * first, then entries only the common section has).
 *
 * @param text the YAML source
 * @param opts environment (`-e`) and `-D` definitions
 * @throws SecretsYmlError on malformed YAML, unknown tags, undeclared
 *   `$names`, or a missing environment
 * @example
 * parseSecretsYml("DB_PASS: !var db/$ENV/password\nMODE: fast\n", { defines: { ENV: 'prod' } });
 * // → [{ name: 'DB_PASS', kind: 'var', value: 'db/prod/password', toFile: false },
 * //    { name: 'MODE', kind: 'literal', value: 'fast', toFile: false }]
 */
export function parseSecretsYml(text: string, opts: ParseSecretsOptions): SecretSpec[] {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const firstError = doc.errors[0];
  if (firstError) {
    throw new SecretsYmlError(firstError.message, lines.linePos(firstError.pos[0]).line);
  }
  const ctx: Ctx = { doc, lines, defines: opts.defines };
  const root = resolveAlias(ctx, doc.contents);
  // Summon treats an empty document as "no secrets", with or without -e.
  if (root === null || (isScalar(root) && root.value === null)) return [];
  if (!isMap(root)) throw new SecretsYmlError('expected a map of NAME: value entries', lineOf(ctx, root));
  const entries = mapEntries(ctx, root);
  if (entries.length === 0) return [];
  return opts.env === undefined || opts.env === ''
    ? entries.map((e) => specFromEntry(ctx, e))
    : parseEnvironment(ctx, entries, opts.env);
}

/**
 * Locates the secrets file. Without `up` it is `name` resolved against
 * `start`; with `up` (Summon's `--up`) the first `<dir>/<name>` that exists,
 * walking from `start` to the filesystem root.
 *
 * @throws Error with Summon's wording when `name` is absolute under `up` or
 *   nothing is found
 * @example
 * findSecretsFile(process.cwd(), 'secrets.yml', true); // '/home/me/project/secrets.yml'
 */
export function findSecretsFile(start: string, name: string, up: boolean): string {
  if (!up) return resolve(start, name);
  if (isAbsolute(name)) {
    throw new Error(`file specified (${name}) is an absolute path: will not recurse up`);
  }
  let dir = resolve(start);
  for (;;) {
    const candidate = join(dir, name);
    if (exists(candidate, name)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error(`unable to locate file specified (${name}): reached root of file system`);
    }
    dir = parent;
  }
}

function exists(candidate: string, name: string): boolean {
  try {
    statSync(candidate);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw new Error(`unable to locate file specified (${name}): ${(err as Error).message}`);
  }
}

function parseEnvironment(ctx: Ctx, entries: Entry[], env: string): SecretSpec[] {
  // Summon only accepts -e when every top-level value is a section (a map).
  const sections = new Map<string, YAMLMap>();
  for (const e of entries) {
    const node = resolveAlias(ctx, e.node);
    if (!isMap(node)) throw noSuchEnvironment(env);
    sections.set(e.key, node);
  }
  const selected = sections.get(env);
  if (!selected) throw noSuchEnvironment(env);
  const specs = mapEntries(ctx, selected).map((e) => specFromEntry(ctx, e));
  const commonName = COMMON_SECTIONS.find((name) => sections.has(name));
  const common = commonName === undefined ? undefined : sections.get(commonName);
  if (!common || common === selected) return specs;
  const taken = new Set(specs.map((s) => s.name));
  for (const e of mapEntries(ctx, common)) {
    if (!taken.has(e.key)) specs.push(specFromEntry(ctx, e));
  }
  return specs;
}

function noSuchEnvironment(env: string): SecretsYmlError {
  return new SecretsYmlError(`No such environment '${env}' found in secrets file`);
}

function mapEntries(ctx: Ctx, map: YAMLMap): Entry[] {
  return map.items.map((pair) => {
    const keyNode = resolveAlias(ctx, pair.key as YamlNode | null);
    const line = lineOf(ctx, keyNode);
    if (!isScalar(keyNode) || keyNode.value === null) {
      throw new SecretsYmlError('every key must be a plain name', line);
    }
    const key = scalarText(keyNode);
    if (key === '' || /[=\0]/.test(key)) {
      throw new SecretsYmlError(`invalid environment variable name ${JSON.stringify(key)}`, line);
    }
    return { key, line, node: pair.value as YamlNode | null };
  });
}

function specFromEntry(ctx: Ctx, entry: Entry): SecretSpec {
  const node = resolveAlias(ctx, entry.node);
  const tag = parseTag(node?.tag, entry);
  const raw = rawValue(node, tag.explicit, entry);
  const value = interpolate(raw, ctx.defines, entry);
  if (tag.isVar && value === '') {
    throw new SecretsYmlError(`${entry.key}: !var needs a variable path`, entry.line);
  }
  let path = value;
  let field: string | undefined;
  if (tag.field) {
    if (!tag.isVar) throw new SecretsYmlError(`${entry.key}: the field tag goes with !var, as in !var:field username data/dynamic/pg`, entry.line);
    const m = /^(\S+)\s+(\S.*)$/.exec(value.trim());
    if (!m) throw new SecretsYmlError(`${entry.key}: !var:field needs a field name and a variable path, as in !var:field username data/dynamic/pg`, entry.line);
    field = m[1]!;
    path = m[2]!.trim();
  }
  const spec: SecretSpec = { name: entry.key, kind: tag.isVar ? 'var' : 'literal', value: path, toFile: tag.toFile };
  if (field !== undefined) spec.field = field;
  // Summon only applies a non-empty default, so an empty one is dropped.
  if (tag.defaultValue) spec.defaultValue = tag.defaultValue;
  return spec;
}

interface ParsedTag {
  isVar: boolean;
  /** `field`: deliver one field of the JSON value. */
  field?: boolean;
  toFile: boolean;
  defaultValue?: string;
  /** A local `!…` tag was written (standard `!!str` etc. do not count). */
  explicit: boolean;
}

function parseTag(tag: string | undefined, entry: Entry): ParsedTag {
  const plain: ParsedTag = { isVar: false, toFile: false, explicit: false };
  // Core-schema tags (`!!str`, `!!int`, …) are literals in Summon too.
  if (tag === undefined || tag.startsWith(CORE_TAG_PREFIX) || tag === '!') return plain;
  if (!tag.startsWith('!')) throw unknownTag(tag, entry);
  let body = tag.slice(1);
  const parsed: ParsedTag = { ...plain, explicit: true };
  const dflt = DEFAULT_PART.exec(body);
  if (dflt) {
    parsed.defaultValue = dflt[1] ?? '';
    body = `${body.slice(0, dflt.index)}:${body.slice(dflt.index + dflt[0].length)}`;
  }
  for (const word of body.split(':')) {
    if (word === 'var') parsed.isVar = true;
    else if (word === 'file') parsed.toFile = true;
    else if (word === 'field') parsed.field = true;
    else if (word !== '' && !LITERAL_TAG_WORDS.has(word)) throw unknownTag(tag, entry);
  }
  return parsed;
}

function unknownTag(tag: string, entry: Entry): SecretsYmlError {
  return new SecretsYmlError(
    `unknown tag ${tag} on ${entry.key} (use !var, !file, !str, !var:field NAME, combined with ':' as in !var:file, ` +
      `optionally with default='value')`,
    entry.line,
  );
}

function rawValue(node: YamlNode | null, explicitTag: boolean, entry: Entry): string {
  if (node === null) return '';
  if (isScalar(node)) return scalarText(node);
  // Summon reads a map or list value as an empty literal; a tagged one can only be a mistake.
  if (explicitTag) throw new SecretsYmlError(`${entry.key}: a tagged value must be a single string`, entry.line);
  return '';
}

/** The text as written (Summon reads yaml.v3's raw node value, so `0x1F` stays `0x1F`). */
function scalarText(node: YamlNode): string {
  const { source, value } = node as YamlNode & { source?: unknown; value?: unknown };
  if (typeof source === 'string') return source;
  return value === null || value === undefined ? '' : String(value);
}

function interpolate(text: string, defines: Readonly<Record<string, string>>, entry: Entry): string {
  return text.replace(INTERPOLATION, (match: string, braced?: string, bare?: string) => {
    if (match === '$$') return '$';
    const name = braced ?? bare ?? '';
    if (!Object.hasOwn(defines, name)) {
      throw new SecretsYmlError(
        `variable ${name} not declared (used by ${entry.key}; pass -D ${name}=value)`,
        entry.line,
      );
    }
    return defines[name] ?? '';
  });
}

function resolveAlias(ctx: Ctx, node: unknown): YamlNode | null {
  if (node === null || node === undefined) return null;
  if (isAlias(node)) return (node.resolve(ctx.doc) as YamlNode | undefined) ?? null;
  return node as YamlNode;
}

function lineOf(ctx: Ctx, node: YamlNode | null): number | undefined {
  const start = node?.range?.[0];
  return start === undefined ? undefined : ctx.lines.linePos(start).line;
}
