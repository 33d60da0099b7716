/** A small HTTP client for the e2e tests, speaking to the server as Conjur clients do. */
import { validateResponse } from './openapi.js';

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  bytes: Buffer;
  json: any;
}

export interface RequestOptions {
  body?: string | Buffer;
  headers?: Record<string, string>;
  token?: string;
  /** Skip the OpenAPI response check (for deliberately malformed requests). */
  skipContract?: boolean;
}

export function tokenHeader(tokenJson: string): string {
  return `Token token="${Buffer.from(tokenJson).toString('base64')}"`;
}

export class Client {
  constructor(
    readonly url: string,
    readonly account: string,
  ) {}

  async request(method: string, path: string, opts: RequestOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.Authorization = tokenHeader(opts.token);
    const res = await fetch(`${this.url}${path}`, { method, headers, body: opts.body });
    const bytes = Buffer.from(await res.arrayBuffer());
    const text = bytes.toString('utf8');
    let json: any;
    const type = res.headers.get('content-type');
    if (type?.includes('json') && text.length) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    if (!opts.skipContract) {
      validateResponse(method, path.split('?')[0]!, res.status, type, json ?? (text.length ? text : null));
    }
    return { status: res.status, headers: res.headers, text, bytes, json };
  }

  /** Authenticates with an API key; returns the raw token JSON. */
  async login(login: string, apiKey: string): Promise<string> {
    const r = await this.request('POST', `/authn/${this.account}/${encodeURIComponent(login)}/authenticate`, {
      body: apiKey,
      headers: { 'Content-Type': 'text/plain' },
    });
    if (r.status !== 200) throw new Error(`authenticate ${login} failed: ${r.status} ${r.text}`);
    return r.text;
  }

  async loadPolicy(token: string, method: 'POST' | 'PATCH' | 'PUT', branch: string, yaml: string, query = ''): Promise<Reply> {
    return this.request(method, `/policies/${this.account}/policy/${branch}${query}`, { token, body: yaml });
  }

  async setSecret(token: string, id: string, value: string | Buffer): Promise<Reply> {
    return this.request('POST', `/secrets/${this.account}/variable/${encodeURIComponent(id)}`, {
      token,
      body: value,
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
  }

  async getSecret(token: string, id: string, query = ''): Promise<Reply> {
    return this.request('GET', `/secrets/${this.account}/variable/${encodeURIComponent(id)}${query}`, { token });
  }
}
