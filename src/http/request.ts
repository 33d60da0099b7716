/** Reading requests the way Conjur clients send them (reference §0, §11). */
import type { Context } from 'hono';
import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import { CofferError, argumentError, badRequest, unprocessable } from '../errors.js';
import { validateIdentifier } from '../ids.js';
import type { RequestInfo } from '../audit/log.js';
import { cidrContains } from '../cidr.js';
import { hasIllFormedString } from '../text.js';

export interface HttpEnv {
  Bindings: { incoming: IncomingMessage };
  Variables: { requestId: string; clientIp: string };
}

export type Ctx = Context<HttpEnv>;

// A fetch reads its path four or five times (account, kind, identifier, query flags): parsed once per request.
const urls = new WeakMap<Request, URL>();
const segmentsOf = new WeakMap<Request, readonly string[]>();

/** The request's URL, parsed once per request. Read it, never change it. */
export function requestUrl(c: Ctx): URL {
  let url = urls.get(c.req.raw);
  if (url === undefined) {
    url = new URL(c.req.raw.url);
    urls.set(c.req.raw, url);
  }
  return url;
}

/** Raw (still percent-encoded) path segments, without the trailing-slash empty segment. */
export function rawSegments(c: Ctx): readonly string[] {
  let segs = segmentsOf.get(c.req.raw);
  if (segs === undefined) {
    const parts = requestUrl(c).pathname.split('/').slice(1);
    while (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
    segs = Object.freeze(parts);
    segmentsOf.set(c.req.raw, segs);
  }
  return segs;
}

function decodeSegment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw badRequest(`Invalid percent-encoding in path segment '${raw}'`);
  }
}

/** Decoded path segment `index` (0-based after the leading slash). `+` stays a plus. */
export function segment(c: Ctx, index: number): string {
  const seg = rawSegments(c)[index];
  if (seg === undefined) throw argumentError('missing path segment');
  return validateIdentifier(decodeSegment(seg));
}

/** Account path segment: may not contain an encoded slash (Conjur's ExcludeEncodedSlash). */
export function accountSegment(c: Ctx, index: number): string {
  const raw = rawSegments(c)[index] ?? '';
  if (/%2f/i.test(raw)) throw new CofferError('not_found', 'Account segment may not contain an encoded slash');
  return segment(c, index);
}

/** The rest of the path from `index` on, joined with '/', decoded: `prod/db/pw` or `prod%2Fdb%2Fpw` alike. */
export function identifierFrom(c: Ctx, index: number, until?: number): string {
  const segs = rawSegments(c);
  const parts = segs.slice(index, until === undefined ? undefined : segs.length - until);
  if (parts.length === 0) throw argumentError('missing identifier');
  return validateIdentifier(parts.map(decodeSegment).join('/'), 'identifier');
}

/** Query parameter from the raw query string, decoded with `+` as a space (form rules). */
export function queryParam(c: Ctx, name: string): string | undefined {
  return requestUrl(c).searchParams.get(name) ?? undefined;
}

export function hasQueryFlag(c: Ctx, name: string): boolean {
  return requestUrl(c).searchParams.has(name);
}

export function requestInfo(c: Ctx): RequestInfo {
  return { clientIp: c.get('clientIp'), requestId: c.get('requestId'), userAgent: c.req.header('user-agent') };
}

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function requestIdFor(header: string | undefined): string {
  return header && REQUEST_ID.test(header) ? header : randomUUID();
}

function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/**
 * The client IP: the socket's peer, or — only when the peer is a trusted
 * proxy — the right-most X-Forwarded-For address that is not itself trusted.
 */
export function clientIp(incoming: IncomingMessage | undefined, forwardedFor: string | undefined, trustedProxies: string[]): string {
  const peer = normalizeIp(incoming?.socket?.remoteAddress ?? '');
  const trusted = (ip: string) => trustedProxies.some((cidr) => cidrContains(cidr, ip));
  if (!forwardedFor || trustedProxies.length === 0 || !peer || !trusted(peer)) return peer;
  const hops = forwardedFor.split(',').map((s) => normalizeIp(s.trim())).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) if (!trusted(hops[i]!)) return hops[i]!;
  return hops[0] ?? peer;
}

/** Reads the body as raw bytes whatever the Content-Type (never form-parsed), bounded by `limit`. */
export async function rawBody(c: Ctx, limit: number): Promise<Buffer> {
  const declared = Number(c.req.header('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
  const body = c.req.raw.body;
  if (!body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      for (const ch of chunks) ch.fill(0);
      throw tooLarge(limit);
    }
    chunks.push(Buffer.from(value));
  }
  return Buffer.concat(chunks, size);
}

function tooLarge(limit: number) {
  return new CofferError('payload_too_large', `Request body is larger than the limit of ${limit} bytes`);
}

/**
 * A JSON request body, parsed. Text decoded from bytes is always well-formed,
 * but a JSON `\ud800` escape makes a lone UTF-16 surrogate, which no UTF-8
 * store (SQLite, the audit chain's canonical bytes) can hold as it is: such a
 * body is refused here, once, for every route that takes JSON.
 */
export function parseJsonBody(body: Buffer, notJson: () => CofferError): unknown {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw notJson();
  }
  if (hasIllFormedString(json)) throw unprocessable('Request body contains ill-formed Unicode (a lone UTF-16 surrogate escape such as \\ud800)');
  return json;
}

/** Form (urlencoded) or JSON body as a flat map of single values and `name[]`/`name[k]` groups. */
export async function formOrJson(c: Ctx, limit: number): Promise<URLSearchParams> {
  const body = await rawBody(c, limit);
  const params = new URLSearchParams(requestUrl(c).search);
  if (body.length === 0) return params;
  const type = (c.req.header('content-type') ?? '').toLowerCase();
  if (type.includes('application/json')) {
    const json = parseJsonBody(body, () => badRequest('Request body is not valid JSON'));
    if (json && typeof json === 'object' && !Array.isArray(json)) {
      for (const [k, v] of Object.entries(json)) {
        if (Array.isArray(v)) for (const item of v) params.append(`${k}[]`, String(item));
        else if (v && typeof v === 'object') for (const [k2, v2] of Object.entries(v)) params.append(`${k}[${k2}]`, String(v2));
        else if (v !== null && v !== undefined) params.append(k, String(v));
      }
    }
    return params;
  }
  for (const [k, v] of new URLSearchParams(body.toString('utf8'))) params.append(k, v);
  return params;
}

/**
 * An issued access token as every authenticator answers it: the token JSON,
 * or its strict base64 with `Content-Encoding: base64` when `Accept-Encoding`
 * lists base64 (comma-split, trimmed, case-insensitive) — Conjur clients' way
 * of asking for a header-ready token.
 */
export function accessTokenResponse(c: Ctx, token: string): Response {
  const wantsBase64 = (c.req.header('accept-encoding') ?? '').split(',').some((p) => p.trim().toLowerCase() === 'base64');
  if (wantsBase64) {
    c.header('Content-Encoding', 'base64');
    return c.text(Buffer.from(token).toString('base64'));
  }
  return c.body(token, 200, { 'Content-Type': 'application/json' });
}

/** HTTP Basic credentials, or undefined when the header is absent or not Basic. */
export function basicCredentials(c: Ctx): { login: string; secret: string } | undefined {
  const header = c.req.header('authorization');
  const m = header ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { login: decoded.slice(0, colon), secret: decoded.slice(colon + 1) };
}
