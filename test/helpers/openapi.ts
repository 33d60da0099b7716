/**
 * The HTTP contract (openapi.yaml) as a test oracle: find the documented
 * operation for a concrete request and check a response against it.
 *
 * `$ref`s between schemas are resolved by ajv: the whole document is added as
 * one schema under DOC_ID, and every body schema is compiled as a reference to
 * its JSON pointer inside that document.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020Module from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import { parse } from 'yaml';

export const OPENAPI_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '../../openapi.yaml');
export const DOC_ID = 'https://coffer.invalid/openapi.json';

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

/** Top-level OpenAPI fields, declared so that ajv (strict) accepts the document as a schema. */
const OPENAPI_ROOT_KEYWORDS = ['openapi', 'info', 'servers', 'paths', 'webhooks', 'components', 'security', 'tags', 'externalDocs', 'jsonSchemaDialect'];

/** Path parameters that may span several concrete segments (`:id{.+}` in the routes). */
const MULTI_SEGMENT_PARAMS = new Set(['id', 'login', 'path']);

/** Response extension: an empty body without Content-Type is also acceptable. */
const EMPTY_BODY_EXTENSION = 'x-coffer-empty-body';

type Json = Record<string, any>;

// ajv and ajv-formats are CommonJS with `exports.default`; under NodeNext the
// default import is the module object (at run time it may be either).
type Ajv2020Class = typeof Ajv2020Module.default;
type AddFormats = typeof addFormatsModule.default;
const Ajv2020: Ajv2020Class = (Ajv2020Module as unknown as { default?: Ajv2020Class }).default ?? (Ajv2020Module as unknown as Ajv2020Class);
const addFormats: AddFormats = (addFormatsModule as unknown as { default?: AddFormats }).default ?? (addFormatsModule as unknown as AddFormats);

export type AjvInstance = InstanceType<Ajv2020Class>;

let cachedDoc: Json | undefined;
let cachedAjv: AjvInstance | undefined;
const validators = new Map<string, ValidateFunction>();

/** The parsed openapi.yaml (cached). */
export function loadOpenApi(): Json {
  cachedDoc ??= parse(readFileSync(OPENAPI_PATH, 'utf8')) as Json;
  return cachedDoc;
}

/** A fresh strict ajv (draft 2020-12, formats) holding the document under DOC_ID. */
export function createAjv(doc: Json = loadOpenApi()): AjvInstance {
  const ajv = new Ajv2020({ strict: true, strictTypes: true, allowUnionTypes: true, allErrors: true });
  addFormats(ajv);
  ajv.addVocabulary(OPENAPI_ROOT_KEYWORDS);
  ajv.addSchema({ ...doc, $id: DOC_ID });
  return ajv;
}

function ajv(): AjvInstance {
  cachedAjv ??= createAjv();
  return cachedAjv;
}

/** JSON pointer (RFC 6901) of path tokens, URI-fragment encoded for use in a `$ref`. */
export function pointerFragment(tokens: string[]): string {
  return tokens.map((t) => `/${encodeURIComponent(t.replace(/~/g, '~0').replace(/\//g, '~1'))}`).join('');
}

/** Resolves a local `#/a/b` reference in the document; undefined when it does not resolve. */
export function resolvePointer(doc: Json, ref: string): unknown {
  if (!ref.startsWith('#')) return undefined;
  const path = ref.slice(1);
  if (path === '') return doc;
  if (!path.startsWith('/')) return undefined;
  let node: unknown = doc;
  for (const raw of path.slice(1).split('/')) {
    const token = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (node === null || typeof node !== 'object' || !Object.prototype.hasOwnProperty.call(node, token)) return undefined;
    node = (node as Json)[token];
  }
  return node;
}

/** Compiles (once) a validator for the schema at `tokens` inside the document. */
export function schemaValidator(tokens: string[]): ValidateFunction {
  const key = pointerFragment(tokens);
  const cached = validators.get(key);
  if (cached) return cached;
  const v = ajv().compile({ $ref: `${DOC_ID}#${key}` });
  validators.set(key, v);
  return v;
}

export interface DocumentedRoute {
  method: string;
  path: string;
}

/** Every documented operation, method upper-case and path as templated in openapi.yaml. */
export function listDocumentedRoutes(): DocumentedRoute[] {
  const out: DocumentedRoute[] = [];
  for (const [path, item] of Object.entries((loadOpenApi().paths ?? {}) as Json)) {
    for (const m of HTTP_METHODS) if (item && typeof item === 'object' && m in item) out.push({ method: m.toUpperCase(), path });
  }
  return out;
}

interface TemplateSegment {
  literal?: string;
  param?: string;
  multi: boolean;
}

function parseTemplate(template: string): TemplateSegment[] {
  return template
    .split('/')
    .filter((s) => s !== '')
    .map((s) => {
      const m = /^\{([^}]+)\}$/.exec(s);
      if (!m) return { literal: s, multi: false };
      return { param: m[1]!, multi: MULTI_SEGMENT_PARAMS.has(m[1]!) };
    });
}

function safeDecode(seg: string): string {
  try {
    return decodeURIComponent(seg);
  } catch {
    return seg;
  }
}

/** Does `segs` (concrete, raw) match the template? Multi-segment params take one or more segments. */
function matches(template: TemplateSegment[], segs: string[]): boolean {
  const go = (ti: number, si: number): boolean => {
    if (ti === template.length) return si === segs.length;
    if (si >= segs.length) return false;
    const t = template[ti]!;
    if (t.literal !== undefined) return safeDecode(segs[si]!) === t.literal && go(ti + 1, si + 1);
    if (segs[si] === '') return false;
    if (!t.multi) return go(ti + 1, si + 1);
    for (let end = si + 1; end <= segs.length; end++) {
      if (segs[end - 1] === '') return false;
      if (go(ti + 1, end)) return true;
    }
    return false;
  };
  return go(0, 0);
}

/** Concrete path segments: no query, no trailing slash (the server is not strict about it). */
function concreteSegments(path: string): string[] {
  const bare = path.split('?')[0]!.split('#')[0]!;
  const segs = bare.split('/').slice(1);
  while (segs.length > 0 && segs[segs.length - 1] === '') segs.pop();
  return segs;
}

function specificity(template: TemplateSegment[]): [number, number, number] {
  const literals = template.filter((t) => t.literal !== undefined).length;
  const multis = template.filter((t) => t.multi).length;
  return [literals, -multis, template.length];
}

export interface FoundOperation {
  template: string;
  method: string;
  operation: Json;
}

/**
 * The documented operation for a concrete request, e.g. GET
 * `/resources/acme/variable/a%2Fb` → `/resources/{account}/{kind}/{id}`. The
 * most specific matching template wins (most literal segments, then fewest
 * multi-segment parameters). Throws when nothing is documented.
 */
export function findOperation(method: string, path: string): FoundOperation {
  const doc = loadOpenApi();
  const m = method.toLowerCase();
  const segs = concreteSegments(path);
  const candidates = Object.entries((doc.paths ?? {}) as Json)
    .map(([template, item]) => ({ template, item: item as Json, parsed: parseTemplate(template) }))
    .filter((c) => matches(c.parsed, segs));
  if (candidates.length === 0) {
    throw new Error(`OpenAPI: no documented path matches ${method.toUpperCase()} ${path}`);
  }
  const withMethod = candidates.filter((c) => c.item[m] !== undefined);
  if (withMethod.length === 0) {
    throw new Error(
      `OpenAPI: ${method.toUpperCase()} is not documented for ${path} (matching templates: ${candidates
        .map((c) => `${c.template} [${HTTP_METHODS.filter((x) => c.item[x] !== undefined).join(', ')}]`)
        .join('; ')})`,
    );
  }
  withMethod.sort((a, b) => {
    const sa = specificity(a.parsed);
    const sb = specificity(b.parsed);
    for (let i = 0; i < sa.length; i++) if (sa[i] !== sb[i]) return sb[i]! - sa[i]!;
    return 0;
  });
  const best = withMethod[0]!;
  return { template: best.template, method: m.toUpperCase(), operation: best.item[m] as Json };
}

/** Follows `$ref`s of a response object; returns the object and the pointer tokens of where it lives. */
function resolveResponse(doc: Json, response: Json, tokens: string[]): { response: Json; tokens: string[] } {
  let current = response;
  let at = tokens;
  for (let hops = 0; typeof current.$ref === 'string'; hops++) {
    if (hops > 10) throw new Error(`OpenAPI: $ref loop at ${at.join('/')}`);
    const ref = current.$ref as string;
    const target = resolvePointer(doc, ref);
    if (!target || typeof target !== 'object') throw new Error(`OpenAPI: unresolved $ref ${ref}`);
    at = ref
      .slice(2)
      .split('/')
      .map((t) => decodeURIComponent(t).replace(/~1/g, '/').replace(/~0/g, '~'));
    current = target as Json;
  }
  return { response: current, tokens: at };
}

/** `Application/JSON; charset=utf-8` → `application/json`. */
function mediaTypeOf(contentType: string): string {
  return contentType.split(';')[0]!.trim().toLowerCase();
}

function pickMediaType(content: Json, mediaType: string): string | undefined {
  const keys = Object.keys(content);
  const lower = new Map(keys.map((k) => [k.toLowerCase(), k]));
  const exact = lower.get(mediaType);
  if (exact) return exact;
  const range = lower.get(`${mediaType.split('/')[0]}/*`);
  if (range) return range;
  return lower.get('*/*');
}

function isJsonMediaType(mt: string): boolean {
  return mt === 'application/json' || mt.endsWith('+json');
}

function isEmptyBody(body: unknown): boolean {
  return body === null || body === undefined || body === '' || (body instanceof Uint8Array && body.length === 0);
}

function asText(body: unknown): string {
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return Buffer.from(body).toString('utf8');
  return JSON.stringify(body);
}

function check(v: ValidateFunction, value: unknown, where: string): void {
  if (!v(value)) {
    const errors = (v.errors ?? []).map((e) => `  ${e.instancePath || '(root)'} ${e.message ?? ''} [${e.schemaPath}]`).join('\n');
    const shown = JSON.stringify(value);
    throw new Error(`OpenAPI: ${where}: body does not match the schema:\n${errors}\nbody: ${shown && shown.length > 2000 ? `${shown.slice(0, 2000)}…` : shown}`);
  }
}

/**
 * Checks a response against openapi.yaml. `path` is concrete (no query
 * needed, e.g. `/resources/acme/variable/a%2Fb`); `body` is the parsed JSON for
 * JSON responses, otherwise the text (or null when empty). Throws a
 * descriptive Error when the status, content type or body is not documented.
 */
export function validateResponse(method: string, path: string, status: number, contentType: string | null, body: unknown): void {
  const doc = loadOpenApi();
  const { template, method: m, operation } = findOperation(method, path);
  const where = `${m} ${path} (${template}) → ${status}`;
  const responses = (operation.responses ?? {}) as Json;
  const code = String(status);
  const key = code in responses ? code : `${code[0]}XX` in responses ? `${code[0]}XX` : 'default' in responses ? 'default' : undefined;
  if (key === undefined) {
    throw new Error(`OpenAPI: ${where}: status ${status} is not documented (documented: ${Object.keys(responses).join(', ')})`);
  }
  const opTokens = ['paths', template, m.toLowerCase(), 'responses', key];
  const { response, tokens } = resolveResponse(doc, responses[key] as Json, opTokens);
  const content = response.content as Json | undefined;

  if (contentType === null || contentType.trim() === '') {
    if (!isEmptyBody(body)) throw new Error(`OpenAPI: ${where}: a non-empty body without Content-Type`);
    if (content && Object.keys(content).length > 0 && response[EMPTY_BODY_EXTENSION] !== true) {
      throw new Error(`OpenAPI: ${where}: empty body, but the documented response has content (${Object.keys(content).join(', ')})`);
    }
    return;
  }

  const mt = mediaTypeOf(contentType);
  if (!content || Object.keys(content).length === 0) {
    if (isEmptyBody(body)) return;
    throw new Error(`OpenAPI: ${where}: the documented response has no body, got ${mt}`);
  }
  const mtKey = pickMediaType(content, mt);
  if (mtKey === undefined) {
    throw new Error(`OpenAPI: ${where}: Content-Type ${mt} is not documented (documented: ${Object.keys(content).join(', ')})`);
  }
  if ((content[mtKey] as Json | undefined)?.schema === undefined) return;
  const v = schemaValidator([...tokens, 'content', mtKey, 'schema']);

  if (mt === 'application/x-ndjson') {
    // One JSON value per line; a helper may already have parsed a single-line body.
    const lines = typeof body === 'string' || body instanceof Uint8Array
      ? asText(body).split('\n').filter((l) => l.trim() !== '')
      : isEmptyBody(body) ? [] : [JSON.stringify(body)];
    lines.forEach((line, i) => {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        throw new Error(`OpenAPI: ${where}: NDJSON line ${i + 1} is not JSON: ${line.slice(0, 200)}`);
      }
      check(v, value, `${where} (NDJSON line ${i + 1})`);
    });
    return;
  }

  if (isJsonMediaType(mt)) {
    let value = body;
    if (typeof body === 'string' || body instanceof Uint8Array) {
      try {
        value = JSON.parse(asText(body));
      } catch {
        throw new Error(`OpenAPI: ${where}: ${mt} body is not JSON: ${asText(body).slice(0, 200)}`);
      }
    }
    check(v, value, where);
    return;
  }

  // Text and other media types: validated as a string (schemas like `{}` accept anything).
  check(v, isEmptyBody(body) ? '' : typeof body === 'string' || body instanceof Uint8Array ? asText(body) : body, where);
}
