/**
 * An authenticated connection to a Coffer (or Conjur) server: the one thing
 * every client command — and `coffer run` — needs. Resolves where the server
 * is and how to authenticate (config.ts), obtains access tokens lazily,
 * renews them before they expire, and revokes what it obtained on close().
 */
import { readFileSync } from 'node:fs';
import { CliError } from '../io.js';
import { resolveClient, type ClientConfig, type CredentialSource, type ResolvedClient } from './config.js';
import { EXIT } from './exit-codes.js';
import { httpError } from './errors.js';
import type { Warn } from './files.js';
import { sendRequest, type HttpResult, type Query } from './http.js';
import { parseAccessToken, type AccessToken } from './token.js';

export type { ClientConfig } from './config.js';
export type { HttpResult } from './http.js';
export { httpError } from './errors.js';

export interface RequestOptions {
  body?: string | Buffer;
  headers?: Record<string, string>;
  query?: Query;
}

export interface ClientSession {
  readonly config: ClientConfig;
  /** Value for the Authorization header: `Token token="<base64>"`; authenticates on first use (API key, token file, or JWT through authn-jwt) and re-authenticates when the token is near expiry. */
  authorization(): Promise<string>;
  /** One HTTP request with the session's Authorization header. `path` starts with '/'; callers percent-encode ids. */
  request(method: string, path: string, opts?: RequestOptions): Promise<HttpResult>;
  /** Revokes the access token this session obtained itself (DELETE /authn/{acct}/token); does nothing for a token supplied by CONJUR_AUTHN_TOKEN(_FILE). Never throws. */
  close(): Promise<void>;
}

export interface OpenOptions {
  home?: string;
  /** Where warnings (e.g. a repaired ~/.netrc mode) go; stderr by default. */
  warn?: Warn;
}

/** Renew at 85% of the lifetime, like conjur-api-go; measured on our clock from receipt, so clock skew does not matter. */
const RENEW_AT = 0.85;

const defaultWarn: Warn = (line) => void process.stderr.write(`${line}\n`);

/** Sends one request without authentication (login, init checks, host-factory host creation). */
export function plainRequest(config: ClientConfig, method: string, path: string, opts: RequestOptions & { idleTimeoutMs?: number } = {}): Promise<HttpResult> {
  return sendRequest({
    method,
    url: config.applianceUrl + path,
    ...(opts.query ? { query: opts.query } : {}),
    ...(opts.headers ? { headers: opts.headers } : {}),
    ...(opts.body !== undefined ? { body: opts.body } : {}),
    ...(config.caCert ? { caCert: config.caCert } : {}),
    ...(opts.idleTimeoutMs ? { idleTimeoutMs: opts.idleTimeoutMs } : {}),
  });
}

interface Held {
  token: AccessToken;
  renewAt: number;
  /** Obtained by this session (and therefore revoked by it). */
  own: boolean;
}

export class Session implements ClientSession {
  private held: Held | undefined;
  private pending: Promise<Held> | undefined;

  constructor(
    readonly config: ClientConfig,
    readonly credentials: CredentialSource,
  ) {}

  async authorization(): Promise<string> {
    if (this.held && Date.now() < this.held.renewAt) return this.held.token.header;
    if (!this.pending) {
      this.pending = this.obtain().finally(() => {
        this.pending = undefined;
      });
    }
    const previous = this.held;
    const next = await this.pending;
    if (previous && previous !== next && previous.own) void this.revoke(previous.token.header);
    this.held = next;
    return next.token.header;
  }

  async request(method: string, path: string, opts: RequestOptions = {}): Promise<HttpResult> {
    const auth = await this.authorization();
    return plainRequest(this.config, method, path, { ...opts, headers: { ...opts.headers, Authorization: auth } });
  }

  async close(): Promise<void> {
    // A token still being obtained (close during a signal, mid-authentication)
    // is waited for and revoked too, rather than left alive on the server.
    let inFlight: Held | undefined;
    if (this.pending) inFlight = await this.pending.catch(() => undefined);
    const held = this.held;
    this.held = undefined;
    for (const h of new Set([held, inFlight])) if (h?.own) await this.revoke(h.token.header);
  }

  private async revoke(header: string): Promise<void> {
    try {
      await plainRequest(this.config, 'DELETE', `/authn/${encodeURIComponent(this.config.account)}/token`, {
        headers: { Authorization: header },
        idleTimeoutMs: 5000,
      });
    } catch {
      /* best effort: the token expires on its own */
    }
  }

  private async obtain(): Promise<Held> {
    const c = this.credentials;
    const received = Date.now();
    switch (c.kind) {
      case 'token': {
        // A token handed to us cannot be renewed; the server will say when it has expired.
        return { token: parseAccessToken(c.tokenJson, c.origin), renewAt: Number.POSITIVE_INFINITY, own: false };
      }
      case 'token-file': {
        let text: string;
        try {
          text = readFileSync(c.path, 'utf8');
        } catch (err) {
          throw new CliError(`cannot read the access token file ${c.path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.UNAUTHENTICATED);
        }
        const token = parseAccessToken(text, `access token file ${c.path}`);
        // Re-read the file (a sidecar keeps it fresh) when this copy gets old.
        return { token, renewAt: received + token.lifetimeMs * RENEW_AT, own: false };
      }
      case 'api-key': {
        const res = await plainRequest(this.config, 'POST', `/authn/${encodeURIComponent(this.config.account)}/${encodeURIComponent(c.login)}/authenticate`, {
          body: c.apiKey,
          headers: { 'Content-Type': 'text/plain' },
        });
        if (res.status === 401) {
          throw new CliError(`authentication as '${c.login}' failed: the API key from ${c.origin} was not accepted (wrong key, rotated key or unknown login)`, EXIT.UNAUTHENTICATED);
        }
        if (res.status !== 200) throw httpError(res, `authenticating as '${c.login}'`);
        const token = parseAccessToken(res.body.toString('utf8'), 'the authenticate response');
        return { token, renewAt: received + token.lifetimeMs * RENEW_AT, own: true };
      }
      case 'jwt': {
        let jwt: string;
        try {
          jwt = readFileSync(c.jwtPath, 'utf8').trim();
        } catch (err) {
          throw new CliError(`cannot read the JWT file ${c.jwtPath} (JWT_TOKEN_PATH): ${(err as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.UNAUTHENTICATED);
        }
        if (!jwt) throw new CliError(`the JWT file ${c.jwtPath} is empty`, EXIT.UNAUTHENTICATED);
        const hostSegment = c.hostId ? `/${encodeURIComponent(c.hostId)}` : '';
        const res = await plainRequest(
          this.config,
          'POST',
          `/authn-jwt/${encodeURIComponent(c.serviceId)}/${encodeURIComponent(this.config.account)}${hostSegment}/authenticate`,
          { body: `jwt=${encodeURIComponent(jwt)}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } },
        );
        if (res.status === 401) throw new CliError(`JWT authentication with authn-jwt/${c.serviceId} failed: the server did not accept the token in ${c.jwtPath}`, EXIT.UNAUTHENTICATED);
        if (res.status !== 200) throw httpError(res, `authenticating with authn-jwt/${c.serviceId}`);
        const token = parseAccessToken(res.body.toString('utf8'), 'the authn-jwt response');
        return { token, renewAt: received + token.lifetimeMs * RENEW_AT, own: true };
      }
    }
  }
}

/** Resolves configuration only (no credentials needed): for init, login and logout. */
export function resolveConfig(env: NodeJS.ProcessEnv, opts: OpenOptions = {}): ResolvedClient {
  return resolveClient(env, { ...(opts.home ? { home: opts.home } : {}), warn: opts.warn ?? defaultWarn });
}

/** Resolves config and credentials from env / ~/.conjurrc / ~/.netrc (see config.ts for the precedence). Throws CliError with a clear message when something is missing. */
export async function openSession(env: NodeJS.ProcessEnv, opts: OpenOptions = {}): Promise<ClientSession> {
  return openSessionFrom(resolveConfig(env, opts));
}

export function openSessionFrom(resolved: ResolvedClient): Session {
  if (!resolved.credentials) throw new CliError(resolved.missingCredentials ?? 'not logged in: run `coffer login -i LOGIN`', EXIT.UNAUTHENTICATED);
  return new Session(resolved.config, resolved.credentials);
}
