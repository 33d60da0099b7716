/**
 * End to end: `coffer run` and `coffer provider` / `coffer-provider` (issue 5 §3)
 * as real processes against the real server.
 *
 * The CLI talks to the server through a recording proxy (test/helpers/recording-proxy.ts):
 * it counts the requests each run makes (one batch per run, never one per
 * variable) and captures the access token on the wire, which then proves
 * revocation directly — the very token the runner used gets 401 afterwards —
 * and is matched (by jti) to the `revoke-token` event in the audit log.
 */
import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { startRecordingProxy, type RecordingProxy } from '../helpers/recording-proxy.js';
import { COFFER_BIN, PROVIDER_BIN, ensureBuilt, spawnBin, type Finished, type Running } from '../helpers/cli-process.js';

const CANARY = 'canary-Vq7Lr2Xp9Zt4';
const VALUES = {
  'ci/db/password': 'p@ss w0rd "quoted" $HOME `id`',
  'ci/db/user': 'deploy',
  'ci/eu/db': 'eu-db.internal',
  'ci/tls/key': '-----BEGIN TEST KEY-----\nbm90IGEgcmVhbCBrZXk=\n-----END TEST KEY-----\n',
  'ci/canary': CANARY,
  'ci/hidden': 'hidden-value-Kw3',
};
const BINARY = Buffer.from([0xff, 0x00, 0x01, 0xfe, 0x0a]);
/** Every secret value; none may ever show up in the runner's own output. */
const ALL_SECRETS = Object.values(VALUES);

let srv: TestServer;
let api: Client;
let proxy: RecordingProxy;
let admin: string;
let hostKey: string;
let work: string;
let home: string;

beforeAll(async () => {
  await ensureBuilt();
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  proxy = await startRecordingProxy(srv.url);
  admin = await api.login('admin', srv.adminKey);
  const r = await api.loadPolicy(admin, 'POST', 'root', `
- !policy
  id: ci
  body:
  - !host executor
  - &granted
    - !variable db/password
    - !variable db/user
    - !variable eu/db
    - !variable tls/key
    - !variable canary
    - !variable bin
    - !variable unset
  - !variable hidden
  - !permit
    role: !host executor
    privileges: [ read, execute ]
    resource: *granted
`);
  expect(r.status).toBe(201);
  hostKey = r.json.created_roles[`${srv.account}:host:ci/executor`].api_key;
  for (const [id, value] of Object.entries(VALUES)) expect((await api.setSecret(admin, id, value)).status).toBe(201);
  expect((await api.setSecret(admin, 'ci/bin', BINARY)).status).toBe(201);
  work = mkdtempSync(join(tmpdir(), 'coffer-run-e2e-'));
  home = join(work, 'home');
  mkdirSync(home);
});

afterAll(async () => {
  await proxy?.close();
  await srv?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

let mark = 0;
beforeEach(() => {
  mark = proxy.requests.length;
});

/** What a CI job sets: Conjur's variables, a fresh HOME, nothing else. */
function jobEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    CONJUR_APPLIANCE_URL: proxy.url,
    CONJUR_ACCOUNT: srv.account,
    CONJUR_AUTHN_LOGIN: 'host/ci/executor',
    CONJUR_AUTHN_API_KEY: hostKey,
    ...extra,
  };
}

function startRun(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Running {
  return spawnBin(COFFER_BIN, ['run', ...args], { env: opts.env ?? jobEnv(), cwd: opts.cwd ?? work });
}

/** Runs to the end and checks that no secret value leaked into what the runner printed. */
async function finish(run: Running, { stdoutMayHoldSecrets = false } = {}): Promise<Finished> {
  const res = await run.done;
  for (const secret of ALL_SECRETS) {
    expect(res.stderr).not.toContain(secret);
    if (!stdoutMayHoldSecrets) expect(res.stdout.toString('utf8')).not.toContain(secret);
  }
  expect(res.stderr).not.toContain(hostKey);
  expect(res.stdout.toString('utf8')).not.toContain(hostKey);
  return res;
}

const run = (args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) => finish(startRun(args, opts));

/** Requests since the test began, as `METHOD /path`. */
function requestsOfThisTest(): string[] {
  return proxy.requests.slice(mark).map((r) => `${r.method} ${r.path.split('?')[0]}`);
}

const AUTHENTICATE = 'POST /authn/cucumber/host%2Fci%2Fexecutor/authenticate';
const BATCH = 'POST /secrets/cucumber/batch';
const REVOKE = 'DELETE /authn/cucumber/token';

/** The token the runner sent with its batch request. */
function tokenOfThisTest(): string {
  const batch = proxy.requests.slice(mark).find((r) => r.path.startsWith('/secrets/'));
  expect(batch?.authorization).toMatch(/^Token token="/);
  return batch!.authorization!;
}

async function expectRevoked(authorization: string): Promise<void> {
  const reuse = await fetch(`${srv.url}/whoami`, { headers: { Authorization: authorization } });
  expect(reuse.status).toBe(401);
}

function jtiOf(authorization: string): string {
  const tokenJson = Buffer.from(/token="([^"]+)"/.exec(authorization)![1]!, 'base64').toString('utf8');
  const payload = JSON.parse(Buffer.from(JSON.parse(tokenJson).payload, 'base64').toString('utf8'));
  return payload.jti as string;
}

async function waitForFile(path: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path) || readFileSync(path, 'utf8') === '') {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${path}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 20));
  return readFileSync(path, 'utf8').trim();
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** A node child that reports what it received to the JSON file named by its first argument. */
const PROBE = `
const fs = require('fs'), path = require('path');
const report = { env: {}, files: {}, argv: process.argv.slice(1) };
for (const k of ['DB_PASS', 'DB_USER', 'MODE', 'LOG_LEVEL', 'REGION_DB', 'NOTE', 'SUMMON_ENV', 'CANARY',
                 'CONJUR_AUTHN_API_KEY', 'CONJUR_AUTHN_LOGIN', 'CONJUR_APPLIANCE_URL']) report.env[k] = process.env[k] ?? null;
for (const k of ['TLS_KEY', 'BIN_FILE', 'CONFIG']) {
  const p = process.env[k];
  if (!p) continue;
  report.files[k] = { path: p, base64: fs.readFileSync(p).toString('base64'),
    mode: fs.statSync(p).mode & 0o777, dirMode: fs.statSync(path.dirname(p)).mode & 0o777 };
}
if (process.argv[2]) report.envFile = { path: process.argv[2], text: fs.readFileSync(process.argv[2], 'utf8') };
report.cmdline = fs.readFileSync('/proc/self/cmdline', 'utf8');
report.parentCmdline = fs.readFileSync('/proc/' + process.ppid + '/cmdline', 'utf8');
fs.writeFileSync(process.argv[1], JSON.stringify(report));
console.log('probe done, ' + Object.keys(report.env).filter((k) => report.env[k] !== null).length + ' variables');
`;

describe('coffer run: Summon secrets.yml, delivery and cleanup', () => {
  it('delivers env values and 0600 files from a private directory per secrets.yml (environments, -D, defaults, $$, --up, @SUMMONENVFILE), then removes them', async () => {
    const project = join(work, 'project');
    const sub = join(project, 'scripts', 'deploy');
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(project, 'secrets.yml'), `
common:
  DB_USER: !var ci/db/user
  MODE: fast
  LOG_LEVEL: !str:default='info' ''
production:
  DB_PASS: !var ci/db/password
  REGION_DB: !var ci/$REGION/db
  TLS_KEY: !var:file ci/tls/key
  BIN_FILE: !var:file ci/bin
  CONFIG: !file "port: $$PORT"
  NOTE: costs $$5
staging:
  DB_PASS: !var ci/db/user
`);
    const report = join(work, 'report.json');
    const res = await run(['--up', '-e', 'production', '-D', 'REGION=eu', '--', process.execPath, '-e', PROBE, report, '@SUMMONENVFILE'], { cwd: sub });
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout.toString()).toBe('probe done, 9 variables\n');
    const r = JSON.parse(readFileSync(report, 'utf8'));
    expect(r.env).toEqual({
      DB_PASS: VALUES['ci/db/password'],
      DB_USER: 'deploy',
      MODE: 'fast',
      LOG_LEVEL: 'info',
      REGION_DB: 'eu-db.internal',
      NOTE: 'costs $5',
      SUMMON_ENV: 'production',
      CANARY: null,
      // The runner's own credential is not handed on; the non-secret settings are.
      CONJUR_AUTHN_API_KEY: null,
      CONJUR_AUTHN_LOGIN: 'host/ci/executor',
      CONJUR_APPLIANCE_URL: proxy.url,
    });
    const files = r.files as Record<string, { path: string; base64: string; mode: number; dirMode: number }>;
    expect(Buffer.from(files.TLS_KEY!.base64, 'base64').toString()).toBe(VALUES['ci/tls/key']);
    expect(Buffer.from(files.BIN_FILE!.base64, 'base64').equals(BINARY)).toBe(true);
    expect(Buffer.from(files.CONFIG!.base64, 'base64').toString()).toBe('port: $PORT');
    for (const f of Object.values(files)) {
      expect(f.mode).toBe(0o600);
      expect(f.dirMode).toBe(0o700);
      if (existsSync('/dev/shm')) expect(f.path.startsWith('/dev/shm/coffer-run-')).toBe(true);
    }
    // Summon's env file: sorted KEY=VALUE lines, quoted where needed, in the same private directory.
    expect(dirname(r.envFile.path)).toBe(dirname(files.TLS_KEY!.path));
    expect(r.envFile.text).toContain('DB_USER=deploy\n');
    expect(r.envFile.text).toContain('SUMMON_ENV=production\n');
    // Gone afterwards, directory included.
    for (const p of [...Object.values(files).map((f) => f.path), r.envFile.path]) expect(existsSync(p)).toBe(false);
    expect(existsSync(dirname(files.TLS_KEY!.path))).toBe(false);
    // One authentication, ONE batch request for all six variables, one revocation.
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);
  });

  it('makes exactly one batch request per run and revokes the token it used: reuse is 401 and the audit log has its revocation', async () => {
    const yaml = ['A: !var ci/db/password', 'B: !var ci/db/user', 'C: !var ci/eu/db', 'D: !var:file ci/tls/key', 'E: !var ci/canary', 'F: !var ci/db/user'].join('\n');
    const before = await api.request('GET', `/audit/${srv.account}?limit=1`, { token: admin });
    const lastSeq = before.json.events[0]?.seq ?? 0;
    const res = await run(['--yaml', yaml, 'true']);
    expect(res.code).toBe(0);
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);
    const token = tokenOfThisTest();
    await expectRevoked(token);

    // Server side: the five distinct variables were fetched in one request (one request id).
    const audit = await api.request('GET', `/audit/${srv.account}?role=host:ci/executor&limit=1000`, { token: admin });
    const events = (audit.json.events as any[]).filter((e) => e.seq > lastSeq);
    const fetches = events.filter((e) => e.action === 'fetch');
    expect(fetches.map((e) => e.resource).sort()).toEqual(
      ['canary', 'db/password', 'db/user', 'eu/db', 'tls/key'].map((v) => `${srv.account}:variable:ci/${v}`),
    );
    expect(new Set(fetches.map((e) => e.request_id)).size).toBe(1);
    expect(fetches.every((e) => e.result === 'success')).toBe(true);
    // …and the revocation of exactly the token that was used.
    const revoked = events.filter((e) => e.operation === 'revoke-token');
    expect(revoked).toHaveLength(1);
    expect(revoked[0].details.jti).toBe(jtiOf(token));
  });

  it('fetches a path used by many entries once, and splits more than 1000 distinct variables into batches of 1000', async () => {
    const same = Array.from({ length: 1500 }, (_, i) => `V${i}: !var ci/db/user`);
    writeFileSync(join(work, 'same.yml'), same.join('\n'));
    const once = await run(['-f', 'same.yml', 'true']);
    expect(once.code).toBe(0);
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);

    mark = proxy.requests.length;
    // 1001 distinct variables (that do not exist: -I lets the run go on without them).
    const distinct = Array.from({ length: 1001 }, (_, i) => `V${i}: !var bulk/v${i}`);
    writeFileSync(join(work, 'distinct.yml'), [...distinct, 'USER: !var ci/db/user'].join('\n'));
    const chunked = await run(['-I', '-f', 'distinct.yml', 'sh', '-c', 'test "$USER" = deploy && test -z "${V0+set}"']);
    expect(chunked.code).toBe(0);
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, BATCH, REVOKE]);
  });

  it('needs no server at all when secrets.yml has only literals', async () => {
    const res = await run(['--yaml', 'GREETING: hello', 'sh', '-c', 'test "$GREETING" = hello'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home },
    });
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(requestsOfThisTest()).toEqual([]);
  });
});

describe('coffer run: secrecy', () => {
  it('keeps a canary secret out of the child\'s and the runner\'s /proc/<pid>/cmdline and out of all runner output', async () => {
    const report = join(work, 'canary.json');
    const running = startRun(['--yaml', 'CANARY: !var ci/canary', '--', process.execPath, '-e', PROBE, report]);
    const runnerCmdline = readFileSync(`/proc/${running.proc.pid}/cmdline`, 'utf8');
    const res = await finish(running);
    expect(res.code).toBe(0);
    const r = JSON.parse(readFileSync(report, 'utf8'));
    expect(r.env.CANARY).toBe(CANARY); // delivered…
    expect(r.cmdline).not.toContain(CANARY); // …but not through argv
    expect(r.parentCmdline).not.toContain(CANARY);
    expect(r.parentCmdline).toContain('run'); // the parent is the runner
    expect(runnerCmdline).not.toContain(CANARY);
    expect(res.stdout.toString() + res.stderr).not.toContain(CANARY);
  });

  it('keeps the canary out of the error output of a run that fails after fetching it', async () => {
    const res = await run(['--yaml', 'CANARY: !var ci/canary\nX: !var ci/hidden', 'true']);
    expect(res.code).toBe(127);
    expect(res.stderr).not.toContain(CANARY);
  });
});

describe('coffer run: failures (exit 127)', () => {
  it('names the variable and the server\'s message when a fetch fails, does not start the command, and still revokes', async () => {
    const marker = join(work, 'must-not-exist');
    const res = await run(['--yaml', 'DB_USER: !var ci/db/user\nSECRET: !var ci/hidden', 'touch', marker]);
    expect(res.code).toBe(127);
    expect(res.stderr).toBe(
      `coffer run: Error fetching variable SECRET: CONJ00076E Variable ${srv.account}:variable:ci/hidden is empty or not found.\n`,
    );
    expect(existsSync(marker)).toBe(false);
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);
    await expectRevoked(tokenOfThisTest());
  });

  it('reports a variable without a value the same way', async () => {
    const res = await run(['--yaml', 'EMPTY: !var ci/unset', 'true']);
    expect(res.code).toBe(127);
    expect(res.stderr).toContain(`Error fetching variable EMPTY: CONJ00076E Variable ${srv.account}:variable:ci/unset is empty or not found.`);
  });

  it('skips a failed variable with -i NAME, -i PATH or -I, and runs the command without it', async () => {
    const yaml = 'DB_USER: !var ci/db/user\nSECRET: !var ci/hidden';
    const check = ['sh', '-c', 'test "$DB_USER" = deploy && test -z "${SECRET+set}"'];
    for (const flags of [['-i', 'SECRET'], ['--ignore', 'ci/hidden'], ['-I'], ['--ignore-all']]) {
      const res = await run([...flags, '--yaml', yaml, ...check]);
      expect({ flags, code: res.code, stderr: res.stderr }).toEqual({ flags, code: 0, stderr: '' });
    }
  });

  it('fails with one clear line for a bad option, a bad or missing secrets file, a missing command, or wrong credentials', async () => {
    const cases: [string[], RegExp, NodeJS.ProcessEnv?][] = [
      [['--bogus', 'true'], /^coffer run: unknown option --bogus/],
      [['-p', 'summon-conjur', 'true'], /^coffer run: -p is not supported/],
      [['--timeout', 'soon', 'true'], /^coffer run: invalid --timeout 'soon'/],
      [['-D', 'novalue', 'true'], /^coffer run: -D expects name=value/],
      [['--yaml', 'A: !var ci/db/user'], /^coffer run: no command given/],
      [['--yaml', 'A: !vra ci/db/user', 'true'], /^coffer run: secrets.yml line 1: unknown tag !vra on A/],
      [['--yaml', 'A: !var ci/$NOPE', 'true'], /^coffer run: secrets.yml line 1: variable NOPE not declared/],
      [['-e', 'nowhere', '--yaml', 'prod:\n  A: x', 'true'], /No such environment 'nowhere'/],
      [['-f', 'missing.yml', 'true'], /^coffer run: cannot read secrets file .*missing\.yml: no such file/],
      [['--yaml', 'A: x', 'no-such-command-xyz'], /^coffer run: no-such-command-xyz: command not found/],
      [
        ['--yaml', 'A: !var ci/db/user', 'true'],
        /^coffer run: Error fetching variable A: authentication as 'host\/ci\/executor' failed/,
        jobEnv({ CONJUR_AUTHN_API_KEY: 'wrong-key' }),
      ],
      [['--yaml', 'A: !var ci/db/user', 'true'], /^coffer run: no server configured/, { PATH: process.env.PATH, HOME: home }],
    ];
    for (const [args, pattern, env] of cases) {
      const res = await run(args, env ? { env } : {});
      expect({ args, code: res.code }).toEqual({ args, code: 127 });
      expect(res.stderr).toMatch(pattern);
      expect(res.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});

describe('coffer run: exit codes, signals and timeout', () => {
  it('passes the command\'s exit code through, and a signal death as 128+n', async () => {
    expect((await run(['--yaml', 'A: !var ci/db/user', 'sh', '-c', 'exit 7'])).code).toBe(7);
    expect((await run(['--yaml', 'A: x', '--', 'sh', '-c', 'kill -KILL $$'])).code).toBe(137);
    expect((await run(['--yaml', 'A: x', 'true'])).code).toBe(0);
  });

  it('forwards signals to the command (a shell that traps TERM and USR1 reports them), then exits with its code and cleans up', async () => {
    const marker = join(work, 'trap-marker');
    const script = `
      trap 'echo got-USR1 >> "$0"' USR1
      trap 'echo got-TERM >> "$0"; exit 42' TERM
      echo "$KEY_FILE" > "$0.path"
      while :; do sleep 0.05; done`;
    const running = startRun(['--yaml', 'KEY_FILE: !var:file ci/tls/key', '--', 'sh', '-c', script, marker]);
    const keyFile = await waitForFile(`${marker}.path`);
    expect(existsSync(keyFile)).toBe(true);
    process.kill(running.proc.pid!, 'SIGUSR1');
    await waitForFile(marker);
    process.kill(running.proc.pid!, 'SIGTERM');
    const res = await finish(running);
    expect(res.code).toBe(42);
    expect(readFileSync(marker, 'utf8')).toBe('got-USR1\ngot-TERM\n');
    expect(existsSync(keyFile)).toBe(false);
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);
    await expectRevoked(tokenOfThisTest());
  });

  it('cleans up after SIGINT to the runner: the command is interrupted, files removed, token revoked, exit 130', async () => {
    const pathFile = join(work, 'sigint-path');
    const running = startRun(['--yaml', 'KEY_FILE: !var:file ci/tls/key', '--', 'sh', '-c', 'echo "$KEY_FILE" > "$0"; sleep 30', pathFile]);
    const keyFile = await waitForFile(pathFile);
    process.kill(running.proc.pid!, 'SIGINT');
    const res = await finish(running);
    expect(res.code).toBe(130);
    expect(existsSync(keyFile)).toBe(false);
    expect(existsSync(dirname(keyFile))).toBe(false);
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);
    await expectRevoked(tokenOfThisTest());
  });

  it('stops before starting the command when SIGINT arrives during the fetch, and still revokes', async () => {
    const marker = join(work, 'never-started');
    proxy.delay = { pattern: /\/batch$/, ms: 1500 };
    try {
      const running = startRun(['--yaml', 'A: !var ci/db/user', 'touch', marker]);
      await proxy.waitFor(/\/batch$/, mark);
      process.kill(running.proc.pid!, 'SIGINT');
      const res = await finish(running);
      expect(res.code).toBe(130);
      expect(res.stderr).toBe('coffer run: interrupted by SIGINT before the command started\n');
    } finally {
      proxy.delay = undefined;
    }
    expect(existsSync(marker)).toBe(false);
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);
    await expectRevoked(tokenOfThisTest());
  });

  it('--timeout kills the command\'s whole process group and exits 124, cleaning up', async () => {
    const pidFile = join(work, 'timeout-grandchild');
    const started = Date.now();
    const running = startRun(['--timeout', '1s', '--yaml', 'KEY_FILE: !var:file ci/tls/key', '--', 'sh', '-c', 'echo "$KEY_FILE" > "$0.path"; sleep 30 & echo $! > "$0"; wait', pidFile]);
    const res = await finish(running);
    expect(res.code).toBe(124);
    expect(Date.now() - started).toBeLessThan(9000);
    expect(res.stderr).toBe('coffer run: command timed out after 1000 ms\n');
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    const deadline = Date.now() + 3000;
    while (alive(grandchild) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(alive(grandchild)).toBe(false);
    expect(existsSync(readFileSync(`${pidFile}.path`, 'utf8').trim())).toBe(false);
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);
    await expectRevoked(tokenOfThisTest());
  });

  it('survives a closed output pipe (`coffer run … 2>&1 | head -1`): still exits 124 on timeout, removes its files, revokes', async () => {
    const pathFile = join(work, 'epipe-path');
    const runner = [process.execPath, COFFER_BIN, 'run', '--timeout', '2s', '--yaml', 'B: !var:file ci/tls/key', '--', 'sh', '-c', `echo "$B" > '${pathFile}'; echo l1; sleep 5`]
      .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
      .join(' ');
    // Asynchronously: the server lives in this process and must keep answering.
    const bash = spawn('bash', ['--norc', '-c', `${runner} 2>&1 | head -1; echo "rc=\${PIPESTATUS[0]}" >&2`], { env: { ...jobEnv(), SHLVL: '2' }, detached: true });
    let out = '';
    let err = '';
    bash.stdout.on('data', (c: Buffer) => (out += c.toString()));
    bash.stderr.on('data', (c: Buffer) => (err += c.toString()));
    await new Promise((r) => bash.on('close', r));
    expect(out).toBe('l1\n');
    expect(err).toContain('rc=124');
    expect(existsSync(readFileSync(pathFile, 'utf8').trim())).toBe(false);
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);
    await expectRevoked(tokenOfThisTest());
  });

  it('is not stalled by a command that replaces its secret file with a FIFO', async () => {
    const started = Date.now();
    const res = await run(['--yaml', 'B: !var:file ci/tls/key', '--', 'sh', '-c', 'rm "$B"; mkfifo "$B"; echo "$B"']);
    expect(res.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(existsSync(res.stdout.toString().trim())).toBe(false);
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);
  });

  it('does not point the command at the runner\'s token file or JWT file', async () => {
    const tokenJson = await api.login('host/ci/executor', hostKey);
    const tokenFile = join(work, 'runner-token.json');
    writeFileSync(tokenFile, tokenJson, { mode: 0o600 });
    const env = jobEnv({ CONJUR_AUTHN_TOKEN_FILE: tokenFile, JWT_TOKEN_PATH: join(work, 'job.jwt'), COFFER_TOKEN_FILE: tokenFile });
    delete env.CONJUR_AUTHN_API_KEY;
    const res = await finish(startRun(['--yaml', 'A: !var ci/db/user', '--', 'sh', '-c', 'echo "${CONJUR_AUTHN_TOKEN_FILE:-none} ${COFFER_TOKEN_FILE:-none} ${JWT_TOKEN_PATH:-none} $A"'], { env }), { stdoutMayHoldSecrets: true });
    expect(res.code).toBe(0);
    expect(res.stdout.toString()).toBe('none none none deploy\n');
  });

  it('keeps the terminal for the command when run interactively, and takes it away in CI', async () => {
    const probe = ['--yaml', 'A: x', '--', 'sh', '-c', '(: < /dev/tty) 2>/dev/null && echo has-tty || echo no-tty'];
    // CI: no controlling terminal, so the command runs in its own session.
    const ci = await run(probe);
    expect(ci.stdout.toString()).toBe('no-tty\n');
    // Interactive: util-linux `script` gives the runner a terminal; the command must keep it.
    const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;
    if (!hasScript) return;
    const quoted = [process.execPath, COFFER_BIN, 'run', ...probe].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const tty = spawnSync('script', ['-qec', quoted, '/dev/null'], { env: jobEnv({ SHELL: '/bin/sh' }), encoding: 'utf8', timeout: 20_000 });
    expect(tty.stdout.replace(/\r/g, '')).toContain('has-tty\n');
  });
});

describe('coffer provider and coffer-provider (Summon provider protocol)', () => {
  const provider = (bin: string, args: string[], env = jobEnv()) => finish(spawnBin(bin, args, { env }), { stdoutMayHoldSecrets: true });

  it('prints exactly the value, no newline added, exit 0, and revokes its token', async () => {
    const res = await provider(COFFER_BIN, ['provider', 'ci/db/password']);
    expect(res.code).toBe(0);
    expect(res.stdout.toString()).toBe(VALUES['ci/db/password']);
    expect(res.stderr).toBe('');
    expect(requestsOfThisTest()).toEqual([AUTHENTICATE, BATCH, REVOKE]);
    await expectRevoked(tokenOfThisTest());
  });

  it('works as `coffer-provider <id>`, the way summon calls a provider, binary values byte for byte', async () => {
    const res = await provider(PROVIDER_BIN, ['ci/bin']);
    expect(res.code).toBe(0);
    expect(res.stdout.equals(BINARY)).toBe(true);
    const full = await provider(PROVIDER_BIN, [`${srv.account}:variable:ci/tls/key`]);
    expect(full.stdout.toString()).toBe(VALUES['ci/tls/key']);
  });

  it('puts the error on stderr with a non-zero exit and nothing on stdout', async () => {
    const res = await provider(PROVIDER_BIN, ['ci/hidden']);
    expect(res.code).not.toBe(0);
    expect(res.stdout.length).toBe(0);
    expect(res.stderr).toBe(`coffer-provider: CONJ00076E Variable ${srv.account}:variable:ci/hidden is empty or not found.\n`);
    const bad = await provider(PROVIDER_BIN, ['ci/db/user'], jobEnv({ CONJUR_AUTHN_API_KEY: 'nope' }));
    expect(bad.code).toBe(6);
    expect(bad.stderr).toMatch(/^coffer-provider: authentication as 'host\/ci\/executor' failed/);
    const usage = await provider(PROVIDER_BIN, []);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('expected exactly one variable id');
  });

  it('answers --version (summon -V asks every provider)', async () => {
    const res = await provider(PROVIDER_BIN, ['--version']);
    expect(res.code).toBe(0);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    expect(res.stdout.toString().trim()).toBe(pkg.version);
  });
});
