/**
 * docs/high-availability.md, run as written (issue 10, item 5): every fenced
 * block of the page carries a `<!-- docs-test: KIND NAME -->` marker and is
 * exercised here, in the page's order, with the real `coffer` binary, the
 * PostgreSQL 15 client tools and `curl`, against two throwaway clusters — a
 * primary and its synchronous standby (test/helpers/postgres.ts) — and real
 * `coffer server` processes.
 *
 * What the test changes, and nothing else: the names of machines and
 * directories. `db1:5432` and `db2:5432` become the clusters' addresses;
 * `node1:8443`, `node2:8443` the nodes'; on a node, `--port 8443` and
 * `localhost:8443` its own port and `/var/lib/coffer` a directory of its own;
 * `/etc/coffer` one shared directory (the nodes' key file); the standby's data
 * directory stands for `/var/lib/postgresql/15/main`. Outputs are compared
 * after the reverse mapping, with counts, pg_ctl's progress dots and the
 * version number normalized.
 *
 * What the test supplies, as an operator's existing state would: the SQLite
 * installation that `coffer store copy` moves (made with the page's key), the
 * clients that fetch and write through the nodes, and the failures: the
 * primary's machine dies (SIGKILL), a node dies (SIGKILL).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describePostgres, killCluster, PG_BIN, processAlive, startCluster, startStandby, type PgCluster } from '../helpers/postgres.js';
import { COFFER_BIN, ROOT, ensureBuilt } from '../helpers/cli-process.js';
import { runCoffer, startCofferServer } from '../helpers/coffer-process.js';
import { DocBlocks, type ShellResult } from '../helpers/doc-blocks.js';
import { Client } from '../helpers/http.js';
import { tempDir } from '../helpers/tmp.js';

const doc = new DocBlocks(join(ROOT, 'docs/high-availability.md'));
/** The database URL the page's commands and figure use. */
const DOC_URL = 'postgres://coffer@db1:5432,db2:5432/coffer?target_session_attrs=read-write';
const NODES = ['node1', 'node2', 'node3'] as const;
type Machine = (typeof NODES)[number] | 'admin' | 'db2';
const isRoot = process.getuid?.() === 0;

let primary: PgCluster;
let standby: PgCluster;
let root = '';
const ports: Record<string, number> = {};

interface Node {
  machine: string;
  proc: ChildProcess;
  stderr: () => string;
  listening: Promise<string>;
  exited: Promise<number | null>;
}
const nodes: Partial<Record<Machine, Node>> = {};

/** What the page names, in the places the test gives it (longest first). */
function mapping(machine: Machine): [string, string][] {
  const m: [string, string][] = [
    ['/var/lib/postgresql/15/main', standby.dataDir],
    ['/etc/coffer', join(root, 'etc/coffer')],
    ['db1:5432', `127.0.0.1:${primary.port}`],
    ['db2:5432', `127.0.0.1:${standby.port}`],
    ['node1:8443', `127.0.0.1:${ports.node1}`],
    ['node2:8443', `127.0.0.1:${ports.node2}`],
  ];
  if ((NODES as readonly string[]).includes(machine)) {
    m.unshift(['/var/lib/coffer', join(root, machine, 'var/lib/coffer')], ['--port 8443', `--port ${ports[machine]}`], ['localhost:8443', `127.0.0.1:${ports[machine]}`]);
  }
  return m;
}

/** A block's text as it runs on `machine`; throws when it names a machine or place the test does not map. */
function place(text: string, machine: Machine): string {
  let rest = text;
  let out = text;
  for (const [from, to] of mapping(machine)) {
    rest = rest.replaceAll(from, '');
    out = out.replaceAll(from, to);
  }
  const unmapped = /\bdb\d\b|\bnode\d\b|8443|\/var\/lib\/|\/etc\/|localhost/.exec(rest);
  if (unmapped) throw new Error(`'${unmapped[0]}' is not mapped on ${machine} in:\n${text}`);
  return out;
}

/** Real addresses back to the page's names, and the counts and version an output may differ in. */
function normalize(text: string): string {
  let t = text
    .replaceAll(`127.0.0.1:${primary.port}`, 'db1:5432')
    .replaceAll(`127.0.0.1:${standby.port}`, 'db2:5432')
    .replaceAll(standby.standbyName!, 'db2');
  for (const n of NODES) t = t.replaceAll(`127.0.0.1:${ports[n]}`, `${n}:8443`).replaceAll(`0.0.0.0:${ports[n]}`, '0.0.0.0:8443');
  return t
    .replace(/"version":"[^"]*"/g, '"version":"<version>"')
    .replace(/\d+/g, 'N')
    .replace(/\.{2,}/g, '...')
    .trim();
}

function env(): NodeJS.ProcessEnv {
  return { PATH: `${join(root, 'bin')}:${PG_BIN}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: join(root, 'home'), LANG: 'C' };
}

function cwdOf(machine: Machine): string {
  const dir = join(root, machine);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** bash -eo pipefail, as an operator's shell script would; as the postgres OS user on db2 when the test runs as root. */
function bash(script: string, machine: Machine): Promise<ShellResult> {
  const asPostgres = machine === 'db2' && isRoot;
  const argv = ['--noprofile', '--norc', '-eo', 'pipefail', '-c', script];
  const [cmd, args] = asPostgres ? ['/usr/sbin/runuser', ['-u', 'postgres', '--', 'bash', ...argv]] : ['bash', argv];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: asPostgres ? standby.dir : cwdOf(machine), env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** Runs the page's `run NAME` block on `machine`. */
function run(name: string, machine: Machine = 'admin'): Promise<ShellResult> {
  return bash(place(doc.take('run', name).text, machine), machine);
}

function expectOk(what: string, r: ShellResult): void {
  expect({ what, code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ what, code: 0, stderr: '' });
}

function output(name: string): string {
  return normalize(doc.take('output', name).text);
}

/** The page's `coffer server` block on a node, in the background as a service manager would run it. */
function startNode(machine: (typeof NODES)[number]): Node {
  const proc = spawn('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', place(doc.take('run', 'ha-node').text, machine)], {
    cwd: cwdOf(machine),
    env: env(),
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  let onLine: ((line: string) => void) | undefined;
  const exited = new Promise<number | null>((r) => proc.on('close', (code) => r(code)));
  const listening = new Promise<string>((resolve, reject) => {
    onLine = (line) => {
      if (/ listening on /.test(line)) resolve(line);
    };
    void exited.then((code) => reject(new Error(`${machine}: coffer server exited (${code}) before listening:\n${stderr}`)));
  });
  listening.catch(() => undefined);
  let partial = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
    partial += c;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) onLine!(l);
  });
  const node = { machine, proc, stderr: () => stderr, listening, exited };
  nodes[machine] = node;
  return node;
}

function killNode(node: Node | undefined): void {
  if (!node || node.proc.exitCode !== null || node.proc.signalCode !== null) return;
  try {
    process.kill(-node.proc.pid!, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

function nodeUrl(machine: (typeof NODES)[number]): string {
  return `http://127.0.0.1:${ports[machine]}`;
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(200);
  }
}

/** The real URL of the page's database (for the test's own checks). */
const liveUrl = () => place(DOC_URL, 'admin');

// State the sections pass on.
let opsAdminKey = '';
let hostKey = '';
let acmeAdminKey = '';
const ops = (machine: (typeof NODES)[number]) => new Client(nodeUrl(machine), 'ops');

describePostgres('docs/high-availability.md', () => {
  beforeAll(async () => {
    await ensureBuilt();
    // `coffer` is the page's to create: the clusters start with a scratch database only.
    primary = await startCluster({ database: 'scratch' });
    standby = await startStandby(primary);
    root = tempDir('coffer-ha-docs-');
    for (const d of ['bin', 'home']) mkdirSync(join(root, d));
    symlinkSync(COFFER_BIN, join(root, 'bin', 'coffer'));
    for (const n of NODES) ports[n] = await freePort();
  }, 120_000);

  afterAll(async () => {
    for (const n of Object.values(nodes)) killNode(n);
    await standby?.stop();
    await primary?.stop();
  });

  it('the figure names the URL every command uses', () => {
    expect(doc.take('diagram', 'topology').text).toContain(DOC_URL);
  });

  it('setting up: a synchronous standby, the role and database, the key, an SQLite installation copied in, an account, two nodes, /health', async () => {
    const sync = await run('ha-sync-check');
    expectOk('sync check', sync);
    expect(normalize(sync.stdout)).toBe(output('ha-sync-check'));

    expectOk('role and database', await run('ha-database'));
    expect(await primary.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'coffer'", 'postgres')).toBe('coffer');

    expectOk('key', await run('ha-key'));
    const keyFile = join(root, 'etc/coffer/data.key');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64')).toHaveLength(32);

    // The installation being moved: SQLite in node1's /var/lib/coffer, under the page's key.
    const sqliteDir = join(root, 'node1/var/lib/coffer');
    mkdirSync(sqliteDir, { recursive: true });
    const created = await runCoffer(['account', 'create', 'ops', '--data-dir', sqliteDir, '--data-key-file', keyFile, '--json']);
    expect(created.stderr).toBe('');
    opsAdminKey = JSON.parse(created.stdout).api_key;
    const lite = await startCofferServer(['--data-dir', sqliteDir, '--data-key-file', keyFile]);
    try {
      const api = new Client(lite.url, 'ops');
      const admin = await api.login('admin', opsAdminKey);
      const r = await api.loadPolicy(admin, 'POST', 'root', `
- !host runner
- !variable db/password
- !permit
  role: !host runner
  privileges: [read, execute]
  resource: !variable db/password
`);
      expect(r.status).toBe(201);
      hostKey = r.json.created_roles['ops:host:runner'].api_key;
      expect((await api.setSecret(admin, 'db/password', 'from-sqlite')).status).toBe(201);
    } finally {
      await lite.stop();
    }

    const copy = await run('ha-store-copy', 'node1');
    expectOk('store copy', copy);
    expect(normalize(copy.stdout)).toBe(output('ha-store-copy'));

    const account = await run('ha-account');
    expectOk('account create', account);
    acmeAdminKey = /^API key for admin \(shown once\): (\S+)$/m.exec(account.stdout)?.[1] ?? '';
    expect(acmeAdminKey).not.toBe('');

    const started = [startNode('node1'), startNode('node2')];
    for (const node of started) expect(normalize(await node.listening)).toBe(output('ha-node'));
    const health = await run('ha-health');
    expectOk('health', health);
    expect(normalize(health.stdout)).toBe(output('ha-health'));

    // Both nodes serve the copied value to the copied credentials, and the new account.
    const token = await ops('node1').login('host/runner', hostKey);
    expect((await ops('node2').getSecret(token, 'db/password')).text).toBe('from-sqlite');
    await new Client(nodeUrl('node2'), 'acme').login('admin', acmeAdminKey);
  }, 90_000);

  /** The page's stop block on a node: the process exits 0 and leaves no lock file. */
  async function stopNode(n: 'node1' | 'node2'): Promise<void> {
    const before = nodes[n]!;
    expectOk(`stop ${n}`, await run('ha-node-stop', n));
    expect(await before.exited).toBe(0);
    expect(existsSync(join(root, n, 'var/lib/coffer/server.pid'))).toBe(false);
  }

  /** The page's start block on a node, then its wait for /health 200. */
  async function startAndWait(n: 'node1' | 'node2'): Promise<void> {
    const node = startNode(n);
    const wait = await run('ha-node-wait', n);
    expect(wait.code).toBe(0);
    expect(normalize(wait.stdout)).toBe(output('ha-health'));
    await node.listening;
  }

  /** One node at a time; the other serves meanwhile and accepts the stopped node's tokens. */
  async function restartEachNode(): Promise<void> {
    for (const [n, other] of [['node1', 'node2'], ['node2', 'node1']] as const) {
      const token = await ops(n).login('host/runner', hostKey);
      await stopNode(n);
      expect((await ops(other).getSecret(token, 'db/password')).status).toBe(200);
      await startAndWait(n);
    }
  }

  it('rolling upgrade: schema version, a backup, then each node stopped, started and healthy while the other serves', async () => {
    const version = await run('ha-schema-version');
    expectOk('schema version', version);
    const newest = Math.max(...readdirSync(join(ROOT, 'migrations/postgres')).map((f) => Number(/^(\d+)_/.exec(f)?.[1] ?? 0)));
    expect(version.stdout.trim()).toBe(String(newest));
    expectOk('dump', await run('ha-dump'));
    await restartEachNode();
  }, 60_000);

  it('backup and restore: pg_dump, pg_restore into an empty database, its chain verifies, and a node on it serves', async () => {
    const token = await ops('node1').login('host/runner', hostKey);
    const admin = await ops('node1').login('admin', opsAdminKey);
    expect((await ops('node1').setSecret(admin, 'db/password', 'in-the-backup')).status).toBe(201);
    expectOk('dump', await run('ha-dump'));
    expect((await ops('node2').setSecret(admin, 'db/password', 'after-the-backup')).status).toBe(201);
    const restore = await run('ha-restore');
    expectOk('restore', restore);
    expect(normalize(restore.stdout)).toBe(output('ha-restore'));
    // The restored copy holds what the backup held, and nothing after it.
    const restoredUrl = place('postgres://coffer@db1:5432/coffer_restored', 'admin');
    const node = await startCofferServer(['--data-dir', tempDir('coffer-ha-restored-'), '--data-key-file', join(root, 'etc/coffer/data.key'), '--database', restoredUrl]);
    try {
      expect((await new Client(node.url, 'ops').getSecret(token, 'db/password')).text).toBe('in-the-backup');
    } finally {
      await node.stop();
    }
  }, 60_000);

  it('keys: rotate while both nodes serve; rekey with the nodes stopped (one left running fails), then started with the new key; the old key opens only older backups', async () => {
    const host = await ops('node2').login('host/runner', hostKey);
    const statuses: number[] = [];
    let stop = false;
    const fetching = (async () => {
      for (let i = 0; !stop; i++) statuses.push((await ops(i % 2 ? 'node1' : 'node2').getSecret(host, 'db/password')).status);
    })();
    const rotate = await run('ha-keys-rotate');
    await sleep(300);
    stop = true;
    await fetching;
    expectOk('rotate', rotate);
    const rotated = Number(/^Rotated to data key version (\d+): re-encrypted \d+ secret versions/.exec(rotate.stdout)?.[1]);
    expect(rotated).toBeGreaterThan(1);
    expect(statuses.length).toBeGreaterThan(0);
    expect([...new Set(statuses)]).toEqual([200]);
    // Both nodes reloaded the keyring: what either writes now is sealed under the new key.
    const admin = await ops('node1').login('admin', opsAdminKey);
    for (const n of ['node1', 'node2'] as const) {
      await until(`${n} to seal under key ${rotated}`, 5000, async () => {
        expect((await ops(n).setSecret(admin, 'db/password', `after-rotation-${n}`)).status).toBe(201);
        const v = await primary.psql("SELECT key_version FROM secrets WHERE resource_id = 'ops:variable:db/password' ORDER BY version DESC LIMIT 1", 'coffer');
        return v === String(rotated) ? true : undefined;
      });
    }

    // A node left running across the rekey (the page says to stop every node first, and why).
    const keyFile = join(root, 'etc/coffer/data.key');
    const lingering = await startCofferServer(['--data-dir', tempDir('coffer-ha-lingering-'), '--data-key-file', keyFile, '--database', liveUrl()]);
    const lingeringApi = new Client(lingering.url, 'ops');
    try {
      expect((await lingeringApi.getSecret(host, 'db/password')).status).toBe(200);
      await stopNode('node1');
      await stopNode('node2');
      const rekey = await run('ha-keys-rekey');
      expectOk('rekey', rekey);
      expect(normalize(rekey.stdout)).toBe(output('ha-keys-rekey'));
      await until('the lingering node to fail a fetch', 5000, async () => ((await lingeringApi.getSecret(host, 'db/password')).status === 500 ? true : undefined));
      expect((await lingeringApi.setSecret(admin, 'db/password', 'lost')).status).toBe(500);
    } finally {
      await lingering.stop();
    }
    const oldKey = join(root, 'etc/coffer/data.key.before-rekey');
    expect(readFileSync(oldKey, 'utf8')).not.toBe(readFileSync(keyFile, 'utf8'));
    await startAndWait('node1');
    await startAndWait('node2');
    const fresh = await ops('node1').login('host/runner', hostKey);
    for (const n of ['node1', 'node2'] as const) expect((await ops(n).getSecret(fresh, 'db/password')).text).toBe('after-rotation-node2');
    expect((await ops('node2').setSecret(await ops('node2').login('admin', opsAdminKey), 'db/password', 'after-rekey')).status).toBe(201);
    expect((await ops('node1').getSecret(fresh, 'db/password')).text).toBe('after-rekey');

    // The old key: refused by the live database, still the key of the backup restored above.
    const restoredUrl = place('postgres://coffer@db1:5432/coffer_restored', 'admin');
    const server = (key: string, url: string) => ['server', '--data-dir', tempDir('coffer-ha-key-'), '--port', '0', '--data-key-file', key, '--database', url];
    const [refused, withNewKey, backupNode] = await Promise.all([
      runCoffer(server(oldKey, liveUrl())),
      runCoffer(server(keyFile, restoredUrl)),
      startCofferServer(server(oldKey, restoredUrl).slice(1)),
    ]);
    await backupNode.stop();
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('The data key does not match this database (key-check failed)');
    expect(withNewKey.code).toBe(1);
    expect(withNewKey.stderr).toContain('The data key does not match this database (key-check failed)');
  }, 90_000);

  it('failures: a node dies; the primary dies (503, a node starting retries); the standby is promoted (200 without a restart, nothing lost, the chain verifies)', async () => {
    // A node dies: the other serves, and accepts the dead node's token.
    const fromNode2 = await ops('node2').login('host/runner', hostKey);
    killNode(nodes.node2);
    await nodes.node2!.exited;
    await expect(fetch(`${nodeUrl('node2')}/health`)).rejects.toThrow();
    expect((await ops('node1').getSecret(fromNode2, 'db/password')).status).toBe(200);

    // Acknowledged just before the primary's machine dies.
    const admin = await ops('node1').login('admin', opsAdminKey);
    expect((await ops('node1').setSecret(admin, 'db/password', 'before-failover')).status).toBe(201);
    const node1 = nodes.node1!;
    await killCluster(primary);

    const down = await until('/health 503 on node1', 60_000, async () => {
      const r = await run('ha-health');
      return r.code === 22 ? r : undefined;
    });
    const [body, curlLine] = output('ha-health-down').split('\n');
    expect(normalize(down.stdout)).toBe(body);
    expect(normalize(down.stderr)).toBe(curlLine);
    const refused = await ops('node1').request('GET', '/secrets/ops/variable/db%2Fpassword', { token: fromNode2, skipContract: true });
    expect(refused.status).toBe(503);
    expect(refused.json?.error?.code).toBe('service_unavailable');
    expect(refused.text).not.toContain('before-failover');

    // A node started now retries with backoff, and says so.
    const node3 = startNode('node3');
    await until('a retry line from node3', 20_000, async () => (node3.stderr().includes('retrying in') ? true : undefined));

    const promoted = await run('ha-promote', 'db2');
    expectOk('promote', promoted);
    expect(normalize(promoted.stdout)).toBe(output('ha-promote'));

    const up = await until('/health 200 on node1', 30_000, async () => {
      const r = await run('ha-health');
      return r.code === 0 ? r : undefined;
    });
    expect(normalize(up.stdout)).toBe(output('ha-health'));
    // Without a restart: the same process, the same lock file.
    expect(node1.proc.exitCode).toBe(null);
    expect(processAlive(node1.proc.pid!)).toBe(true);
    expect(readFileSync(join(root, 'node1/var/lib/coffer/server.pid'), 'utf8').trim()).toBe(String(node1.proc.pid));
    await node3.listening;
    // One line per attempt, the wait doubling from 1 s.
    const retries = node3.stderr().split('\n').filter((l) => l.includes('retrying in'));
    expect(retries.length).toBeGreaterThan(0);
    retries.forEach((l, i) => expect(l).toMatch(new RegExp(`^coffer: the database is unreachable \\(.+\\); retrying in ${2 ** i} s$`)));
    for (const n of ['node1', 'node3'] as const) {
      expect((await ops(n).getSecret(await ops(n).login('host/runner', hostKey), 'db/password')).text).toBe('before-failover');
    }

    const verify = await run('ha-audit-verify');
    expectOk('audit verify', verify);
    expect(normalize(verify.stdout)).toBe(output('ha-audit-verify'));
  }, 120_000);

  it('uses every block of the page', () => {
    expect(doc.unused()).toEqual([]);
  });
});
