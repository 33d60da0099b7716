/**
 * Server configuration: flags override environment variables, which override
 * defaults. Validated once at start-up; every problem is reported together.
 */
import { normalizeCidr } from './cidr.js';
import { DEFAULT_SERVICE_CONFIG, type ServiceConfig } from './services.js';

export interface ServerConfig extends ServiceConfig {
  dev: boolean;
  dataDir: string;
  /** PostgreSQL URL; undefined keeps the embedded SQLite database in dataDir. */
  database?: string;
  host: string;
  port: number;
  /** base64 of 32 bytes, from COFFER_DATA_KEY; or a file holding it. */
  dataKey?: string;
  dataKeyFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  trustedProxies: string[];
  bodyLimit: number;
  policyBodyLimit: number;
  /** Audit sink: a file path, '-' for stdout, or undefined for none. */
  auditLog?: string;
  auditFormat: 'json' | 'rfc5424';
  busyTimeoutMs: number;
  devAccount: string;
  /** Free bytes below which /health reports the database not writable; undefined: twice the larger body limit. */
  healthMinFreeBytes?: number;
  /** Slow-client bounds (ms) and the connection cap of the HTTP server. */
  headersTimeoutMs: number;
  bodyIdleTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnections: number;
  /** Minutes without activity after which the console (/ui/) signs out. */
  consoleIdleMinutes: number;
}

export interface ConfigOption {
  flag?: string;
  env?: string;
  default: string;
  meaning: string;
}

/** The table README documents; keep both in step. */
export const CONFIG_OPTIONS: Record<string, ConfigOption> = {
  dataDir: { flag: '--data-dir', env: 'COFFER_DATA_DIR', default: './.coffer-dev with --dev; required otherwise', meaning: 'Directory holding coffer.db (SQLite) and, in dev mode, the generated data key' },
  database: { flag: '--database', env: 'COFFER_DATABASE_URL', default: 'none (SQLite in --data-dir)', meaning: 'PostgreSQL URL (postgres://user:pass@host1:5432,host2:5432/db?target_session_attrs=read-write): several nodes may share it' },
  dataKey: { env: 'COFFER_DATA_KEY', default: 'none (generated in dev mode)', meaning: 'Master data key: base64 of 32 random bytes (`coffer keygen`)' },
  dataKeyFile: { flag: '--data-key-file', env: 'COFFER_DATA_KEY_FILE', default: 'none', meaning: 'File holding the master data key (base64); used when COFFER_DATA_KEY is unset' },
  host: { flag: '--host', env: 'COFFER_HOST', default: '127.0.0.1', meaning: 'Address to listen on' },
  port: { flag: '--port', env: 'COFFER_PORT', default: '8080', meaning: 'Port to listen on (0 picks a free port)' },
  tlsCert: { flag: '--tls-cert', env: 'COFFER_TLS_CERT', default: 'none (plain HTTP)', meaning: 'PEM certificate chain for HTTPS (with --tls-key)' },
  tlsKey: { flag: '--tls-key', env: 'COFFER_TLS_KEY', default: 'none', meaning: 'PEM private key for HTTPS (with --tls-cert)' },
  tokenTtl: { flag: '--token-ttl', env: 'COFFER_TOKEN_TTL', default: '480', meaning: 'Access-token lifetime in seconds (per-role annotation authn/token-ttl overrides it)' },
  maxTokenTtl: { flag: '--max-token-ttl', env: 'COFFER_MAX_TOKEN_TTL', default: '18000', meaning: 'Upper bound for any token lifetime in seconds (at most 18000 = 5 h)' },
  secretVersions: { env: 'COFFER_SECRETS_VERSION_LIMIT', default: '20', meaning: 'Versions kept per variable' },
  policyVersions: { env: 'COFFER_POLICIES_VERSION_LIMIT', default: '20', meaning: 'Versions kept per policy' },
  trustedProxies: { flag: '--trusted-proxies', env: 'COFFER_TRUSTED_PROXIES', default: 'none', meaning: 'Comma-separated CIDRs of proxies whose X-Forwarded-For is believed' },
  authenticators: { flag: '--authenticators', env: 'COFFER_AUTHENTICATORS', default: 'authn', meaning: 'Comma-separated enabled authenticators, e.g. authn,authn-jwt/jenkins' },
  jwtAllowHttpHosts: { flag: '--jwt-allow-http-hosts', env: 'COFFER_JWT_ALLOW_HTTP_HOSTS', default: 'none (https only)', meaning: 'Comma-separated hosts whose authn-jwt jwks-uri / provider-uri may use plain http (e.g. an internal Jenkins)' },
  jwtAllowPrivateHosts: { flag: '--jwt-allow-private-hosts', env: 'COFFER_JWT_ALLOW_PRIVATE_HOSTS', default: 'none', meaning: 'Comma-separated hosts whose authn-jwt jwks-uri / provider-uri may resolve to loopback, private or link-local addresses (an internal Jenkins or IdP); hosts in --jwt-allow-http-hosts may too' },
  jwtClockSkew: { env: 'COFFER_JWT_CLOCK_SKEW', default: '30', meaning: 'Seconds of clock skew allowed when checking a JWT\'s exp, nbf and iat (0 to 60)' },
  bodyLimit: { env: 'COFFER_BODY_LIMIT', default: '1048576', meaning: 'Largest request body in bytes (413 above)' },
  policyBodyLimit: { env: 'COFFER_POLICY_BODY_LIMIT', default: '10485760', meaning: 'Largest policy body in bytes (413 above)' },
  policyMaxNodes: { env: 'COFFER_POLICY_MAX_NODES', default: '750000', meaning: 'Most YAML nodes in one policy, counted before parsing (422 above); lines are limited to twice this' },
  policyMaxDepth: { env: 'COFFER_POLICY_MAX_DEPTH', default: '64', meaning: 'Deepest nesting of YAML collections in one policy (422 above)' },
  policyMaxAliases: { env: 'COFFER_POLICY_MAX_ALIASES', default: '10000', meaning: 'Most YAML aliases (`*name`) in one policy (422 above)' },
  policyParseMemory: { env: 'COFFER_POLICY_PARSE_MEMORY_MB', default: '512', meaning: 'Heap limit in MB of the worker thread that parses policies (a policy needing more: 413)' },
  leaseSweepInterval: { env: 'COFFER_LEASE_SWEEP_INTERVAL_MS', default: '5000', meaning: 'How often (ms, 100–10000) the sweeper ends expired dynamic-secret leases and retries pending revocations' },
  maxLeasesPerIssuer: { env: 'COFFER_MAX_LEASES_PER_ISSUER', default: '10000', meaning: 'Most dynamic-secret leases (logins on its database) one issuer may have at once; a fetch beyond it is 429' },
  auditLog: { flag: '--audit-log', env: 'COFFER_AUDIT_LOG', default: 'none', meaning: 'Also stream each committed audit event to this file (- for stdout)' },
  auditFormat: { flag: '--audit-format', env: 'COFFER_AUDIT_FORMAT', default: 'json', meaning: 'Audit stream format: json (one JSON object a line) or rfc5424 (Conjur\'s syslog lines)' },
  authnMaxFailures: { env: 'COFFER_AUTHN_MAX_FAILURES', default: '10', meaning: 'Failed authentications per login and IP before 429' },
  authnWindow: { env: 'COFFER_AUTHN_FAILURE_WINDOW', default: '60', meaning: 'Window in seconds for counting failed authentications' },
  busyTimeout: { env: 'COFFER_DB_BUSY_TIMEOUT_MS', default: '5000', meaning: 'How long a write waits for a database lock held by another process' },
  devAccount: { env: 'COFFER_DEV_ACCOUNT', default: 'dev', meaning: 'Account created on first start in --dev mode' },
  healthMinFree: { env: 'COFFER_HEALTH_MIN_FREE_BYTES', default: 'twice the larger body limit (20971520)', meaning: "Free bytes on the data directory's file system below which GET /health answers 503 (database not writable)" },
  headersTimeout: { env: 'COFFER_HEADERS_TIMEOUT_MS', default: '10000', meaning: "Time a client has to send a request's line and headers; a slower one is answered 408 and cut" },
  bodyIdleTimeout: { env: 'COFFER_BODY_IDLE_TIMEOUT_MS', default: '30000', meaning: 'Longest pause between two pieces of a request body; a client that stalls longer is cut' },
  requestTimeout: { env: 'COFFER_REQUEST_TIMEOUT_MS', default: '120000', meaning: 'Time a client has to send a whole request, headers and body (408 and cut after it)' },
  keepAliveTimeout: { env: 'COFFER_KEEP_ALIVE_TIMEOUT_MS', default: '5000', meaning: "How long an idle keep-alive connection stays open (set it above a load balancer's idle timeout)" },
  consoleIdleMinutes: { flag: '--console-idle-minutes', env: 'COFFER_CONSOLE_IDLE_MINUTES', default: '15', meaning: 'Minutes without keyboard or pointer activity after which the console (/ui/) revokes its token and signs out (1 to 1440)' },
  maxConnections: { env: 'COFFER_MAX_CONNECTIONS', default: '1000', meaning: 'Open client connections at most; more are closed as they arrive (keep below ulimit -n)' },
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

type Flags = Record<string, string | boolean | undefined>;

export function loadServerConfig(flags: Flags, env: NodeJS.ProcessEnv): ServerConfig {
  const problems: string[] = [];
  const pick = (key: keyof typeof CONFIG_OPTIONS): string | undefined => {
    const opt = CONFIG_OPTIONS[key]!;
    const flagName = opt.flag?.slice(2);
    const fromFlag = flagName ? flags[flagName] : undefined;
    if (typeof fromFlag === 'string') return fromFlag;
    return opt.env ? env[opt.env] : undefined;
  };
  const int = (key: keyof typeof CONFIG_OPTIONS, fallback: number, min: number, max: number): number => {
    const raw = pick(key);
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      const opt = CONFIG_OPTIONS[key]!;
      problems.push(`${opt.flag ?? opt.env}: '${raw}' must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  };
  const list = (raw: string | undefined) => (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);

  const dev = flags.dev === true;
  const dataDir = pick('dataDir') ?? (dev ? './.coffer-dev' : undefined);
  if (!dataDir) problems.push('--data-dir (or COFFER_DATA_DIR) is required outside --dev mode');
  const database = pick('database');
  if (database !== undefined && !/^postgres(ql)?:\/\//.test(database)) problems.push(`--database: '${database.replace(/:[^:@/]*@/, ':***@')}' is not a postgres:// URL`);
  const dataKey = env.COFFER_DATA_KEY || undefined;
  const dataKeyFile = pick('dataKeyFile');
  if (!dev && !dataKey && !dataKeyFile) {
    problems.push('a data key is required: set COFFER_DATA_KEY (base64 of 32 bytes, see `coffer keygen`) or pass --data-key-file');
  }
  const tlsCert = pick('tlsCert');
  const tlsKey = pick('tlsKey');
  if ((tlsCert === undefined) !== (tlsKey === undefined)) problems.push('--tls-cert and --tls-key go together');
  const trustedProxies: string[] = [];
  for (const cidr of list(pick('trustedProxies'))) {
    try {
      trustedProxies.push(normalizeCidr(cidr));
    } catch (err) {
      problems.push(`--trusted-proxies: ${(err as Error).message}`);
    }
  }
  const authenticators = list(pick('authenticators') ?? 'authn');
  for (const a of authenticators) {
    if (!/^authn(-jwt\/[A-Za-z0-9._-]+)?$/.test(a)) problems.push(`--authenticators: '${a}' is not authn or authn-jwt/<service-id>`);
  }
  const auditFormat = pick('auditFormat') ?? 'json';
  if (auditFormat !== 'json' && auditFormat !== 'rfc5424') problems.push(`--audit-format: '${auditFormat}' must be json or rfc5424`);
  const devAccount = pick('devAccount') ?? 'dev';
  const maxTokenTtlSeconds = int('maxTokenTtl', DEFAULT_SERVICE_CONFIG.maxTokenTtlSeconds, 1, 5 * 3600);
  const config: ServerConfig = {
    dev,
    dataDir: dataDir ?? '',
    database,
    host: pick('host') ?? '127.0.0.1',
    port: int('port', 8080, 0, 65535),
    dataKey,
    dataKeyFile,
    tlsCert,
    tlsKey,
    trustedProxies,
    authenticators,
    jwtAllowHttpHosts: list(pick('jwtAllowHttpHosts')).map((h) => h.toLowerCase()),
    jwtAllowPrivateHosts: list(pick('jwtAllowPrivateHosts')).map((h) => h.toLowerCase().replace(/^\[|\]$/g, '')),
    jwtClockSkewSeconds: int('jwtClockSkew', DEFAULT_SERVICE_CONFIG.jwtClockSkewSeconds, 0, 60),
    bodyLimit: int('bodyLimit', 1024 * 1024, 1024, 1024 * 1024 * 1024),
    policyBodyLimit: int('policyBodyLimit', 10 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    policyLimits: {
      maxNodes: int('policyMaxNodes', DEFAULT_SERVICE_CONFIG.policyLimits.maxNodes, 100, 100_000_000),
      maxDepth: int('policyMaxDepth', DEFAULT_SERVICE_CONFIG.policyLimits.maxDepth, 4, 1000),
      maxAliases: int('policyMaxAliases', DEFAULT_SERVICE_CONFIG.policyLimits.maxAliases, 0, 100_000_000),
    },
    policyParseMemoryMb: int('policyParseMemory', DEFAULT_SERVICE_CONFIG.policyParseMemoryMb, 64, 65_536),
    leaseSweepIntervalMs: int('leaseSweepInterval', DEFAULT_SERVICE_CONFIG.leaseSweepIntervalMs, 100, 10_000),
    maxLeasesPerIssuer: int('maxLeasesPerIssuer', DEFAULT_SERVICE_CONFIG.maxLeasesPerIssuer, 1, 1_000_000),
    auditLog: pick('auditLog'),
    auditFormat: auditFormat === 'rfc5424' ? 'rfc5424' : 'json',
    busyTimeoutMs: int('busyTimeout', 5000, 0, 600_000),
    healthMinFreeBytes: pick('healthMinFree') ? int('healthMinFree', 0, 0, Number.MAX_SAFE_INTEGER) : undefined,
    headersTimeoutMs: int('headersTimeout', 10_000, 100, 600_000),
    bodyIdleTimeoutMs: int('bodyIdleTimeout', 30_000, 100, 600_000),
    requestTimeoutMs: int('requestTimeout', 120_000, 100, 3_600_000),
    keepAliveTimeoutMs: int('keepAliveTimeout', 5_000, 100, 600_000),
    maxConnections: int('maxConnections', 1000, 1, 1_000_000),
    consoleIdleMinutes: int('consoleIdleMinutes', 15, 1, 1440),
    devAccount,
    tokenTtlSeconds: int('tokenTtl', DEFAULT_SERVICE_CONFIG.tokenTtlSeconds, 1, 5 * 3600),
    maxTokenTtlSeconds,
    secretVersionLimit: int('secretVersions', 20, 1, 1000),
    policyVersionLimit: int('policyVersions', 20, 1, 1000),
    authnMaxFailures: int('authnMaxFailures', 10, 1, 1_000_000),
    authnFailureWindowMs: int('authnWindow', 60, 1, 86_400) * 1000,
  };
  if (config.tokenTtlSeconds > config.maxTokenTtlSeconds) {
    problems.push(`--token-ttl (${config.tokenTtlSeconds}) may not exceed --max-token-ttl (${config.maxTokenTtlSeconds})`);
  }
  if (config.headersTimeoutMs > config.requestTimeoutMs) {
    problems.push(`COFFER_HEADERS_TIMEOUT_MS (${config.headersTimeoutMs}) may not exceed COFFER_REQUEST_TIMEOUT_MS (${config.requestTimeoutMs})`);
  }
  if (problems.length) throw new ConfigError(problems);
  return config;
}
