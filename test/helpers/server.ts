/**
 * Starts the real Coffer server on an ephemeral loopback port with a
 * temporary data directory, creates an account, and returns an HTTP client.
 */
import { rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { loadServerConfig } from '../../src/config.js';
import { createAccountIn, startServer, type RunningServer } from '../../src/server.js';
import { tempDir } from './tmp.js';
import { startCluster, type PgCluster } from './postgres.js';

export class TestClock {
  ms = Date.now();
  nowMs(): number {
    return this.ms;
  }
  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }
}

export interface TestServer {
  url: string;
  account: string;
  adminKey: string;
  dataDir: string;
  /** The PostgreSQL URL the server runs on (COFFER_TEST_BACKEND=postgres); undefined: SQLite in dataDir. */
  database?: string;
  dataKey: string;
  clock: TestClock;
  server: RunningServer;
  logs: string[];
  close(): Promise<void>;
}

export interface StartOptions {
  account?: string;
  env?: Record<string, string>;
  flags?: Record<string, string | boolean>;
  /** Keep the data directory after close() (it is still removed after the test file). */
  keepDataDir?: boolean;
  dataDir?: string;
  dataKey?: string;
}

/**
 * COFFER_TEST_BACKEND=postgres runs every test server on PostgreSQL: one
 * throwaway cluster per test file, one database per data directory (a
 * server restarted on the same data directory finds its database again).
 */
const onPostgres = process.env.COFFER_TEST_BACKEND === 'postgres';
let cluster: Promise<PgCluster> | undefined;
const databases = new Map<string, string>();

async function databaseFor(dataDir: string): Promise<string | undefined> {
  if (!onPostgres) return undefined;
  let url = databases.get(dataDir);
  if (!url) {
    cluster ??= startCluster();
    url = await (await cluster).createDatabase(`coffer_${databases.size + 1}`);
    databases.set(dataDir, url);
  }
  return url;
}

export async function startTestServer(opts: StartOptions = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? tempDir('coffer-test-');
  const dataKey = opts.dataKey ?? randomBytes(32).toString('base64');
  const database = await databaseFor(dataDir);
  const config = loadServerConfig(
    { 'data-dir': dataDir, host: '127.0.0.1', port: '0', ...(database ? { database } : {}), ...opts.flags },
    { COFFER_DATA_KEY: dataKey, ...opts.env },
  );
  const clock = new TestClock();
  const logs: string[] = [];
  const server = await startServer(config, { clock, log: (l) => logs.push(l) });
  const account = opts.account ?? 'cucumber';
  let adminKey = '';
  if (!(await server.vault.services.store.accounts.exists(account))) {
    adminKey = (await createAccountIn(server.vault, account)).api_key;
  }
  return {
    url: server.url,
    account,
    adminKey,
    dataDir,
    database,
    dataKey,
    clock,
    server,
    logs,
    async close() {
      await server.close();
      if (!opts.keepDataDir && !opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
