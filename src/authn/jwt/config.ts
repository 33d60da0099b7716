/**
 * Configuration of one `authn-jwt` service: the values of the variables under
 * `conjur/authn-jwt/<service-id>`, validated with Conjur's rules
 * (cyberark/conjur: app/domain/authentication/authn_jwt/v2/validations/authenticator_contract.rb,
 * validate_and_decode/fetch_issuer_value.rb) plus Coffer's transport rules
 * (https unless the operator allows plain http for a host; ca-cert must parse).
 *
 * @module
 */
import { X509Certificate } from 'node:crypto';
import { createLocalJWKSet, type JSONWebKeySet, type JWK } from 'jose';
import { CofferError, unauthorized } from '../../errors.js';

/** The variables Conjur reads for an authn-jwt service. Other names are ignored. */
export const JWT_CONFIG_VARIABLES = [
  'jwks-uri',
  'public-keys',
  'provider-uri',
  'ca-cert',
  'issuer',
  'token-app-property',
  'identity-path',
  'enforced-claims',
  'claim-aliases',
  'audience',
] as const;

/** Registered claims that may never serve as host restrictions or aliases. */
export const RESERVED_CLAIMS: readonly string[] = ['iss', 'exp', 'nbf', 'iat', 'jti', 'aud'];

/** Where verification keys come from. Exactly one source per service. */
export type JwtSigningKeySettings =
  | { readonly type: 'jwks-uri'; readonly uri: string; readonly caCert?: string }
  | { readonly type: 'provider-uri'; readonly uri: string; readonly caCert?: string }
  | { readonly type: 'public-keys'; readonly jwks: JSONWebKeySet };

/** A validated authn-jwt service configuration. */
export interface JwtAuthenticatorConfig {
  readonly signingKey: JwtSigningKeySettings;
  /** Expected `iss`: the `issuer` variable, else provider-uri, else the jwks-uri hostname. */
  readonly issuer: string;
  /** When set, `aud` is mandatory and must contain this value. */
  readonly audience?: string;
  /** Claim path (`/`-separated) holding the host id; absent means the id comes from the URL. */
  readonly tokenAppProperty?: string;
  /** Host id prefix without leading/trailing slashes; absent when not configured. */
  readonly identityPath?: string;
  /** Claim paths every host must restrict on (and every token must carry). */
  readonly enforcedClaims: readonly string[];
  /** Annotation name → claim path. */
  readonly claimAliases: ReadonlyMap<string, string>;
  /** Hosts that may be reached over plain http (operator setting, lower-case). */
  readonly allowHttpHosts: readonly string[];
}

/** Options that do not come from Conjur variables. */
export interface ParseJwtConfigOptions {
  /** Operator setting: hosts allowed over plain http. Everything else needs https. */
  readonly allowHttpHosts?: readonly string[];
  /** Used only to name variables in CONJ00037E messages. */
  readonly account?: string;
  /** Used only to name variables in CONJ00037E messages. */
  readonly serviceId?: string;
}

/**
 * An authentication failure. The client sees a generic 401; `code` and
 * `reason` go to the audit log. Never pass the JWT or a secret in `reason`.
 */
export function jwtAuthnError(code: string, reason: string): CofferError {
  return unauthorized('Unauthorized', { auditReason: `${code} ${reason}` });
}

const CLAIM_PATH_CHARS = /^[A-Za-z0-9/_.-]+$/;
const ALIAS_NAME_CHARS = /^[A-Za-z0-9_.-]+$/;
const CLAIM_PATH_REGEX_TEXT = '[a-zA-Z0-9\\/\\-_\\.]+';
const ALIAS_NAME_REGEX_TEXT = '[a-zA-Z0-9\\-_\\.]+';
const SIGNING_SOURCES = ['jwks-uri', 'provider-uri', 'public-keys'] as const;

type Values = Record<string, string | undefined>;

/** True for a syntactically valid claim path: allowed characters and no empty segment. */
export function isValidClaimPath(path: string): boolean {
  return CLAIM_PATH_CHARS.test(path) && path.split('/').every((segment) => segment !== '');
}

/** Ruby's `Array#inspect` for strings, as Conjur prints lists in its messages. */
export function rubyList(items: readonly string[]): string {
  return `[${items.map((item) => JSON.stringify(item)).join(', ')}]`;
}

const isBlank = (value: string | undefined): boolean => value === undefined || value.trim() === '';

/**
 * Validates the configuration variables of an authn-jwt service.
 *
 * `values` maps variable names to their current values: leave a key out (or
 * `undefined`) when the variable is not defined in policy, and pass `''` when
 * it is defined but has no value yet (Conjur's CONJ00037E case).
 *
 * @throws CofferError 401 (`unauthorized`) whose `auditReason` carries the CONJ code.
 * @example
 * const config = parseJwtAuthenticatorConfig(
 *   { 'jwks-uri': 'https://gitlab.example.com/oauth/discovery/keys', 'token-app-property': 'project_path' },
 *   { account: 'acme', serviceId: 'gitlab' },
 * );
 */
export function parseJwtAuthenticatorConfig(
  values: Values,
  opts: ParseJwtConfigOptions = {},
): JwtAuthenticatorConfig {
  const allowHttpHosts = normalizeHostList(opts.allowHttpHosts ?? []);
  runConjurContract(values, opts);
  const signingKey = buildSigningKeySettings(values, allowHttpHosts);
  const enforcedClaims = parseEnforcedClaims(values['enforced-claims']);
  const claimAliases = parseClaimAliases(values['claim-aliases']);
  return {
    signingKey,
    issuer: resolveIssuer(values, signingKey),
    audience: present(values['audience']),
    tokenAppProperty: present(values['token-app-property']),
    identityPath: normalizeIdentityPath(values['identity-path']),
    enforcedClaims,
    claimAliases,
    allowHttpHosts,
  };
}

function present(value: string | undefined): string | undefined {
  return isBlank(value) ? undefined : value!.trim();
}

/** Conjur's contract, in its rule order, so the first error reported matches Conjur's. */
function runConjurContract(values: Values, opts: ParseJwtConfigOptions): void {
  const variablePrefix = `${opts.account ?? '<account>'}:variable:conjur/authn-jwt/${opts.serviceId ?? '<service-id>'}`;
  const missingValue = (name: string) =>
    jwtAuthnError('CONJ00037E', `Missing value for resource: ${variablePrefix}/${name}`);
  const requireValueIfDefined = (name: string) => {
    if (values[name] !== undefined && isBlank(values[name])) throw missingValue(name);
  };

  checkSingleSigningSource(values);
  requireValueIfDefined('issuer');
  requireValueIfDefined('claim-aliases');
  requireValueIfDefined('provider-uri');
  requireValueIfDefined('jwks-uri');
  requireValueIfDefined('public-keys');
  checkSomeSigningSource(values);
  requireValueIfDefined('token-app-property');
  checkTokenAppProperty(values['token-app-property']);
  requireValueIfDefined('audience');
  requireValueIfDefined('identity-path');
  requireValueIfDefined('enforced-claims');
  if (!isBlank(values['public-keys']) && isBlank(values['issuer'])) throw missingValue('issuer');
  requireValueIfDefined('ca-cert');
}

function signingKeyError(detail: string): CofferError {
  return jwtAuthnError('CONJ00122E', `Invalid signing key settings: ${detail}`);
}

function checkSingleSigningSource(values: Values): void {
  const set = SIGNING_SOURCES.filter((name) => !isBlank(values[name]));
  if (set.length > 1) {
    throw signingKeyError(`${set.join(' and ')} cannot be defined simultaneously`);
  }
}

function checkSomeSigningSource(values: Values): void {
  if (SIGNING_SOURCES.every((name) => values[name] === undefined)) {
    throw signingKeyError('One of the following must be defined: jwks-uri, public-keys, or provider-uri');
  }
}

function checkTokenAppProperty(value: string | undefined): void {
  if (isBlank(value)) return;
  const tap = value!.trim();
  if (!CLAIM_PATH_CHARS.test(tap)) {
    throw jwtAuthnError(
      'CONJ00117E',
      "Failed to parse 'token-app-property' value. Error: " +
        "'token-app-property can only contain alpha-numeric characters, '-', '_', '/', and '.''",
    );
  }
  if (!isValidClaimPath(tap)) {
    throw jwtAuthnError(
      'CONJ00117E',
      "Failed to parse 'token-app-property' value. Error: 'token-app-property includes `//` or an empty path segment'",
    );
  }
}

function forbiddenClaimName(name: string, regexText: string): CofferError {
  return jwtAuthnError(
    'CONJ00104E',
    `Failed to validate claim: claim name '${name}' does not match regular expression: '${regexText}'.`,
  );
}

function reservedClaim(name: string): CofferError {
  return jwtAuthnError(
    'CONJ00105E',
    `Failed to validate claim: claim name '${name}' is in denylist '${rubyList(RESERVED_CLAIMS)}'`,
  );
}

/** `enforced-claims`: comma list of claim paths, none reserved, no blanks or duplicates. */
function parseEnforcedClaims(raw: string | undefined): string[] {
  if (isBlank(raw)) return [];
  const claims = raw!.split(',').map((claim) => claim.trim());
  if (claims.some((claim) => claim === '')) {
    throw jwtAuthnError(
      'CONJ00107E',
      `List of enforced claims '${raw!.trim()}' is in invalid format. Separate claim names with commas.`,
    );
  }
  for (const claim of claims) {
    if (!isValidClaimPath(claim)) throw forbiddenClaimName(claim, CLAIM_PATH_REGEX_TEXT);
  }
  for (const claim of claims) {
    if (RESERVED_CLAIMS.includes(claim)) throw reservedClaim(claim);
  }
  if (new Set(claims).size !== claims.length) {
    throw jwtAuthnError('CONJ00108E', `List of enforced claims '${raw!.trim()}' must not contain duplications.`);
  }
  return claims;
}

/** `claim-aliases`: `annotation:claim/path, …` with Conjur's uniqueness, charset and denylist rules. */
function parseClaimAliases(raw: string | undefined): Map<string, string> {
  const aliases = new Map<string, string>();
  if (isBlank(raw)) return aliases;
  const entries = raw!.split(',');
  if (entries.some((entry) => entry.trim() === '')) {
    throw jwtAuthnError(
      'CONJ00110E',
      `Failed to parse claim aliases: one or more mapping statements are blank or empty '${raw!.trim()}'.`,
    );
  }
  const pairs = entries.map((entry) => splitAlias(entry));
  checkAliasDuplicates(pairs);
  checkAliasSyntax(pairs);
  for (const [name, claim] of pairs) aliases.set(name, claim);
  return aliases;
}

function splitAlias(entry: string): [string, string] {
  const parts = entry.split(':');
  if (parts.length !== 2) {
    throw jwtAuthnError(
      'CONJ00111E',
      `Failed to parse claim aliases: the claim alias value '${entry.trim()}' is in invalid format.` +
        "The correct format is: 'annotation_name:claim_name'",
    );
  }
  return [parts[0]!.trim(), parts[1]!.trim()];
}

function checkAliasDuplicates(pairs: ReadonlyArray<[string, string]>): void {
  const duplicate = (items: string[]) => items.find((item, index) => items.indexOf(item) !== index);
  const dupName = duplicate(pairs.map(([name]) => name));
  if (dupName !== undefined) {
    throw jwtAuthnError(
      'CONJ00113E',
      `Failed to parse claim aliases: annotation name value '${dupName}' appears more than once`,
    );
  }
  const dupClaim = duplicate(pairs.map(([, claim]) => claim));
  if (dupClaim !== undefined) {
    throw jwtAuthnError('CONJ00113E', `Failed to parse claim aliases: claim name value '${dupClaim}' appears more than once`);
  }
}

function checkAliasSyntax(pairs: ReadonlyArray<[string, string]>): void {
  for (const [name] of pairs) {
    if (name.includes('/')) {
      throw jwtAuthnError('CONJ00114E', `Failed to parse claim aliases: the claim alias name '${name}' contains '/'.`);
    }
  }
  for (const [name] of pairs) {
    if (!ALIAS_NAME_CHARS.test(name)) throw forbiddenClaimName(name, ALIAS_NAME_REGEX_TEXT);
  }
  for (const [, claim] of pairs) {
    if (!isValidClaimPath(claim)) throw forbiddenClaimName(claim, CLAIM_PATH_REGEX_TEXT);
  }
  for (const [name, claim] of pairs) {
    const reserved = [name, claim].find((item) => RESERVED_CLAIMS.includes(item));
    if (reserved !== undefined) throw reservedClaim(reserved);
  }
}

function buildSigningKeySettings(values: Values, allowHttpHosts: readonly string[]): JwtSigningKeySettings {
  const caCert = present(values['ca-cert']);
  const publicKeys = present(values['public-keys']);
  if (publicKeys !== undefined) {
    if (caCert !== undefined) throw signingKeyError('ca-cert can be defined only with jwks-uri or provider-uri');
    return { type: 'public-keys', jwks: parsePublicKeys(publicKeys) };
  }
  if (caCert !== undefined) checkCaCert(caCert);
  const type = present(values['jwks-uri']) !== undefined ? 'jwks-uri' : 'provider-uri';
  const uri = present(values[type])!;
  checkFetchUrl(uri, type, allowHttpHosts);
  return caCert === undefined ? { type, uri } : { type, uri, caCert };
}

/**
 * Checks a URL Coffer is about to fetch: absolute http(s), no credentials,
 * https unless the host is on the operator's plain-http allow list.
 * Returns the parsed URL.
 */
export function checkFetchUrl(uri: string, name: string, allowHttpHosts: readonly string[]): URL {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw jwtAuthnError('CONJ00080E', `Failed to parse URI '${name}'. Reason: 'not an absolute URL'`);
  }
  if (url.username !== '' || url.password !== '') {
    // Credentials in a URL end up in logs and audit rows.
    throw signingKeyError(`${name} must not contain credentials`);
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && allowHttpHosts.includes(stripBrackets(url.hostname.toLowerCase()))) return url;
  throw signingKeyError(
    url.protocol === 'http:'
      ? `${name} must use https (host '${url.hostname}' is not allowed over plain http)`
      : `${name} must be an https URL`,
  );
}

/** Lower-cases host names and strips IPv6 brackets, the form {@link checkFetchUrl} compares with. */
export function normalizeHostList(hosts: readonly string[]): string[] {
  return hosts.map((host) => stripBrackets(host.trim().toLowerCase()));
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function checkCaCert(pem: string): void {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw signingKeyError('ca-cert must contain at least one PEM certificate');
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch {
      throw signingKeyError('ca-cert contains an invalid certificate');
    }
  }
}

function publicKeysError(detail: string): CofferError {
  return jwtAuthnError('CONJ00120E', `Failed to parse 'public-keys': ${detail}`);
}

/** `public-keys` is `{"type":"jwks","value":{"keys":[…]}}` holding public asymmetric keys only. */
function parsePublicKeys(raw: string): JSONWebKeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw publicKeysError('value is not valid JSON');
  }
  if (!isRecord(parsed) || parsed['type'] !== 'jwks' || !('value' in parsed)) {
    throw publicKeysError(
      "Type can't be blank, Value can't be blank, and Type '' is not a valid public-keys type. Valid types are: jwks",
    );
  }
  const value = parsed['value'];
  if (!isRecord(value) || !Array.isArray(value['keys']) || value['keys'].length === 0) {
    throw publicKeysError("Value must include the name/value pair 'keys', which is an array of valid JWKS public keys");
  }
  const keys = value['keys'] as unknown[];
  if (!keys.every(isPublicAsymmetricJwk)) {
    // A private or symmetric key here would be a leaked secret, and `oct` keys invite HS/RS confusion.
    throw publicKeysError('every key must be a public RSA, EC or OKP key');
  }
  const jwks: JSONWebKeySet = { keys: keys as JWK[] };
  try {
    createLocalJWKSet(jwks);
  } catch {
    throw publicKeysError('malformed JSON Web Key Set');
  }
  return jwks;
}

function isPublicAsymmetricJwk(key: unknown): boolean {
  if (!isRecord(key)) return false;
  const privateMembers = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];
  return ['RSA', 'EC', 'OKP'].includes(key['kty'] as string) && privateMembers.every((m) => !(m in key));
}

/** True for a non-null, non-array object. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Conjur's issuer default: `issuer`, else the provider-uri value, else the jwks-uri hostname. */
function resolveIssuer(values: Values, signingKey: JwtSigningKeySettings): string {
  const issuer = present(values['issuer']);
  if (issuer !== undefined) return issuer;
  if (signingKey.type === 'provider-uri') return signingKey.uri;
  if (signingKey.type === 'jwks-uri') {
    const hostname = stripBrackets(new URL(signingKey.uri).hostname);
    if (hostname === '') throw jwtAuthnError('CONJ00079E', `Failed to extract hostname from URI 'jwks-uri'`);
    return hostname;
  }
  // Unreachable: the contract requires issuer with public-keys.
  throw jwtAuthnError('CONJ00037E', 'Missing value for resource: issuer');
}

/** `identity-path` tolerates leading, trailing and doubled slashes, like Conjur's split/join. */
function normalizeIdentityPath(raw: string | undefined): string | undefined {
  if (isBlank(raw)) return undefined;
  const path = raw!
    .trim()
    .split('/')
    .filter((segment) => segment !== '')
    .join('/');
  return path === '' ? undefined : path;
}
