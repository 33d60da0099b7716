/**
 * Verification-key sources for authn-jwt.
 *
 * Keys come only from the service configuration: a JWKS URL, an OIDC
 * provider's discovery document, or a static `public-keys` JWKS. Token
 * headers never name a key location (`jku`, `x5u`, `jwk` and `x5c` are
 * ignored), and only `kid`/`alg` select among configured keys.
 *
 * The remote source fetches with node:http/https under a hard deadline and a
 * response size cap, trusts only `ca-cert` when it is set, caches the parsed
 * set, and refreshes at most 10 times per 5 minutes (sliding window; Conjur's
 * CACHE_REFRESHES_PER_INTERVAL / CACHE_RATE_LIMIT_INTERVAL in
 * app/domain/authentication/authn_jwt/consts.rb). Matching uses jose's
 * `createLocalJWKSet` over the fetched document: `createRemoteJWKSet` cannot be
 * given our transport limits, trust root or refresh budget.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { createLocalJWKSet, errors as joseErrors, type CryptoKey, type JSONWebKeySet, type LocalJWKSet } from 'jose';
import { checkFetchUrl, isRecord, jwtAuthnError, normalizeHostList, type JwtAuthenticatorConfig } from './config.js';
import { isStackOverflow } from '../../errors.js';

/** Hard deadline for one HTTP fetch (connect + headers + body). */
export const JWKS_FETCH_TIMEOUT_MS = 5_000;
/** Largest JWKS or discovery document accepted. */
export const JWKS_MAX_BYTES = 64 * 1024;
/** Refreshes allowed per window. */
export const JWKS_MAX_REFRESHES = 10;
/** Sliding window for the refresh budget. */
export const JWKS_REFRESH_WINDOW_MS = 300_000;
/** After this age a cached set is refreshed on next use (and kept if the refresh fails). */
export const JWKS_MAX_AGE_MS = 15 * 60_000;

/**
 * `kid` values we look up. Covers base64/base64url thumbprints and the usual
 * dotted or dashed names; anything else (spaces, `%`, `\`, quotes, control
 * characters) is refused before any fetch.
 */
const KID_PATTERN = /^[A-Za-z0-9._~+/=-]{1,256}$/;

/** What a verification needs from a key source. */
export interface JwtKeyLookup {
  readonly alg: string;
  readonly kid?: string;
}

/**
 * Supplies candidate verification keys for a token header. Implementations
 * refresh at most once per call.
 */
export interface JwtKeySource {
  /** @throws CofferError 401 with a CONJ code when no key can be produced. */
  getKeys(lookup: JwtKeyLookup): Promise<CryptoKey[]>;
  /**
   * Makes sure a key set is loaded (fetching only when the cache is cold or
   * stale) and returns how many keys it holds. Used by the status endpoint.
   * @throws CofferError 401 with a CONJ code when the keys cannot be loaded.
   */
  probe(): Promise<number>;
}

/** Limits applied to one HTTP fetch. */
export interface FetchLimits {
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** PEM bundle; when set it is the only trust root. */
  readonly caCert?: string;
  /** Refuse loopback, private, link-local and other non-public addresses (checked after DNS). */
  readonly denyPrivateAddresses?: boolean;
}

/** Fetches a URL and returns its body as text; rejects on non-200, timeout or size overflow. */
export type TextFetcher = (url: URL, limits: FetchLimits) => Promise<string>;

/** A fetch failure whose message is safe to log (no response body). */
export class JwksFetchError extends Error {
  override readonly name = 'JwksFetchError';
}

/** Rejects a `kid` that is not a plain identifier before it is used for anything. */
export function assertSafeKid(kid: unknown): void {
  if (kid === undefined) return;
  const safe =
    typeof kid === 'string' &&
    KID_PATTERN.test(kid) &&
    !kid.includes('..') &&
    !kid.split('/').some((segment) => segment === '.');
  if (!safe) {
    throw jwtAuthnError('CONJ00035E', "Failed to decode token (3rdPartyError ='invalid \"kid\" header value')");
  }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/**
 * GETs `url` with node:http/https: no redirects, no connection reuse, a hard
 * deadline, and a byte cap enforced while streaming.
 *
 * @example
 * const body = await httpGetText(new URL('https://idp.example/jwks'), { timeoutMs: 5000, maxBytes: 65536 });
 */
export function httpGetText(url: URL, limits: FetchLimits): Promise<string> {
  return new Promise((resolve, reject) => {
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      return reject(new JwksFetchError(`unsupported protocol '${url.protocol}'`));
    }
    // IP literals skip DNS lookup, so they are checked here rather than in publicOnlyLookup.
    if (limits.denyPrivateAddresses && isNonPublicIpLiteral(url.hostname)) {
      return reject(new JwksFetchError(`${url.hostname} is not a public address`));
    }
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (error: Error | undefined, body?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(body ?? '');
    };
    const req = startRequest(url, limits, (res) => readCapped(res, limits.maxBytes, req, finish));
    timer = setTimeout(() => {
      req.destroy();
      finish(new JwksFetchError(`request timed out after ${limits.timeoutMs} ms`));
    }, limits.timeoutMs);
    req.on('error', (error) => finish(new JwksFetchError(error.message)));
    req.end();
  });
}

function startRequest(
  url: URL,
  limits: FetchLimits,
  onResponse: (res: http.IncomingMessage) => void,
): http.ClientRequest {
  const common: http.RequestOptions = {
    method: 'GET',
    // A fresh connection per fetch: refreshes are rare, and pooled sockets would outlive the deadline.
    agent: false,
    headers: { accept: 'application/json', 'accept-encoding': 'identity', 'user-agent': 'coffer-authn-jwt' },
    ...(limits.denyPrivateAddresses ? { lookup: publicOnlyLookup as unknown as net.LookupFunction } : {}),
  };
  if (url.protocol === 'https:') {
    const tls: https.RequestOptions = { ...common, minVersion: 'TLSv1.2' };
    // Setting `ca` replaces Node's root store, so ca-cert becomes the only trust root.
    if (limits.caCert !== undefined) tls.ca = limits.caCert;
    return https.request(url, tls, onResponse);
  }
  return http.request(url, common, onResponse);
}

function readCapped(
  res: http.IncomingMessage,
  maxBytes: number,
  req: http.ClientRequest,
  finish: (error: Error | undefined, body?: string) => void,
): void {
  const abort = (reason: string) => {
    req.destroy();
    finish(new JwksFetchError(reason));
  };
  if (res.statusCode !== 200) return abort(`response code: '${res.statusCode ?? 'none'}'`);
  if (Number(res.headers['content-length'] ?? 0) > maxBytes) return abort(`response larger than ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  res.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > maxBytes) abort(`response larger than ${maxBytes} bytes`);
    else chunks.push(chunk);
  });
  res.on('end', () => finish(undefined, Buffer.concat(chunks).toString('utf8')));
  res.on('error', (error) => finish(new JwksFetchError(error.message)));
  res.on('close', () => {
    if (!res.complete) finish(new JwksFetchError('connection closed before the response completed'));
  });
}

const NON_PUBLIC = (() => {
  const list = new net.BlockList();
  for (const [prefix, bits] of [
    ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
    ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 3],
  ] as const) {
    list.addSubnet(prefix, bits, 'ipv4');
  }
  for (const [prefix, bits] of [
    // No ::ffff:0:0/96 rule here: BlockList would match it against every IPv4 address.
    ['::', 127], ['64:ff9b::', 96], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['2001:db8::', 32],
  ] as const) {
    list.addSubnet(prefix, bits, 'ipv6');
  }
  return list;
})();

/** True for loopback, private, link-local, CGNAT, multicast, reserved and IPv4-mapped non-public addresses. */
export function isNonPublicAddress(address: string): boolean {
  const mapped = embeddedIpv4(address);
  // Not an address at all (`::ffff:999.0.0.1`): never called public.
  if (mapped !== undefined) return net.isIPv4(mapped) ? NON_PUBLIC.check(mapped, 'ipv4') : true;
  const family = net.isIP(address);
  if (family === 4) return NON_PUBLIC.check(address, 'ipv4');
  if (family === 6) return NON_PUBLIC.check(address, 'ipv6');
  return true;
}

/** The IPv4 address inside an IPv4-mapped IPv6 address, in dotted or hex form. */
function embeddedIpv4(address: string): string | undefined {
  const dotted = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (dotted) return dotted[1];
  if (net.isIP(address) !== 6) return undefined;
  // The WHATWG serializer gives the canonical compressed form, e.g. ::ffff:7f00:1.
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!hex) return undefined;
  const [high, low] = [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16)];
  return [high >> 8, high & 255, low >> 8, low & 255].join('.');
}

function isNonPublicIpLiteral(hostname: string): boolean {
  const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  return net.isIP(host) !== 0 && isNonPublicAddress(host);
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

// Checks every resolved address, so a DNS answer cannot steer the fetch to an internal service.
function publicOnlyLookup(hostname: string, options: dns.LookupOptions, callback: LookupCallback): void {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '', 0);
    if (addresses.length === 0 || addresses.some((a) => isNonPublicAddress(a.address))) {
      const error: NodeJS.ErrnoException = new Error(`${hostname} resolves to a non-public address`);
      error.code = 'ENONPUBLIC';
      return callback(error, '', 0);
    }
    if (options.all) return callback(null, addresses);
    return callback(null, addresses[0]!.address, addresses[0]!.family);
  });
}

// ---------------------------------------------------------------------------
// Key matching
// ---------------------------------------------------------------------------

const NO_MATCHING_KEY = Symbol('no matching key');

async function matchKeys(set: LocalJWKSet, lookup: JwtKeyLookup): Promise<CryptoKey[] | typeof NO_MATCHING_KEY> {
  try {
    return [await set({ alg: lookup.alg, kid: lookup.kid })];
  } catch (error) {
    if (error instanceof joseErrors.JWKSNoMatchingKey) return NO_MATCHING_KEY;
    if (error instanceof joseErrors.JWKSMultipleMatchingKeys) {
      const keys: CryptoKey[] = [];
      for await (const key of error) keys.push(key);
      return keys.length > 0 ? keys : NO_MATCHING_KEY;
    }
    const message = error instanceof Error ? error.message : 'key import failed';
    throw jwtAuthnError('CONJ00035E', `Failed to decode token (3rdPartyError ='${message}')`);
  }
}

function noMatchingKey(detail = ''): never {
  throw jwtAuthnError(
    'CONJ00035E',
    `Failed to decode token (3rdPartyError ='no applicable key found in the JSON Web Key Set${detail}')`,
  );
}

/** Keys from a static `public-keys` JWKS: no network at all. */
export class StaticJwksKeySource implements JwtKeySource {
  readonly #set: LocalJWKSet;
  readonly #keyCount: number;

  constructor(jwks: JSONWebKeySet) {
    this.#set = createLocalJWKSet(jwks);
    this.#keyCount = jwks.keys.length;
  }

  async probe(): Promise<number> {
    return this.#keyCount;
  }

  async getKeys(lookup: JwtKeyLookup): Promise<CryptoKey[]> {
    assertSafeKid(lookup.kid);
    const keys = await matchKeys(this.#set, lookup);
    return keys === NO_MATCHING_KEY ? noMatchingKey() : keys;
  }
}

// ---------------------------------------------------------------------------
// Remote source
// ---------------------------------------------------------------------------

/** Where a remote source gets its keys. */
export type RemoteJwksTarget =
  | { readonly jwksUri: string; readonly caCert?: string }
  | { readonly providerUri: string; readonly caCert?: string };

/** Tunables and injection points of {@link RemoteJwksKeySource}. */
export interface RemoteJwksOptions {
  /** Hosts allowed over plain http, for URLs found in discovery documents. */
  readonly allowHttpHosts?: readonly string[];
  /** Replaces the node:http/https fetcher (tests, proxies). */
  readonly fetchText?: TextFetcher;
  /** Clock in epoch milliseconds. */
  readonly now?: () => number;
  /** Per-fetch deadline; capped at {@link JWKS_FETCH_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Response cap; capped at {@link JWKS_MAX_BYTES}. */
  readonly maxBytes?: number;
  readonly maxRefreshes?: number;
  readonly refreshWindowMs?: number;
  readonly maxAgeMs?: number;
  /** Refuse non-public addresses after DNS resolution (operator setting). */
  readonly denyPrivateAddresses?: boolean;
}

interface CachedSet {
  readonly set: LocalJWKSet;
  readonly keyCount: number;
  readonly fetchedAt: number;
}

/** Sliding-window budget: at most `max` acquisitions in any `windowMs`. */
class SlidingWindowLimiter {
  readonly #stamps: number[] = [];
  constructor(
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  tryAcquire(now: number): boolean {
    while (this.#stamps.length > 0 && this.#stamps[0]! <= now - this.windowMs) this.#stamps.shift();
    if (this.#stamps.length >= this.max) return false;
    this.#stamps.push(now);
    return true;
  }
}

class RefreshRateLimited extends Error {}

/**
 * Keys from a JWKS URL or an OIDC provider's discovery document.
 * Create one per service configuration and reuse it: the cache and the
 * refresh budget live in the instance.
 *
 * @example
 * const source = new RemoteJwksKeySource({ jwksUri: 'https://idp.example/jwks' });
 * const keys = await source.getKeys({ alg: 'RS256', kid: 'key-1' });
 */
export class RemoteJwksKeySource implements JwtKeySource {
  readonly #target: RemoteJwksTarget;
  /** The jwks-uri, checked once; undefined for provider-uri targets. */
  readonly #jwksUrl?: URL;
  readonly #fetchText: TextFetcher;
  readonly #now: () => number;
  readonly #limits: FetchLimits;
  readonly #limiter: SlidingWindowLimiter;
  readonly #maxAgeMs: number;
  readonly #allowHttpHosts: readonly string[];
  #cached?: CachedSet;
  #inflight?: Promise<CachedSet>;

  /** @throws CofferError 401 when the target URL is not https (or an allowed plain-http host). */
  constructor(target: RemoteJwksTarget, opts: RemoteJwksOptions = {}) {
    this.#target = target;
    this.#allowHttpHosts = normalizeHostList(opts.allowHttpHosts ?? []);
    // Re-checked here so a source built without parseJwtAuthenticatorConfig keeps the https rule.
    if ('jwksUri' in target) this.#jwksUrl = checkFetchUrl(target.jwksUri, 'jwks-uri', this.#allowHttpHosts);
    else checkFetchUrl(target.providerUri, 'provider-uri', this.#allowHttpHosts);
    this.#fetchText = opts.fetchText ?? httpGetText;
    this.#now = opts.now ?? Date.now;
    this.#limits = {
      timeoutMs: Math.min(opts.timeoutMs ?? JWKS_FETCH_TIMEOUT_MS, JWKS_FETCH_TIMEOUT_MS),
      maxBytes: Math.min(opts.maxBytes ?? JWKS_MAX_BYTES, JWKS_MAX_BYTES),
      caCert: target.caCert,
      denyPrivateAddresses: opts.denyPrivateAddresses ?? false,
    };
    this.#limiter = new SlidingWindowLimiter(
      opts.maxRefreshes ?? JWKS_MAX_REFRESHES,
      opts.refreshWindowMs ?? JWKS_REFRESH_WINDOW_MS,
    );
    this.#maxAgeMs = opts.maxAgeMs ?? JWKS_MAX_AGE_MS;
  }

  async probe(): Promise<number> {
    let cached = this.#cached;
    if (cached === undefined || this.#now() - cached.fetchedAt >= this.#maxAgeMs) cached = await this.#refreshOrKeepStale(cached);
    return cached.keyCount;
  }

  /** At most one fetch per call: a cold or stale cache, or else one retry for an unknown key. */
  async getKeys(lookup: JwtKeyLookup): Promise<CryptoKey[]> {
    assertSafeKid(lookup.kid);
    let refreshed = false;
    let cached = this.#cached;
    if (cached === undefined || this.#now() - cached.fetchedAt >= this.#maxAgeMs) {
      cached = await this.#refreshOrKeepStale(cached);
      refreshed = true;
    }
    const keys = await matchKeys(cached.set, lookup);
    if (keys !== NO_MATCHING_KEY) return keys;
    if (refreshed) return noMatchingKey();
    try {
      cached = await this.#refresh();
    } catch (error) {
      if (error instanceof RefreshRateLimited) return noMatchingKey('; JWKS refresh rate limit reached');
      throw error;
    }
    const retried = await matchKeys(cached.set, lookup);
    return retried === NO_MATCHING_KEY ? noMatchingKey() : retried;
  }

  async #refreshOrKeepStale(stale: CachedSet | undefined): Promise<CachedSet> {
    try {
      return await this.#refresh();
    } catch (error) {
      // A stale set beats an outage; rotation is still picked up on the next successful refresh.
      if (stale !== undefined) return stale;
      if (error instanceof RefreshRateLimited) throw this.#fetchFailed('JWKS refresh rate limit reached');
      throw error;
    }
  }

  /** Joins an in-flight refresh or starts one if the budget allows. */
  #refresh(): Promise<CachedSet> {
    if (this.#inflight !== undefined) return this.#inflight;
    if (!this.#limiter.tryAcquire(this.#now())) return Promise.reject(new RefreshRateLimited());
    this.#inflight = this.#load().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #load(): Promise<CachedSet> {
    const jwksUrl = this.#jwksUrl ?? (await this.#discoverJwksUrl());
    let body: string;
    try {
      body = await this.#fetchText(jwksUrl, this.#limits);
    } catch (error) {
      throw this.#fetchFailed(errorMessage(error), jwksUrl);
    }
    const cached = { ...parseJwks(body), fetchedAt: this.#now() };
    this.#cached = cached;
    return cached;
  }

  async #discoverJwksUrl(): Promise<URL> {
    const providerUri = (this.#target as { providerUri: string }).providerUri;
    const discovery = new URL(`${providerUri.replace(/\/+$/, '')}/.well-known/openid-configuration`);
    const failed = (reason: string) =>
      jwtAuthnError('CONJ00011E', `Failed to discover Identity Provider (Provider URI: '${providerUri}'). Reason: '${reason}'`);
    let document: unknown;
    try {
      document = JSON.parse(await this.#fetchText(discovery, this.#limits));
    } catch (error) {
      throw failed(errorMessage(error));
    }
    if (!isRecord(document) || typeof document['jwks_uri'] !== 'string') throw failed('jwks_uri missing');
    const issuer = document['issuer'];
    if (typeof issuer === 'string' && trimSlash(issuer) !== trimSlash(providerUri)) {
      // OpenID Connect Discovery 1.0 §4.3: the document must describe the provider we asked.
      throw failed('issuer in discovery document does not match provider-uri');
    }
    try {
      return checkFetchUrl(document['jwks_uri'], 'jwks_uri', this.#allowHttpHosts);
    } catch {
      throw failed('jwks_uri is not an allowed https URL');
    }
  }

  #fetchFailed(reason: string, url?: URL) {
    const uri = url?.href ?? ('jwksUri' in this.#target ? this.#target.jwksUri : this.#target.providerUri);
    return jwtAuthnError('CONJ00087E', `Failed to fetch JWKS from '${uri}'. Reason: '${reason}'`);
  }
}

function trimSlash(value: string): string {
  return value.replace(/\/+$/, '');
}

function errorMessage(error: unknown): string {
  if (error instanceof SyntaxError) return 'response is not valid JSON';
  if (isStackOverflow(error)) return 'response is nested too deeply';
  return error instanceof Error ? error.message : 'unknown error';
}

/** Parses a fetched JWKS; the response body is never echoed into messages. */
function parseJwks(body: string): { set: LocalJWKSet; keyCount: number } {
  let document: unknown;
  try {
    document = JSON.parse(body);
  } catch {
    throw jwtAuthnError('CONJ00093E', "Failed to convert HTTP response to JWKS type. Reason: 'invalid JSON'");
  }
  if (!isRecord(document) || !Array.isArray(document['keys'])) {
    throw jwtAuthnError('CONJ00088E', "JWKS not found in response: 'keys' member missing");
  }
  try {
    return { set: createLocalJWKSet(document as unknown as JSONWebKeySet), keyCount: document['keys'].length };
  } catch (error) {
    throw jwtAuthnError('CONJ00093E', `Failed to convert HTTP response to JWKS type. Reason: '${errorMessage(error)}'`);
  }
}

// ---------------------------------------------------------------------------
// Factory
// ---------------------------------------------------------------------------

/**
 * Builds the key source a configuration asks for.
 *
 * @example
 * const source = createJwtKeySource(config, { denyPrivateAddresses: true });
 */
export function createJwtKeySource(
  config: JwtAuthenticatorConfig,
  opts: Omit<RemoteJwksOptions, 'allowHttpHosts'> = {},
): JwtKeySource {
  const signing = config.signingKey;
  const remoteOpts = { ...opts, allowHttpHosts: config.allowHttpHosts };
  switch (signing.type) {
    case 'public-keys':
      return new StaticJwksKeySource(signing.jwks);
    case 'jwks-uri':
      return new RemoteJwksKeySource({ jwksUri: signing.uri, caCert: signing.caCert }, remoteOpts);
    case 'provider-uri':
      return new RemoteJwksKeySource({ providerUri: signing.uri, caCert: signing.caCert }, remoteOpts);
  }
}

/**
 * A stable digest of the settings a key source depends on. A server caching
 * key sources per service should rebuild the source when this changes.
 */
export function keySourceFingerprint(config: JwtAuthenticatorConfig): string {
  return createHash('sha256')
    .update(JSON.stringify({ signing: config.signingKey, allow: config.allowHttpHosts }))
    .digest('hex');
}
