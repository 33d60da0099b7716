/**
 * Where the client's settings and credentials come from. Precedence, highest
 * first (README "CLI configuration"):
 *
 *   1. environment: COFFER_* aliases, then Conjur's CONJUR_* variables;
 *   2. ~/.conjurrc (or $CONJURRC): appliance_url, account, cert_file,
 *      netrc_path, authn_type/service_id/jwt_file/jwt_host_id — as
 *      `conjur init` (Go or Python CLI) writes it;
 *   3. ~/.netrc: `machine <url>/authn` (then `machine <url>`) login/password.
 *
 * Credentials, highest first: a ready token (file, then value), login + API
 * key both from the environment, JWT (authn-jwt), login + API key from netrc.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { CliError } from '../io.js';
import { EXIT } from './exit-codes.js';
import { readPrivateFile, type Warn } from './files.js';
import { findEntry } from './netrc.js';

export interface ClientConfig {
  applianceUrl: string; // no trailing slash
  account: string;
  login?: string; // e.g. 'admin' or 'host/ci/executor-1'
  caCert?: Buffer; // PEM from CONJUR_CERT_FILE / CONJUR_SSL_CERTIFICATE / init --ca-cert
}

/** How the session obtains its access token. */
export type CredentialSource =
  | { kind: 'token'; tokenJson: string; origin: string }
  | { kind: 'token-file'; path: string }
  | { kind: 'api-key'; login: string; apiKey: string; origin: string }
  | { kind: 'jwt'; serviceId: string; jwtPath: string; hostId?: string };

/** Settings as written in ~/.conjurrc (Go CLI v8 and Python CLI keys). */
export interface Conjurrc {
  appliance_url?: string;
  account?: string;
  cert_file?: string;
  netrc_path?: string;
  authn_type?: string;
  service_id?: string;
  jwt_file?: string;
  jwt_host_id?: string;
}

/** The default path of a Kubernetes service-account token, as conjur-api-go assumes for authn-jwt. */
const DEFAULT_JWT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export function homeOf(env: NodeJS.ProcessEnv, home?: string): string {
  return home ?? env.HOME ?? homedir();
}

export function conjurrcPath(env: NodeJS.ProcessEnv, home: string): string {
  return env.CONJURRC ? resolve(env.CONJURRC) : join(home, '.conjurrc');
}

export function netrcPathOf(rc: Conjurrc, home: string): string {
  if (!rc.netrc_path) return join(home, '.netrc');
  return isAbsolute(rc.netrc_path) ? rc.netrc_path : join(home, rc.netrc_path.replace(/^~\//, ''));
}

export function readConjurrc(path: string): Conjurrc {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.USAGE);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new CliError(`${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`, EXIT.USAGE);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new CliError(`${path} must be a YAML mapping`, EXIT.USAGE);
  const rc: Conjurrc = {};
  for (const key of ['appliance_url', 'account', 'cert_file', 'netrc_path', 'authn_type', 'service_id', 'jwt_file', 'jwt_host_id'] as const) {
    const v = (doc as Record<string, unknown>)[key];
    if (v !== undefined && v !== null && v !== '') rc[key] = String(v);
  }
  // The Python CLI 7.0–7.1 wrote conjur_url / conjur_account; cyberark's own loaders still accept them.
  const legacy = doc as Record<string, unknown>;
  if (rc.appliance_url === undefined && typeof legacy['conjur_url'] === 'string' && legacy['conjur_url'] !== '') rc.appliance_url = legacy['conjur_url'];
  if (rc.account === undefined && typeof legacy['conjur_account'] === 'string' && legacy['conjur_account'] !== '') rc.account = legacy['conjur_account'];
  return rc;
}

/** `https://x/` → `https://x`; refuses anything but an absolute http(s) URL. */
export function normalizeApplianceUrl(raw: string, origin: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new CliError(`${origin}: '${raw}' is not a URL (expected e.g. https://conjur.example.com)`, EXIT.USAGE);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new CliError(`${origin}: the appliance URL must start with https:// or http://`, EXIT.USAGE);
  if (url.username || url.password) throw new CliError(`${origin}: the appliance URL may not contain credentials`, EXIT.USAGE);
  if (url.search || url.hash) throw new CliError(`${origin}: the appliance URL may not have a query or fragment`, EXIT.USAGE);
  return `${url.origin}${url.pathname}`.replace(/\/+$/, '');
}

/** The netrc machine names that hold credentials for `applianceUrl`, the Go CLI's first. */
export function netrcMachines(applianceUrl: string): [string, string] {
  return [`${applianceUrl}/authn`, applianceUrl];
}

function pick(env: NodeJS.ProcessEnv, ...names: string[]): { value: string; name: string } | undefined {
  for (const name of names) {
    const value = env[name];
    if (value !== undefined && value !== '') return { value, name };
  }
  return undefined;
}

function readCaCert(env: NodeJS.ProcessEnv, rc: Conjurrc, rcPath: string): Buffer | undefined {
  const inline = pick(env, 'CONJUR_SSL_CERTIFICATE');
  const file = pick(env, 'COFFER_CA_CERT', 'CONJUR_CERT_FILE') ?? (rc.cert_file ? { value: rc.cert_file, name: `cert_file in ${rcPath}` } : undefined);
  let pem: Buffer;
  let origin: string;
  if (inline) {
    pem = Buffer.from(inline.value);
    origin = inline.name;
  } else if (file) {
    try {
      pem = readFileSync(file.value);
    } catch (err) {
      throw new CliError(`cannot read the CA certificate ${file.value} (${file.name}): ${(err as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.USAGE);
    }
    origin = `${file.value} (${file.name})`;
  } else return undefined;
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new CliError(`${origin} holds no PEM certificate`, EXIT.USAGE);
  return pem;
}

export interface ResolvedClient {
  config: ClientConfig;
  /** Why no credentials were found, when `credentials` is undefined. */
  credentials?: CredentialSource;
  missingCredentials?: string;
  netrcPath: string;
  conjurrcPath: string;
}

/** Resolves the server, account, CA and credentials (without any network traffic). */
export function resolveClient(env: NodeJS.ProcessEnv, opts: { home?: string; warn: Warn }): ResolvedClient {
  const home = homeOf(env, opts.home);
  const rcPath = conjurrcPath(env, home);
  const rc = readConjurrc(rcPath);

  const urlSrc = pick(env, 'COFFER_URL', 'CONJUR_APPLIANCE_URL') ?? (rc.appliance_url ? { value: rc.appliance_url, name: `appliance_url in ${rcPath}` } : undefined);
  if (!urlSrc) throw new CliError('no server configured: run `coffer init -u URL -a ACCOUNT` or set CONJUR_APPLIANCE_URL', EXIT.USAGE);
  const applianceUrl = normalizeApplianceUrl(urlSrc.value, urlSrc.name);
  const acctSrc = pick(env, 'COFFER_ACCOUNT', 'CONJUR_ACCOUNT') ?? (rc.account ? { value: rc.account, name: `account in ${rcPath}` } : undefined);
  if (!acctSrc) throw new CliError('no account configured: run `coffer init -u URL -a ACCOUNT` or set CONJUR_ACCOUNT', EXIT.USAGE);
  const account = acctSrc.value.trim();
  if (!/^[^\s/:?#%]+$/.test(account)) throw new CliError(`${acctSrc.name}: invalid account name '${account}'`, EXIT.USAGE);
  const caCert = readCaCert(env, rc, rcPath);
  const netrcPath = netrcPathOf(rc, home);
  const base = { netrcPath, conjurrcPath: rcPath };

  const envLogin = pick(env, 'COFFER_LOGIN', 'CONJUR_AUTHN_LOGIN')?.value;
  const config: ClientConfig = { applianceUrl, account, ...(caCert ? { caCert } : {}) };

  const tokenFile = pick(env, 'COFFER_TOKEN_FILE', 'CONJUR_AUTHN_TOKEN_FILE');
  if (tokenFile) return { ...base, config: { ...config, ...(envLogin ? { login: envLogin } : {}) }, credentials: { kind: 'token-file', path: tokenFile.value } };
  const token = pick(env, 'COFFER_TOKEN', 'CONJUR_AUTHN_TOKEN');
  if (token) {
    return { ...base, config: { ...config, ...(envLogin ? { login: envLogin } : {}) }, credentials: { kind: 'token', tokenJson: token.value, origin: token.name } };
  }
  const envKey = pick(env, 'COFFER_API_KEY', 'CONJUR_AUTHN_API_KEY');
  if (envLogin && envKey) {
    return { ...base, config: { ...config, login: envLogin }, credentials: { kind: 'api-key', login: envLogin, apiKey: envKey.value.trim(), origin: envKey.name } };
  }
  const serviceId = pick(env, 'COFFER_JWT_SERVICE_ID', 'CONJUR_AUTHN_JWT_SERVICE_ID')?.value ?? (rc.authn_type === 'jwt' ? rc.service_id : undefined);
  if (serviceId) {
    const jwtPath = pick(env, 'COFFER_JWT_FILE', 'JWT_TOKEN_PATH')?.value ?? rc.jwt_file ?? DEFAULT_JWT_PATH;
    const hostId = pick(env, 'COFFER_JWT_HOST_ID', 'CONJUR_AUTHN_JWT_HOST_ID')?.value ?? rc.jwt_host_id;
    const login = hostId ? (hostId.startsWith('host/') ? hostId : `host/${hostId}`) : envLogin;
    return { ...base, config: { ...config, ...(login ? { login } : {}) }, credentials: { kind: 'jwt', serviceId, jwtPath, ...(hostId ? { hostId } : {}) } };
  }

  const netrcText = readPrivateFile(netrcPath, opts.warn);
  const entry = netrcText === undefined ? undefined : netrcMachines(applianceUrl).map((m) => findEntry(netrcText, m)).find((e) => e?.login && e.password);
  const login = envLogin ?? entry?.login;
  const withLogin = { ...config, ...(login ? { login } : {}) };
  if (envKey && login) return { ...base, config: withLogin, credentials: { kind: 'api-key', login, apiKey: envKey.value.trim(), origin: envKey.name } };
  if (envKey) return { ...base, config: withLogin, missingCredentials: `${envKey.name} is set but no login is: set CONJUR_AUTHN_LOGIN` };
  if (entry?.login && login === entry.login) {
    return { ...base, config: withLogin, credentials: { kind: 'api-key', login: entry.login, apiKey: entry.password!, origin: `${netrcPath} (machine ${entry.machine})` } };
  }
  if (entry) {
    return { ...base, config: withLogin, missingCredentials: `no API key for '${login}' (${netrcPath} holds one for '${entry.login}'): run \`coffer login -i ${login}\`` };
  }
  return { ...base, config: withLogin, missingCredentials: `not logged in to ${applianceUrl}: run \`coffer login -i LOGIN\` or set CONJUR_AUTHN_LOGIN and CONJUR_AUTHN_API_KEY` };
}
