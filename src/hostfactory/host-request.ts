/**
 * What `POST /host_factories/hosts` may ask for: the host id and its
 * annotations. A host-factory token is a credential handed to machines, so
 * the id it may claim is confined (reference §1.9, §2.4 "a host-factory token
 * can only create hosts inside its layer"):
 *  - never under `conjur/` (Conjur CONJSE-2015: that branch configures
 *    authenticators);
 *  - only inside the factory's own policy: a factory `ci/executors` creates
 *    `ci/…` hosts, so a leaked token cannot pre-create a host id that another
 *    policy will later declare and grant privileges to;
 *  - no empty, `.` or `..` segments and no control characters, so an id
 *    cannot pose as a path it is not.
 */
import { argumentError } from '../errors.js';
import { validateIdentifier } from '../ids.js';

export const MAX_ANNOTATIONS = 50;
const MAX_ANNOTATION_NAME = 255;
const MAX_ANNOTATION_VALUE = 4096;

/** The policy path a factory's hosts must live in: `ci` for `ci/executors`, '' at the root. */
export function factoryNamespace(factoryIdentifier: string): string {
  const slash = factoryIdentifier.lastIndexOf('/');
  return slash < 0 ? '' : factoryIdentifier.slice(0, slash);
}

/** Validates a requested host id for a factory; returns it unchanged. Every refusal is 422 `argument_error`. */
export function validateHostId(id: string | undefined, factoryIdentifier: string): string {
  if (id === undefined || id === '') throw argumentError('param is missing or the value is empty: id');
  validateIdentifier(id, 'id');
  // Conjur's own check and message, first, so its clients see what they expect.
  if (id.startsWith('conjur/') || id.startsWith('/conjur/')) throw argumentError(`Invalid id: ${id}`);
  if (id.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')) {
    throw argumentError(`Invalid id: ${id} (empty, '.' and '..' path segments are not allowed)`);
  }
  const ns = factoryNamespace(factoryIdentifier);
  if (ns !== '' && !id.startsWith(`${ns}/`)) {
    throw argumentError(`Invalid id: ${id} is outside the host factory's policy '${ns}'; host ids must begin with '${ns}/'`);
  }
  return id;
}

/** Validates `annotations[name]=value` pairs; names must be unique. */
export function validateAnnotations(pairs: [string, string][]): Record<string, string> {
  if (pairs.length > MAX_ANNOTATIONS) throw argumentError(`At most ${MAX_ANNOTATIONS} annotations may be given`);
  const out = new Map<string, string>();
  for (const [name, value] of pairs) {
    // eslint-disable-next-line no-control-regex
    if (name === '' || name.length > MAX_ANNOTATION_NAME || /[\u0000-\u001f\u007f]/.test(name)) {
      throw argumentError(`Invalid annotation name '${name.slice(0, 64)}': 1 to ${MAX_ANNOTATION_NAME} characters, no control characters`);
    }
    if (value.length > MAX_ANNOTATION_VALUE || value.includes('\u0000')) {
      throw argumentError(`Invalid value for annotation '${name}': at most ${MAX_ANNOTATION_VALUE} characters, no NUL`);
    }
    if (out.has(name)) throw argumentError(`Annotation '${name}' is given more than once`);
    out.set(name, value);
  }
  // fromEntries defines own properties, so a `__proto__` annotation stays an annotation.
  return Object.fromEntries(out);
}
