/**
 * Opening a data directory (store + barrier + services) and running the
 * HTTP server on it. Used by `coffer server`, the admin commands and the
 * end-to-end tests, which start the real server on an ephemeral port.
 */
import { serve, type ServerType } from '@hono/node-server';
import { createServer as createHttpsServer } from 'node:https';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { createAccount, type CreatedAccount } from './accounts.js';
import type { AuditSink } from './audit/log.js';
import { openAuditSinks } from './audit/sinks.js';
import type { ServerConfig } from './config.js';
import { systemClock, type Clock } from './context.js';
import { createApp, refuseOversizedTarget } from './http/app.js';
import { Barrier, decodeMasterKey, generateMasterKey, initSodium } from './secrets/barrier.js';
import { createServices, DEFAULT_SERVICE_CONFIG, type ServiceConfig, type Services } from './services.js';
import { openStore, type Store } from './store/index.js';
import { CofferError, storageFailureOf } from './errors.js';
import { DatabaseUnavailableError, openPostgresStore } from './store/postgres/index.js';

export const VERSION = '0.1.0';
export const DB_FILE = 'coffer.db';
export const DEV_KEY_FILE = 'dev-data-key';
export const LOCK_FILE = 'server.pid';

export interface Vault {
  services: Services;
  close(): Promise<void>;
}

/** Reads the master key from the environment value or a file. */
export function readMasterKey(dataKey: string | undefined, dataKeyFile: string | undefined): Buffer {
  if (dataKey) return decodeMasterKey(dataKey, 'COFFER_DATA_KEY');
  if (dataKeyFile) return decodeMasterKey(readFileSync(dataKeyFile, 'utf8'), `data key file ${dataKeyFile}`);
  throw new Error('a data key is required: set COFFER_DATA_KEY or pass --data-key-file');
}

/** Dev mode keeps a generated key beside the database (development only). */
export function devMasterKey(dataDir: string): { key: Buffer; created: boolean } {
  const file = join(dataDir, DEV_KEY_FILE);
  if (existsSync(file)) return { key: decodeMasterKey(readFileSync(file, 'utf8'), file), created: false };
  const key = generateMasterKey();
  writeNewFile(file, `${key}\n`);
  return { key: decodeMasterKey(key, file), created: true };
}

/**
 * Writes a small file (mode 0600) that must be whole or absent: if the write
 * fails (ENOSPC on a full disk leaves an empty file behind), what was created
 * is removed and the error names the file.
 */
function writeNewFile(file: string, text: string): void {
  try {
    writeFileSync(file, text, { mode: 0o600 });
    chmodSync(file, 0o600);
  } catch (err) {
    rmSync(file, { force: true });
    throw Object.assign(new Error(`cannot write ${file}: ${(err as Error).message}`, { cause: err }), { code: (err as NodeJS.ErrnoException).code });
  }
}

export interface OpenVaultOptions {
  dataDir: string;
  masterKey: Buffer;
  clock?: Clock;
  config?: Partial<ServiceConfig>;
  auditSinks?: AuditSink[];
  busyTimeoutMs?: number;
  /** PostgreSQL URL; undefined opens the SQLite database in dataDir. */
  database?: string;
  /**
   * Gives the opening up (openWithRetries' deadline): the store's connections are closed, which ends their server
   * sessions and whatever locks they held, and the opening fails instead of finishing later.
   */
  signal?: AbortSignal;
}

export async function openVault(opts: OpenVaultOptions): Promise<Vault> {
  await initSodium();
  if (!opts.database) mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const store: Store = opts.database
    ? await openPostgresStore(opts.database, { signal: opts.signal })
    : openStore(join(opts.dataDir, DB_FILE), { busyTimeoutMs: opts.busyTimeoutMs });
  const giveUp = () => void store.close().catch(() => undefined);
  opts.signal?.addEventListener('abort', giveUp, { once: true });
  try {
    const barrier = await Barrier.open(opts.masterKey, store);
    const services = await createServices({
      store,
      barrier,
      clock: opts.clock ?? systemClock,
      config: { ...DEFAULT_SERVICE_CONFIG, ...opts.config },
      auditSinks: opts.auditSinks,
      onSinkError: (err) => process.stderr.write(`coffer: audit sink failed: ${(err as Error).message}\n`),
    });
    if (opts.signal?.aborted) throw new DatabaseUnavailableError('opening the database was given up');
    return {
      services,
      async close() {
        await services.dynamic.stop();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', giveUp);
  }
}

export function createAccountIn(vault: Vault, name: string): Promise<CreatedAccount> {
  const s = vault.services;
  return createAccount({ store: s.store, tokens: s.tokens, credentials: s.credentials, audit: s.audit, authorizer: s.authorizer }, name);
}

export interface RunningServer {
  url: string;
  port: number;
  vault: Vault;
  /** Set on first start in dev mode: the admin credentials, printed once. */
  devAdmin?: CreatedAccount;
  close(): Promise<void>;
}

export async function startServer(config: ServerConfig, opts: { clock?: Clock; log?: (line: string) => void } = {}): Promise<RunningServer> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // Written before anything is opened, so a failure (a full disk) leaves nothing running and no empty lock file.
  const lockFile = join(dataDir, LOCK_FILE);
  writeNewFile(lockFile, `${process.pid}\n`);
  try {
    return await listen(config, dataDir, lockFile, log, opts.clock);
  } catch (err) {
    rmSync(lockFile, { force: true });
    throw err;
  }
}

async function listen(config: ServerConfig, dataDir: string, lockFile: string, log: (line: string) => void, clock: Clock | undefined): Promise<RunningServer> {
  let masterKey: Buffer;
  if (config.dataKey || config.dataKeyFile) masterKey = readMasterKey(config.dataKey, config.dataKeyFile);
  else masterKey = devMasterKey(dataDir).key;
  const sinks = openAuditSinks(config.auditLog, config.auditFormat, log);
  const open = (signal?: AbortSignal) =>
    openVault({ dataDir, masterKey, clock, config, auditSinks: sinks, busyTimeoutMs: config.busyTimeoutMs, database: config.database, signal });
  const vault = config.database ? await openWithRetries(open, log) : await open();
  try {
    return await serveVault(config, vault, lockFile, log);
  } catch (err) {
    await vault.close();
    throw err;
  }
}

/** Backoff between attempts to reach PostgreSQL at start: 1 s, doubling, at most 30 s. */
export const DATABASE_RETRY_MS = { first: 1000, max: 30_000 };

/**
 * How long one attempt to open the database may take in all. Each store call
 * at start has its own deadline; this one catches an attempt stuck where no
 * deadline reaches (seen twice in CI: a node whose only connection sat idle
 * after connecting, and never printed "listening").
 */
export const DATABASE_OPEN_DEADLINE_MS = 60_000;

/**
 * A node may start before its database (or during a failover): an unreachable
 * database is retried with backoff, one log line per attempt. Anything else —
 * a wrong password, a missing database, a newer schema, the wrong data key —
 * is not going to fix itself and fails the start at once. An attempt that
 * outlives DATABASE_OPEN_DEADLINE_MS is given up — its signal aborted, which
 * closes its connections — and retried the same way; if it settles later
 * anyway, what it opened is closed.
 */
export async function openWithRetries(
  open: (signal: AbortSignal) => Promise<Vault>,
  log: (line: string) => void,
  timing: { retry: { first: number; max: number }; deadlineMs: number } = { retry: DATABASE_RETRY_MS, deadlineMs: DATABASE_OPEN_DEADLINE_MS },
): Promise<Vault> {
  for (let wait = timing.retry.first; ; wait = Math.min(wait * 2, timing.retry.max)) {
    try {
      return await withinDeadline(open, timing.deadlineMs);
    } catch (err) {
      const failure = err instanceof OpenTimedOut ? err : storageFailureOf(err);
      if (!failure) throw err;
      log(`coffer: the database is unreachable (${failure.message}); retrying in ${Math.round(wait / 1000)} s`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

class OpenTimedOut extends Error {}

function withinDeadline(open: (signal: AbortSignal) => Promise<Vault>, ms: number): Promise<Vault> {
  const giveUp = new AbortController();
  const attempt = open(giveUp.signal);
  return new Promise((resolveOpen, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      giveUp.abort();
      reject(new OpenTimedOut(`opening it did not finish within ${Math.round(ms / 1000)} s`));
    }, ms);
    attempt.then(
      (vault) => {
        clearTimeout(timer);
        if (late) void vault.close().catch(() => undefined);
        else resolveOpen(vault);
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (!late) reject(err);
      },
    );
  });
}

async function serveVault(config: ServerConfig, vault: Vault, lockFile: string, log: (line: string) => void): Promise<RunningServer> {
  let devAdmin: CreatedAccount | undefined;
  if (config.dev && !(await vault.services.store.accounts.exists(config.devAccount))) {
    // Another node starting at the same moment on the same database may create it first; then that node prints the credentials.
    devAdmin = await createAccountIn(vault, config.devAccount).catch((err: unknown) => {
      if (err instanceof CofferError && err.code === 'conflict') return undefined;
      throw err;
    });
  }
  const app = createApp(vault.services, {
    bodyLimit: config.bodyLimit,
    policyBodyLimit: config.policyBodyLimit,
    trustedProxies: config.trustedProxies,
    version: VERSION,
    healthMinFreeBytes: config.healthMinFreeBytes,
    consoleIdleMinutes: config.consoleIdleMinutes,
    logError: (err, requestId) => log(`coffer: error in request ${requestId ?? '-'}: ${describeError(err)}`),
  });
  const tls = config.tlsCert && config.tlsKey ? { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey) } : undefined;
  const server: ServerType = await new Promise((resolveListen, reject) => {
    const s = serve(
      {
        fetch: (req, env) => refuseOversizedTarget(req.url) ?? app.fetch(req, env),
        port: config.port,
        hostname: config.host,
        serverOptions: { ...tls, ...slowClientOptions(config) },
        ...(tls ? { createServer: createHttpsServer } : {}),
      },
      () => resolveListen(s),
    );
    s.once('error', reject);
  });
  boundConnections(server, config);
  // Ends expired dynamic-secret leases, those left by a previous run included.
  vault.services.dynamic.start();
  const port = (server.address() as AddressInfo).port;
  const scheme = tls ? 'https' : 'http';
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  return {
    url: `${scheme}://${hostForUrl}:${port}`,
    port,
    vault,
    devAdmin,
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      await vault.services.dynamic.stop();
      await vault.services.audit.close();
      await vault.close();
      rmSync(lockFile, { force: true });
    },
  };
}

/**
 * Node's own bounds on slow clients. The header and whole-request timeouts
 * are enforced by a sweep every `connectionsCheckingInterval`, so the sweep
 * runs at least twice per header timeout (Node's 30 s default would let a
 * 10 s limit stretch to 40 s).
 */
function slowClientOptions(config: ServerConfig) {
  return {
    headersTimeout: config.headersTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(config.headersTimeoutMs / 2))),
  };
}

/**
 * The connection cap, and the body idle timeout Node lacks: while a request
 * body is still arriving, a socket silent for `bodyIdleTimeoutMs` is cut.
 * The timer is armed only until the body has been read (or the response is
 * sent), so a request the server takes long to answer is never cut by it.
 */
function boundConnections(server: ServerType, config: ServerConfig): void {
  const http = server as import('node:http').Server;
  http.maxConnections = config.maxConnections;
  http.keepAliveTimeout = config.keepAliveTimeoutMs;
  http.on('request', (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (!hasBody || req.complete) return;
    const socket = req.socket;
    const onIdle = () => socket.destroy();
    socket.setTimeout(config.bodyIdleTimeoutMs, onIdle);
    let armed = true;
    const disarm = () => {
      if (!armed) return;
      armed = false;
      socket.off('timeout', onIdle);
      // Once the response is out the socket is an idle keep-alive one, whose timeout Node has just set: keep it.
      socket.setTimeout(res.writableFinished ? http.keepAliveTimeout : 0);
    };
    req.once('end', disarm);
    req.once('close', disarm);
    res.once('finish', disarm);
  });
}

/** Error text for the server log: type and message, never a request body or secret. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (cause: ${err.cause.message})` : '';
    return `${err.name}: ${err.message}${cause}`;
  }
  return String(err);
}
