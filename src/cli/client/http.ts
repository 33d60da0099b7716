/**
 * One HTTP(S) request with node:http(s). global fetch cannot trust a custom
 * CA without undici, and the Conjur convention is that CONJUR_CERT_FILE is the
 * *only* root trusted for the appliance, which the `ca` option gives exactly.
 */
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CliError } from '../io.js';
import { EXIT } from './exit-codes.js';

export interface HttpResult {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export type Query = Record<string, string | string[] | undefined>;

export interface RawRequest {
  method: string;
  /** Absolute URL of the server plus path, without the query. */
  url: string;
  query?: Query;
  headers?: Record<string, string>;
  body?: string | Buffer;
  caCert?: Buffer;
  /** Milliseconds without any socket activity before giving up. */
  idleTimeoutMs?: number;
  /** Largest response body accepted (protects the CLI from a runaway server). */
  maxBodyBytes?: number;
}

const USER_AGENT = 'coffer-cli';
const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
const DEFAULT_MAX_BODY = 256 * 1024 * 1024;

export function encodeQuery(query: Query | undefined): string {
  if (!query) return '';
  const parts: string[] = [];
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(v)}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|ERR_OSSL)/;

/** A network failure as one clear line; never includes headers or bodies (they may hold credentials). */
export function networkError(err: NodeJS.ErrnoException, url: URL): CliError {
  const where = url.origin;
  const code = err.code ?? '';
  if (TLS_CODES.test(code) || /certificate|SSL|TLS/i.test(err.message)) {
    return new CliError(
      `TLS error talking to ${where}: ${err.message} (trust the server's CA with CONJUR_CERT_FILE or \`coffer init --ca-cert FILE\`)`,
      EXIT.NETWORK,
    );
  }
  if (code === 'ECONNREFUSED') return new CliError(`cannot connect to ${where}: connection refused (is the server running?)`, EXIT.NETWORK);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new CliError(`cannot resolve the host of ${where}`, EXIT.NETWORK);
  if (code === 'ETIMEDOUT') return new CliError(`${where} did not answer in time`, EXIT.NETWORK);
  return new CliError(`network error talking to ${where}: ${code || err.message}`, EXIT.NETWORK);
}

export function sendRequest(req: RawRequest): Promise<HttpResult> {
  const url = new URL(req.url + encodeQuery(req.query));
  const headers: OutgoingHttpHeaders = { 'User-Agent': USER_AGENT, ...req.headers };
  if (req.body !== undefined) headers['Content-Length'] = Buffer.byteLength(req.body);
  const isHttps = url.protocol === 'https:';
  const send = isHttps ? httpsRequest : httpRequest;
  const maxBody = req.maxBodyBytes ?? DEFAULT_MAX_BODY;
  return new Promise<HttpResult>((resolvePromise, reject) => {
    const r = send(
      url,
      {
        method: req.method,
        headers,
        ...(isHttps && req.caCert ? { ca: req.caCert } : {}),
        timeout: req.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBody) {
            res.destroy();
            reject(new CliError(`the response from ${url.origin} is larger than ${maxBody} bytes`, EXIT.FAILURE));
            return;
          }
          chunks.push(c);
        });
        res.on('error', (err) => reject(networkError(err, url)));
        res.on('end', () => {
          const flat: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v;
          resolvePromise({ status: res.statusCode ?? 0, headers: flat, body: Buffer.concat(chunks) });
        });
      },
    );
    r.on('timeout', () => r.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    r.on('error', (err) => reject(networkError(err, url)));
    r.end(req.body);
  });
}
