/**
 * The console's only way to the server: the same public API as any client.
 *
 * The access token (and the API key that renews it) live in this module's
 * closure only — never in localStorage, sessionStorage, a cookie or a URL —
 * so a reload signs out. The token is renewed at three quarters of its
 * lifetime; sign-out revokes it (DELETE /authn/{account}/token).
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown = undefined,
  ) {
    super(message);
  }
}

export interface Identity {
  account: string;
  login: string;
  /** Full role id: `acme:user:alice`, `acme:host:ci/executor-01`. */
  roleId: string;
}

interface Credentials extends Identity {
  apiKey: string;
  token: string;
  renewTimer: ReturnType<typeof setTimeout> | undefined;
}

let current: Credentials | undefined;
const listeners = new Set<(who: Identity | undefined, why?: string) => void>();

/** Called with the identity on sign-in and `undefined` (and a reason) on sign-out. */
export function onSessionChange(fn: (who: Identity | undefined, why?: string) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function identity(): Identity | undefined {
  return current && { account: current.account, login: current.login, roleId: current.roleId };
}

/** `admin` → `acme:user:admin`, `host/ci/x` → `acme:host:ci/x` (Conjur's login rule). */
export function roleIdFromLogin(account: string, login: string): string {
  const slash = login.indexOf('/');
  if (slash > 0 && login.slice(0, slash) === 'host') return `${account}:${login.slice(0, slash)}:${login.slice(slash + 1)}`;
  return `${account}:user:${login}`;
}

const utf8Base64 = (s: string) => {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
};

async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  let body: unknown = text;
  let message = text.trim();
  try {
    body = JSON.parse(text);
    const m = (body as { error?: { message?: unknown } })?.error?.message;
    if (typeof m === 'string') message = m;
  } catch {
    // a text or empty body
  }
  if (!message) message = `${res.status} ${res.statusText}`;
  return new ApiError(res.status, message, body);
}

/** Lifetime of a Conjur token in seconds, from its claims (`exp - iat`); 480 when unreadable. */
function lifetimeOf(tokenJson: string): number {
  try {
    const { payload } = JSON.parse(tokenJson) as { payload: string };
    const claims = JSON.parse(atob(payload)) as { iat: number; exp: number };
    const ttl = claims.exp - claims.iat;
    return Number.isFinite(ttl) && ttl > 0 ? ttl : 480;
  } catch {
    return 480;
  }
}

async function authenticate(account: string, login: string, apiKey: string): Promise<{ token: string; ttl: number }> {
  const res = await fetch(`/authn/${encodeURIComponent(account)}/${encodeURIComponent(login)}/authenticate`, {
    method: 'POST',
    body: apiKey,
    headers: { 'Content-Type': 'text/plain' },
    credentials: 'omit',
    cache: 'no-store',
  });
  if (!res.ok) throw await errorOf(res);
  const json = await res.text();
  return { token: utf8Base64(json), ttl: lifetimeOf(json) };
}

function scheduleRenewal(c: Credentials, ttlSeconds: number): void {
  clearTimeout(c.renewTimer);
  c.renewTimer = setTimeout(
    async () => {
      if (current !== c) return;
      try {
        const t = await authenticate(c.account, c.login, c.apiKey);
        if (current !== c) return;
        const old = c.token;
        c.token = t.token;
        scheduleRenewal(c, t.ttl);
        // One live token at a time: the one replaced is revoked (a request still using it is retried with the new one).
        void revoke(c.account, old);
      } catch {
        if (current === c) end('Your session could not be renewed; please sign in again.');
      }
    },
    Math.max(5, ttlSeconds * 0.75) * 1000,
  );
}

/** What a refused sign-in tells the person signing in. */
export function signInMessage(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 401) return 'Sign-in failed: the account, login or key/password is not right.';
    if (err.status === 429) return 'Too many failed sign-ins for this login: wait a minute and try again.';
    if (err.status === 403) return 'Sign-in refused: this login may not authenticate from here.';
    return `Sign-in failed: ${err.message}`;
  }
  return 'Sign-in failed: the server could not be reached.';
}

/**
 * Signs in with an API key, or with a password (exchanged for the API key
 * through GET /authn/{account}/login, as `conjur login` does).
 */
export async function signIn(account: string, login: string, secret: string, kind: 'apikey' | 'password'): Promise<Identity> {
  let apiKey = secret;
  if (kind === 'password') {
    const res = await fetch(`/authn/${encodeURIComponent(account)}/login`, {
      headers: { Authorization: `Basic ${utf8Base64(`${login}:${secret}`)}` },
      credentials: 'omit',
      cache: 'no-store',
    });
    if (!res.ok) throw await errorOf(res);
    apiKey = (await res.text()).trim();
  }
  const t = await authenticate(account, login, apiKey);
  if (current) end();
  current = { account, login, roleId: roleIdFromLogin(account, login), apiKey, token: t.token, renewTimer: undefined };
  scheduleRenewal(current, t.ttl);
  const who = identity()!;
  for (const l of listeners) l(who);
  return who;
}

function end(why?: string): void {
  if (!current) return;
  clearTimeout(current.renewTimer);
  current = undefined;
  for (const l of listeners) l(undefined, why);
}

async function revoke(account: string, token: string): Promise<void> {
  try {
    await fetch(`/authn/${encodeURIComponent(account)}/token`, {
      method: 'DELETE',
      headers: { Authorization: `Token token="${token}"` },
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    // The token expires on its own; the console forgets it either way.
  }
}

/** Revokes the token on the server, then forgets it and the API key. */
export async function signOut(why?: string): Promise<void> {
  const c = current;
  if (!c) return;
  await revoke(c.account, c.token);
  end(why);
}

export interface RequestOptions {
  accept?: string;
  signal?: AbortSignal;
  /** Statuses returned as a Response instead of thrown (e.g. 409 from verify). */
  allow?: number[];
}

/** An authenticated request; a 401 (revoked or expired token) ends the session. */
export async function request(path: string, opts: RequestOptions = {}): Promise<Response> {
  const c = current;
  if (!c) throw new ApiError(401, 'Not signed in');
  const send = (token: string) =>
    fetch(path, {
      headers: { Authorization: `Token token="${token}"`, Accept: opts.accept ?? 'application/json' },
      credentials: 'omit',
      cache: 'no-store',
      signal: opts.signal,
    });
  const used = c.token;
  let res = await send(used);
  // Renewed (and the old token revoked) while this request was on its way: once more with the new token.
  if (res.status === 401 && current === c && c.token !== used) res = await send(c.token);
  if (res.ok || opts.allow?.includes(res.status)) return res;
  const err = await errorOf(res);
  if (res.status === 401 && current === c) end('Your session has ended (the token is no longer valid); please sign in again.');
  throw err;
}

export async function getJson<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await request(path, opts);
  return (await res.json()) as T;
}

export async function getText(path: string, opts: RequestOptions = {}): Promise<string> {
  return (await request(path, opts)).text();
}

/** A query string from the defined, non-empty values. */
export function qs(params: Record<string, string | number | boolean | undefined | null>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : '';
}

/** Splits `account:kind:identifier` (the identifier may hold ':'). */
export function parseId(id: string): { account: string; kind: string; identifier: string } | undefined {
  const a = id.indexOf(':');
  const b = a < 0 ? -1 : id.indexOf(':', a + 1);
  if (a <= 0 || b <= a + 1 || b === id.length - 1) return undefined;
  return { account: id.slice(0, a), kind: id.slice(a + 1, b), identifier: id.slice(b + 1) };
}

/** `/resources/acme/variable/ci%2Fdb` style path for a full id. */
export function idPath(prefix: string, id: string): string {
  const p = parseId(id);
  if (!p) throw new ApiError(422, `not a full id: ${id}`);
  return `${prefix}/${encodeURIComponent(p.account)}/${encodeURIComponent(p.kind)}/${encodeURIComponent(p.identifier)}`;
}
