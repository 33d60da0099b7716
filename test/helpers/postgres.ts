/**
 * Throwaway PostgreSQL clusters for tests.
 *
 * `startCluster()` runs `initdb` (PostgreSQL 15's server binaries from
 * Debian's `postgresql` package, /usr/lib/postgresql/15/bin, or
 * $COFFER_PG_BIN) in a temporary directory made with tempDir() from
 * test/helpers/tmp.ts, and starts it with `pg_ctl` on a free loopback TCP
 * port (and a unix socket directory of its own), trust authentication,
 * fsync and synchronous_commit on. PostgreSQL refuses to run as root, so
 * when the tests run as root every server binary runs as the `postgres` OS
 * user (`runuser -u postgres --`), which owns the temporary directory.
 * `stop()` stops the server and removes the directory; clusters still
 * running are stopped after the test file (an afterAll hook this module
 * registers) and, failing that, killed when the process exits.
 *
 * Failover (issue 10, item 4): `startStandby(primary)` makes a streaming
 * standby with `pg_basebackup -R` and, by default, makes it the primary's
 * synchronous standby (synchronous_standby_names on the primary, reloaded,
 * then waits until pg_stat_replication says `sync`): from then on a commit
 * on the primary is acknowledged only once the standby has it on disk.
 * `killCluster()` SIGKILLs a postmaster and its children (a machine that
 * dies); `promote()` runs `pg_ctl promote` on a standby.
 *
 * Without the binaries, `describePostgres()` skips its suite with a loud
 * notice, unless CI=true or COFFER_TEST_POSTGRES=required: then the suite
 * fails with the reason.
 */
import { execFile, execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, it } from 'vitest';
import { tempDir } from './tmp.js';
import type { PgSql } from '../../src/store/postgres/client.js';

export { PG_BIN, pgUser, postgresMissing, postgresRequired } from './postgres-binaries.js';
import { PG_BIN, isRoot, pgUser, postgresMissing, postgresRequired } from './postgres-binaries.js';

/**
 * `describe` for a suite that needs PostgreSQL: runs it when the binaries are
 * there; otherwise skips it with a loud notice, or — when required — replaces
 * it by one failing test that says why.
 */
export function describePostgres(name: string, fn: () => void): void {
  const missing = postgresMissing();
  if (missing === undefined) {
    describe(name, fn);
  } else if (postgresRequired()) {
    describe(name, () => {
      it('needs PostgreSQL', () => {
        throw new Error(`PostgreSQL is required here (CI=true or COFFER_TEST_POSTGRES=required) but ${missing}`);
      });
    });
  } else {
    console.warn(`\n*** SKIPPED: "${name}" needs PostgreSQL: ${missing}. ***\n`);
    describe.skip(`${name} [skipped: ${missing}]`, fn);
  }
}


/** The environment of the PostgreSQL binaries: no PG* variables of the caller's, a locale that exists. */
function pgEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && !k.startsWith('LC_')) env[k] = v;
  env.LANG = 'C';
  env.LC_ALL = 'C';
  return env;
}

/** C.UTF-8 when the system has it (codepoint order, UTF-8 character classes), else C. */
let clusterLocale: string | undefined;
function localeForClusters(): string {
  if (clusterLocale === undefined) {
    let list = '';
    try {
      list = execFileSync('locale', ['-a'], { encoding: 'utf8' });
    } catch {
      // no `locale` command: C is always there
    }
    clusterLocale = /^c\.utf-?8$/im.test(list) ? 'C.UTF-8' : 'C';
  }
  return clusterLocale;
}

/** Runs a PostgreSQL binary (as `postgres` when root); rejects with its stderr. */
function runPg(bin: string, args: string[], cwd: string, timeoutMs = 120_000): Promise<string> {
  const path = join(PG_BIN, bin);
  const [cmd, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, argv, { cwd, env: pgEnv(), timeout: timeoutMs, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${bin} ${args.join(' ')} failed: ${err.message}\n${stderr}`.trim()));
      else resolvePromise(stdout);
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolvePromise(port));
    });
  });
}

/**
 * The postgres user must be able to reach its directory: directories of the
 * run's own TMPDIR (0700, made by test/helpers/global-tmp.ts) get o+x
 * (traverse, not list). Anything above the OS temp directory is left alone.
 */
function makeTraversable(dir: string): void {
  const top = resolve(tmpdir());
  const outside: string[] = [];
  for (let p = dirname(resolve(dir)); ; p = dirname(p)) {
    const mode = statSync(p).mode;
    if ((mode & 0o001) === 0) {
      if (p === top || p.startsWith(top + sep)) chmodSync(p, (mode & 0o7777) | 0o001);
      else outside.push(p);
    }
    if (p === dirname(p)) break;
  }
  if (outside.length > 0) {
    throw new Error(`the postgres OS user cannot reach ${dir}: ${outside.join(', ')} lack o+x; point TMPDIR elsewhere`);
  }
}

/** A directory for one cluster, owned by the user the server runs as. */
function clusterDir(prefix: string): string {
  const base = tempDir(prefix);
  if (isRoot) {
    const ids = pgUser();
    if (!ids) throw new Error('no `postgres` OS user to run PostgreSQL as');
    makeTraversable(base);
    chownSync(base, ids.uid, ids.gid);
  }
  const sock = join(base, 'sock');
  mkdirSync(sock, { mode: 0o700 });
  if (isRoot) chownSync(sock, pgUser()!.uid, pgUser()!.gid);
  return base;
}

export interface PgCluster {
  readonly role: 'primary' | 'standby';
  readonly host: '127.0.0.1';
  readonly port: number;
  /** The base directory: data/ (PGDATA), sock/ (unix socket), server.log. */
  readonly dir: string;
  readonly dataDir: string;
  readonly socketDir: string;
  /** postgres://postgres@127.0.0.1:PORT/DATABASE of the database made at start (`coffer` unless told). */
  readonly url: string;
  /** The application_name it streams under (standbys), as named in the primary's synchronous_standby_names. */
  readonly standbyName?: string;
  urlFor(database: string): string;
  /** CREATE DATABASE `name` (lower-case letters, digits, _); answers its URL. */
  createDatabase(name: string, opts?: { icuLocale?: string }): Promise<string>;
  /** Runs SQL with psql (-At, stops at the first error); answers its output, trimmed. */
  psql(sqlText: string, database?: string): Promise<string>;
  /** The postmaster's pid while it runs. */
  pid(): number | undefined;
  /** SIGKILL to the postmaster and all its children (a machine that dies); resolves when they are gone. */
  kill(): Promise<void>;
  /** Stops the server (immediate shutdown) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

interface ClusterState {
  dir: string;
  dataDir: string;
  stopped: boolean;
}

const running = new Set<ClusterState>();

function readPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 && processAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `pid` runs (a zombie does not count). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie answers signal 0 too.
    return !/^\S+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may hold spaces and parentheses: read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function killTree(dataDir: string): number[] {
  const pid = readPid(dataDir);
  if (pid === undefined) return [];
  const children = childrenOf(pid);
  for (const p of [pid, ...children]) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return [pid, ...children];
}

/** The SysV shared-memory segment a killed postmaster leaves behind (line 7 of postmaster.pid: key and shmid). */
function removeLeftoverShm(dataDir: string): void {
  try {
    const line = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[6] ?? '';
    const shmid = line.trim().split(/\s+/)[1];
    if (shmid && /^\d+$/.test(shmid)) execFileSync('ipcrm', ['-m', shmid], { stdio: 'ignore' });
  } catch {
    // no file, no segment, or already removed
  }
}

function removeSync(state: ClusterState): void {
  killTree(state.dataDir);
  removeLeftoverShm(state.dataDir);
  rmSync(state.dir, { recursive: true, force: true, maxRetries: 5 });
  state.stopped = true;
  running.delete(state);
}

// Last resort when a test file forgot stop() and the hook below did not run.
process.on('exit', () => {
  for (const state of [...running]) removeSync(state);
});

afterAll(async () => {
  for (const state of [...running]) {
    await stopState(state).catch(() => removeSync(state));
  }
});

async function stopState(state: ClusterState): Promise<void> {
  if (state.stopped) return;
  if (readPid(state.dataDir) !== undefined) {
    try {
      await runPg('pg_ctl', ['-D', state.dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop'], state.dir);
    } catch {
      killTree(state.dataDir);
    }
  }
  removeSync(state);
}

function settingsText(port: number, socketDir: string): string {
  return [
    '',
    '# coffer test cluster (test/helpers/postgres.ts)',
    "listen_addresses = '127.0.0.1'",
    `port = ${port}`,
    `unix_socket_directories = '${socketDir}'`,
    'fsync = on',
    'synchronous_commit = on',
    'full_page_writes = on',
    'wal_level = replica',
    'max_wal_senders = 8',
    'max_replication_slots = 8',
    'hot_standby = on',
    "shared_buffers = '32MB'",
    'max_connections = 100',
    "log_min_messages = 'warning'",
    '',
  ].join('\n');
}

async function startServer(state: ClusterState): Promise<void> {
  await runPg('pg_ctl', ['-D', state.dataDir, '-l', join(state.dir, 'server.log'), '-w', '-t', '120', '-s', 'start'], state.dir);
}

function serverLogTail(dir: string): string {
  try {
    return readFileSync(join(dir, 'server.log'), 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
}

function makeCluster(state: ClusterState, role: PgCluster['role'], port: number, database: string, standbyName?: string): PgCluster {
  const urlFor = (db: string) => `postgres://postgres@127.0.0.1:${port}/${db}`;
  const psql = (sqlText: string, db = database) =>
    runPg('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', db, '-c', sqlText], state.dir, 60_000).then(
      (out) => out.trim(),
    );
  return {
    role,
    host: '127.0.0.1',
    port,
    dir: state.dir,
    dataDir: state.dataDir,
    socketDir: join(state.dir, 'sock'),
    url: urlFor(database),
    standbyName,
    urlFor,
    async createDatabase(name, opts = {}) {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`not a plain database name: ${name}`);
      const icu = opts.icuLocale ? ` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '${opts.icuLocale.replace(/'/g, "''")}'` : '';
      await psql(`CREATE DATABASE ${name}${icu}`, 'postgres');
      return urlFor(name);
    },
    psql,
    pid: () => readPid(state.dataDir),
    async kill() {
      const pids = killTree(state.dataDir);
      for (let i = 0; i < 200 && pids.some(processAlive); i++) await sleep(25);
    },
    stop: () => stopState(state),
  };
}

export interface StartOptions {
  /** The database made at start, which `url` names (default `coffer`). */
  database?: string;
}

/** initdb + pg_ctl start on a free port; creates the database `url` names. */
export async function startCluster(opts: StartOptions = {}): Promise<PgCluster> {
  const missing = postgresMissing();
  if (missing) throw new Error(`Cannot start PostgreSQL: ${missing}`);
  const dir = clusterDir('coffer-pg-');
  const state: ClusterState = { dir, dataDir: join(dir, 'data'), stopped: false };
  running.add(state);
  try {
    await runPg(
      'initdb',
      ['-D', state.dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', `--locale=${localeForClusters()}`, '--no-sync', '--no-instructions'],
      dir,
    );
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      // Later lines win: a retry appends a new port.
      appendFileSync(join(state.dataDir, 'postgresql.conf'), settingsText(port, join(dir, 'sock')));
      try {
        await startServer(state);
        break;
      } catch (err) {
        // Another process may have taken the port between freePort() and the bind.
        if (attempt >= 3 || !/could not bind|Address already in use/i.test(serverLogTail(dir))) {
          throw new Error(`${(err as Error).message}\n--- server.log ---\n${serverLogTail(dir)}`);
        }
      }
    }
    const database = opts.database ?? 'coffer';
    const cluster = makeCluster(state, 'primary', port, database);
    await cluster.psql(`CREATE DATABASE ${database}`, 'postgres');
    return cluster;
  } catch (err) {
    await stopState(state).catch(() => undefined);
    throw err;
  }
}

export interface StandbyOptions {
  /** Make it the primary's synchronous standby (default true). */
  synchronous?: boolean;
}

/**
 * A streaming standby of `primary` (pg_basebackup -R, a replication slot of
 * its own) on a free port, serving reads (hot standby). Synchronous by
 * default: the primary's synchronous_standby_names names it, and this
 * resolves once pg_stat_replication reports it as `sync`.
 */
export async function startStandby(primary: PgCluster, opts: StandbyOptions = {}): Promise<PgCluster> {
  const dir = clusterDir('coffer-pg-standby-');
  const state: ClusterState = { dir, dataDir: join(dir, 'data'), stopped: false };
  running.add(state);
  try {
    const port = await freePort();
    const name = `coffer_standby_${port}`;
    await runPg(
      'pg_basebackup',
      ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', state.dataDir, '-R', '-X', 'stream', '-c', 'fast', '-C', '-S', name, '--no-sync'],
      dir,
    );
    appendFileSync(join(state.dataDir, 'postgresql.conf'), settingsText(port, join(dir, 'sock')));
    // postgresql.auto.conf (read last) holds what -R wrote and what the primary had set with ALTER SYSTEM.
    // application_name names this standby in the primary's synchronous_standby_names; a promoted
    // standby must not wait for a synchronous standby of its own.
    appendFileSync(
      join(state.dataDir, 'postgresql.auto.conf'),
      `\nprimary_conninfo = 'host=127.0.0.1 port=${primary.port} user=postgres application_name=${name}'\n` +
        `primary_slot_name = '${name}'\nsynchronous_standby_names = ''\n`,
    );
    await startServer(state).catch((err: Error) => {
      throw new Error(`${err.message}\n--- server.log ---\n${serverLogTail(dir)}`);
    });
    const standby = makeCluster(state, 'standby', port, new URL(primary.url).pathname.slice(1), name);
    if (opts.synchronous ?? true) {
      await primary.psql(`ALTER SYSTEM SET synchronous_standby_names = '"${name}"'`, 'postgres');
      await primary.psql('SELECT pg_reload_conf()', 'postgres');
      const deadline = Date.now() + 60_000;
      for (;;) {
        const s = await primary.psql(`SELECT sync_state FROM pg_stat_replication WHERE application_name = '${name}'`, 'postgres');
        if (s === 'sync') break;
        if (Date.now() > deadline) throw new Error(`standby ${name} did not become synchronous (pg_stat_replication sync_state: '${s}')`);
        await sleep(100);
      }
    }
    return standby;
  } catch (err) {
    await stopState(state).catch(() => undefined);
    throw err;
  }
}

/** Promotes a standby (pg_ctl promote -w): it leaves recovery and takes writes. */
export async function promote(standby: PgCluster): Promise<void> {
  await runPg('pg_ctl', ['-D', standby.dataDir, '-w', '-t', '60', 'promote'], standby.dir);
}

/** SIGKILLs the cluster's postmaster and its children (the primary's machine dies). */
export function killCluster(cluster: PgCluster): Promise<void> {
  return cluster.kill();
}

/**
 * One URL naming several clusters, tried in order, e.g.
 * postgres://postgres@127.0.0.1:5433,127.0.0.1:5434/coffer?target_session_attrs=read-write
 */
export function multiHostUrl(clusters: PgCluster[], database: string, targetSessionAttrs = 'read-write'): string {
  const hosts = clusters.map((c) => `${c.host}:${c.port}`).join(',');
  return `postgres://postgres@${hosts}/${database}?target_session_attrs=${targetSessionAttrs}`;
}

/** A transaction on `sql` holding the advisory lock `key` (another node's fill, or a writer) until released. */
export async function holdAdvisoryLock(sql: PgSql, key: string): Promise<{ release: () => Promise<void> }> {
  let release!: () => void;
  let locked!: () => void;
  const holding = new Promise<void>((resolve) => (locked = resolve));
  const done = sql.begin(async (t) => {
    await t`SELECT pg_advisory_xact_lock(${key}::int8)`;
    locked();
    await new Promise<void>((resolve) => (release = resolve));
  });
  await holding;
  return {
    release: async () => {
      release();
      await done;
    },
  };
}
