import { EventEmitter } from 'node:events';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  formatEnvFile,
  runWithSecrets,
  type FetchHints,
  type FetchValues,
  type RunOptions,
  type SecretSpec,
} from '../../src/cli/run/runner.js';

const CANARY = 'canary-7f3a9c1e-do-not-leak';

let work = '';
let shm = '';
let errors: string[] = [];

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'coffer-runner-test-'));
  // Stands in for /dev/shm so each test can check that nothing is left behind.
  shm = join(work, 'shm');
  mkdirSync(shm);
  errors = [];
});

afterEach(() => {
  rmSync(work, { recursive: true, force: true });
});

const varSpec = (name: string, value: string, extra: Partial<SecretSpec> = {}): SecretSpec => ({
  name,
  kind: 'var',
  value,
  toFile: false,
  ...extra,
});
const literal = (name: string, value: string, extra: Partial<SecretSpec> = {}): SecretSpec => ({
  name,
  kind: 'literal',
  value,
  toFile: false,
  ...extra,
});

/** A fetcher over a fixed table that records its calls. */
function fakeFetcher(table: Record<string, string | Buffer>) {
  const calls: { paths: string[]; hints: FetchHints }[] = [];
  const fetchValues: FetchValues = async (paths, hints) => {
    calls.push({ paths, hints });
    const out = new Map<string, Buffer>();
    for (const p of paths) {
      const v = table[p];
      if (v !== undefined) out.set(p, Buffer.isBuffer(v) ? v : Buffer.from(v));
    }
    return out;
  };
  return { fetchValues, calls };
}

/** argv for a node child running `script`; `process.argv[1..]` are `args`. */
const node = (script: string, ...args: string[]): string[] => [process.execPath, '-e', script, ...args];

function run(opts: Partial<RunOptions> & Pick<RunOptions, 'specs' | 'command'>): Promise<number> {
  return runWithSecrets({
    fetchValues: fakeFetcher({}).fetchValues,
    stderr: { write: (s: string) => errors.push(s) },
    tmpRoot: shm,
    baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    ...opts,
  });
}

const readJson = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;

async function waitFor(path: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${path}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Running, as opposed to gone or a zombie waiting for a (possibly slow) reaper. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

describe('runWithSecrets: delivery', () => {
  it('Should put fetched and literal values into the child environment', async () => {
    const out = join(work, 'env.json');
    const { fetchValues, calls } = fakeFetcher({ 'db/password': 'p@ss w0rd', 'db/user': 'alice' });
    const code = await run({
      specs: [varSpec('DB_PASS', 'db/password'), varSpec('DB_USER', 'db/user'), literal('MODE', 'fast')],
      command: node(
        `require('fs').writeFileSync(process.argv[1], JSON.stringify({a: process.env.DB_PASS, b: process.env.DB_USER, c: process.env.MODE, d: process.env.SUMMON_ENV ?? null}))`,
        out,
      ),
      fetchValues,
    });
    expect(code).toBe(0);
    expect(readJson(out)).toEqual({ a: 'p@ss w0rd', b: 'alice', c: 'fast', d: null });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.paths).toEqual(['db/password', 'db/user']);
    expect(errors).toEqual([]);
  });

  it('Should deliver single fields of a JSON value (!var:field), all from one fetch of the path', async () => {
    const out = join(work, 'fields.json');
    const creds = JSON.stringify({ username: 'coffer_0a1b', password: 'pw "x"', port: 5432 });
    const { fetchValues, calls } = fakeFetcher({ 'data/dynamic/pg': creds });
    const code = await run({
      specs: [
        varSpec('PGUSER', 'data/dynamic/pg', { field: 'username' }),
        varSpec('PGPASSWORD', 'data/dynamic/pg', { field: 'password' }),
        varSpec('PGPORT', 'data/dynamic/pg', { field: 'port' }),
        varSpec('ALL', 'data/dynamic/pg'),
      ],
      command: node(`require('fs').writeFileSync(process.argv[1], JSON.stringify([process.env.PGUSER, process.env.PGPASSWORD, process.env.PGPORT, process.env.ALL]))`, out),
      fetchValues,
    });
    expect(code).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(['coffer_0a1b', 'pw "x"', '5432', creds]);
    expect(calls.map((c) => c.paths)).toEqual([['data/dynamic/pg']]);
  });

  it('Should refuse a field of a value that is not JSON, or that lacks it, without quoting the value', async () => {
    const { fetchValues } = fakeFetcher({ plain: 'not-json-secret-123', obj: '{"a":"secret-456"}' });
    for (const [path, field] of [['plain', 'username'], ['obj', 'b']] as const) {
      errors.length = 0;
      const code = await run({ specs: [varSpec('X', path, { field })], command: node(''), fetchValues });
      expect(code).not.toBe(0);
      expect(errors.join('')).toContain(`is not a JSON object with a field '${field}'`);
      expect(errors.join('')).not.toMatch(/secret-/);
    }
  });

  it('Should fetch each distinct path once in a single call', async () => {
    const { fetchValues, calls } = fakeFetcher({ 'shared/p': 'v' });
    const code = await run({
      specs: [varSpec('A', 'shared/p'), varSpec('B', 'shared/p', { toFile: true })],
      command: node('process.exit(process.env.A === "v" ? 0 : 1)'),
      fetchValues,
    });
    expect(code).toBe(0);
    expect(calls.map((c) => c.paths)).toEqual([['shared/p']]);
  });

  it('Should not call the fetcher when there is nothing to fetch', async () => {
    const { fetchValues, calls } = fakeFetcher({});
    expect(await run({ specs: [literal('A', 'x')], command: node('process.exit(0)'), fetchValues })).toBe(0);
    expect(calls).toHaveLength(0);
  });

  it('Should keep the base environment and let secrets override it', async () => {
    const out = join(work, 'env.json');
    const code = await run({
      specs: [literal('OVERRIDE', 'from-secret')],
      command: node(
        `require('fs').writeFileSync(process.argv[1], JSON.stringify({k: process.env.KEEP, o: process.env.OVERRIDE}))`,
        out,
      ),
      baseEnv: { PATH: process.env.PATH, KEEP: 'kept', OVERRIDE: 'from-base' },
    });
    expect(code).toBe(0);
    expect(readJson(out)).toEqual({ k: 'kept', o: 'from-secret' });
  });

  it('Should export SUMMON_ENV when an environment was chosen', async () => {
    const code = await run({
      specs: [],
      environment: 'production',
      command: node('process.exit(process.env.SUMMON_ENV === "production" ? 0 : 1)'),
    });
    expect(code).toBe(0);
  });

  it('Should apply a default when the value is empty', async () => {
    const out = join(work, 'env.json');
    const { fetchValues } = fakeFetcher({ 'db/user': '', 'db/host': 'real' });
    const code = await run({
      specs: [
        varSpec('USER', 'db/user', { defaultValue: 'admin' }),
        varSpec('HOST', 'db/host', { defaultValue: 'localhost' }),
        literal('MODE', '', { defaultValue: 'fast' }),
      ],
      command: node(
        `require('fs').writeFileSync(process.argv[1], JSON.stringify([process.env.USER, process.env.HOST, process.env.MODE]))`,
        out,
      ),
      fetchValues,
    });
    expect(code).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(['admin', 'real', 'fast']);
  });

  it('Should write file secrets with mode 0600 in a 0700 directory and remove them afterwards', async () => {
    const out = join(work, 'file.json');
    const binary = Buffer.from([0, 1, 2, 255, 10, 0]);
    const { fetchValues } = fakeFetcher({ 'certs/key': binary });
    const script = `
      const fs = require('fs'), path = require('path');
      const p = process.env.KEY_FILE, l = process.env.LIT_FILE;
      fs.writeFileSync(process.argv[1], JSON.stringify({
        p, l,
        content: fs.readFileSync(p).toString('hex'),
        literal: fs.readFileSync(l, 'utf8'),
        mode: (fs.statSync(p).mode & 0o777).toString(8),
        dirMode: (fs.statSync(path.dirname(p)).mode & 0o777).toString(8),
      }));`;
    const code = await run({
      specs: [varSpec('KEY_FILE', 'certs/key', { toFile: true }), literal('LIT_FILE', 'literal text', { toFile: true })],
      command: node(script, out),
      fetchValues,
    });
    expect(code).toBe(0);
    const seen = readJson(out);
    expect(seen.content).toBe(binary.toString('hex'));
    expect(seen.literal).toBe('literal text');
    expect(seen.mode).toBe('600');
    expect(seen.dirMode).toBe('700');
    expect(String(seen.p).startsWith(shm)).toBe(true);
    expect(existsSync(String(seen.p))).toBe(false);
    expect(existsSync(String(seen.l))).toBe(false);
    expect(readdirSync(shm)).toEqual([]);
  });

  it('Should replace @SUMMONENVFILE with a KEY=VALUE file of all secrets', async () => {
    const out = join(work, 'envfile.json');
    const { fetchValues } = fakeFetcher({ 'db/pw': 'notSoSecret', cert: '-----BEGIN-----\nDATA\n-----END-----' });
    const script = `
      const fs = require('fs');
      const arg = process.argv[2];
      const p = arg.slice('--env-file='.length);
      fs.writeFileSync(process.argv[1], JSON.stringify({
        arg, p, content: fs.readFileSync(p, 'utf8'), mode: (fs.statSync(p).mode & 0o777).toString(8),
        second: process.argv[3],
      }));`;
    const code = await run({
      specs: [varSpec('DB_PASSWORD', 'db/pw'), varSpec('CERTIFICATE', 'cert'), literal('A_LITERAL', 'x')],
      environment: 'prod',
      command: node(script, out, '--env-file=@SUMMONENVFILE', '@SUMMONENVFILE'),
      fetchValues,
    });
    expect(code).toBe(0);
    const seen = readJson(out);
    expect(seen.content).toBe(
      'A_LITERAL=x\nCERTIFICATE="-----BEGIN-----\\nDATA\\n-----END-----"\nDB_PASSWORD=notSoSecret\nSUMMON_ENV=prod\n',
    );
    expect(seen.mode).toBe('600');
    expect(seen.second).toBe(seen.p);
    expect(String(seen.p).startsWith(shm)).toBe(true);
    expect(existsSync(String(seen.p))).toBe(false);
  });
});

describe('formatEnvFile', () => {
  it('Should sort lines and quote only values that need it, Go style', () => {
    expect(formatEnvFile({ B: 'plain', A: 'with space', C: 'q"\\\t\x01' })).toBe(
      'A="with space"\nB=plain\nC="q\\"\\\\\\t\\x01"\n',
    );
  });
});

describe('runWithSecrets: exit codes', () => {
  it('Should pass the child exit code through', async () => {
    expect(await run({ specs: [], command: node('process.exit(3)') })).toBe(3);
    expect(await run({ specs: [], command: node('process.exit(0)') })).toBe(0);
  });

  it('Should map a signal death to 128+n', async () => {
    expect(await run({ specs: [], command: node('process.kill(process.pid, "SIGTERM")') })).toBe(143);
  });

  it('Should fail with 127 and one line when the command does not exist, still cleaning up', async () => {
    let cleaned = 0;
    const code = await run({
      specs: [literal('F', 'x', { toFile: true })],
      command: ['coffer-no-such-command-xyz', 'arg'],
      onCleanup: async () => {
        cleaned++;
      },
    });
    expect(code).toBe(127);
    expect(errors).toEqual(['coffer run: coffer-no-such-command-xyz: command not found\n']);
    expect(cleaned).toBe(1);
    expect(readdirSync(shm)).toEqual([]);
  });

  it('Should fail with 127 when no command is given', async () => {
    expect(await run({ specs: [], command: [] })).toBe(127);
    expect(errors).toEqual(['coffer run: no command given\n']);
  });

  it('Should reject a timeout that is not a positive number', async () => {
    expect(await run({ specs: [], command: node(''), timeoutMs: 0 })).toBe(127);
    expect(errors).toEqual(['coffer run: invalid timeout 0\n']);
  });

  it('Should reject a bad spec with 127', async () => {
    expect(await run({ specs: [literal('A=B', 'x')], command: node('') })).toBe(127);
    expect(errors[0]).toMatch(/^coffer run: invalid environment variable name/);
  });
});

describe('runWithSecrets: fetch failures and ignores', () => {
  function failingFetcher(message: string, variable?: string): FetchValues {
    return async () => {
      throw Object.assign(new Error(message), variable === undefined ? {} : { variable });
    };
  }

  it('Should print Summon\'s message with the env var name, exit 127 and still clean up', async () => {
    let cleaned = 0;
    const marker = join(work, 'ran');
    const code = await run({
      specs: [varSpec('DB_USER', 'db/user'), varSpec('DB_PASSWORD', 'db/password')],
      command: node('require("fs").writeFileSync(process.argv[1], "")', marker),
      fetchValues: failingFetcher('Variable db/password is empty or not found.', 'db/password'),
      onCleanup: async () => {
        cleaned++;
      },
    });
    expect(code).toBe(127);
    expect(errors).toEqual(['coffer run: Error fetching variable DB_PASSWORD: Variable db/password is empty or not found.\n']);
    expect(cleaned).toBe(1);
    expect(existsSync(marker)).toBe(false);
  });

  it('Should match a full account:variable:id in the error', async () => {
    await run({
      specs: [varSpec('A', 'a'), varSpec('B', 'b/c')],
      command: node(''),
      fetchValues: failingFetcher('Forbidden', 'myorg:variable:b/c'),
    });
    expect(errors).toEqual(['coffer run: Error fetching variable B: Forbidden\n']);
  });

  it('Should blame the only variable when the error names none', async () => {
    await run({ specs: [varSpec('ONLY', 'x')], command: node(''), fetchValues: failingFetcher('Unauthorized') });
    expect(errors).toEqual(['coffer run: Error fetching variable ONLY: Unauthorized\n']);
  });

  it('Should not invent a name when several variables could have failed', async () => {
    await run({
      specs: [varSpec('A', 'a'), varSpec('B', 'b')],
      command: node(''),
      fetchValues: failingFetcher('connect ECONNREFUSED'),
    });
    expect(errors).toEqual(['coffer run: Error fetching secrets: connect ECONNREFUSED\n']);
  });

  it('Should skip a missing variable ignored by env var name (-i)', async () => {
    const { fetchValues, calls } = fakeFetcher({ present: 'yes' });
    const code = await run({
      specs: [varSpec('HAVE', 'present'), varSpec('MISSING', 'absent')],
      ignore: new Set(['MISSING']),
      command: node('process.exit(process.env.HAVE === "yes" && !("MISSING" in process.env) ? 0 : 1)'),
      fetchValues,
    });
    expect(code).toBe(0);
    expect([...calls[0]!.hints.ignorable]).toEqual(['absent']);
  });

  it('Should also accept a variable path for -i', async () => {
    const { fetchValues } = fakeFetcher({});
    expect(await run({ specs: [varSpec('M', 'absent')], ignore: new Set(['absent']), command: node(''), fetchValues })).toBe(0);
  });

  it('Should skip every missing variable with -I', async () => {
    const { fetchValues, calls } = fakeFetcher({});
    const code = await run({
      specs: [varSpec('A', 'a'), varSpec('B', 'b', { toFile: true })],
      ignoreAll: true,
      command: node('process.exit("A" in process.env || "B" in process.env ? 1 : 0)'),
      fetchValues,
    });
    expect(code).toBe(0);
    expect([...calls[0]!.hints.ignorable]).toEqual(['a', 'b']);
  });

  it('Should not mark a path ignorable when one of its users is not ignored', async () => {
    const { fetchValues, calls } = fakeFetcher({});
    const code = await run({
      specs: [varSpec('A', 'shared'), varSpec('B', 'shared')],
      ignore: new Set(['A']),
      command: node(''),
      fetchValues,
    });
    expect(code).toBe(127);
    expect(calls[0]!.hints.ignorable.size).toBe(0);
    expect(errors).toEqual(['coffer run: Error fetching variable B: no value was returned\n']);
  });
});

describe('runWithSecrets: signals and timeouts', () => {
  it('Should forward signals to the child while it runs, then stop listening', async () => {
    const signals = new EventEmitter();
    const ready = join(work, 'ready');
    const marker = join(work, 'marker');
    const script = `
      const fs = require('fs');
      process.on('SIGTERM', () => { fs.writeFileSync(process.argv[2], 'got TERM'); process.exit(42); });
      process.on('SIGUSR2', () => fs.writeFileSync(process.argv[2] + '.usr2', 'got USR2'));
      fs.writeFileSync(process.argv[1], '');
      setInterval(() => {}, 1000);`;
    const running = run({ specs: [], command: node(script, ready, marker), signalSource: signals });
    await waitFor(ready);
    expect(signals.listenerCount('SIGINT')).toBe(1);
    signals.emit('SIGUSR2');
    await waitFor(`${marker}.usr2`);
    signals.emit('SIGTERM');
    expect(await running).toBe(42);
    expect(readFileSync(marker, 'utf8')).toBe('got TERM');
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2']) {
      expect(signals.listenerCount(sig)).toBe(0);
    }
  });

  it('Should exit 128+n when a forwarded signal kills the child', async () => {
    const signals = new EventEmitter();
    const ready = join(work, 'ready');
    const running = run({
      specs: [],
      command: node('require("fs").writeFileSync(process.argv[1], ""); setInterval(() => {}, 1000)', ready),
      signalSource: signals,
    });
    await waitFor(ready);
    signals.emit('SIGINT');
    expect(await running).toBe(130);
  });

  it('Should kill the child on timeout and exit 124, cleaning up', async () => {
    const pidFile = join(work, 'pid');
    let cleaned = 0;
    const code = await run({
      specs: [literal('F', 'x', { toFile: true })],
      command: node('require("fs").writeFileSync(process.argv[1], String(process.pid)); setInterval(() => {}, 1000)', pidFile),
      timeoutMs: 500,
      killGraceMs: 200,
      onCleanup: async () => {
        cleaned++;
      },
    });
    expect(code).toBe(124);
    expect(alive(Number(readFileSync(pidFile, 'utf8')))).toBe(false);
    expect(cleaned).toBe(1);
    expect(readdirSync(shm)).toEqual([]);
    expect(errors.join('')).toMatch(/timed out after 500 ms/);
  });

  it('Should SIGKILL a child that ignores SIGTERM after the grace period', async () => {
    const ready = join(work, 'ready');
    const started = Date.now();
    const code = await run({
      specs: [],
      command: node(
        'process.on("SIGTERM", () => {}); require("fs").writeFileSync(process.argv[1], ""); setInterval(() => {}, 1000)',
        ready,
      ),
      timeoutMs: 500,
      killGraceMs: 300,
    });
    expect(code).toBe(124);
    expect(existsSync(ready)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
  });

  it('Should kill the whole process group on timeout, grandchildren included', async () => {
    const pidFile = join(work, 'grandchild');
    const script = `
      const { spawn } = require('child_process');
      const g = spawn(process.execPath, ['-e', 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000)'], { stdio: 'ignore' });
      require('fs').writeFileSync(process.argv[1], String(g.pid));
      setInterval(() => {}, 1000);`;
    const code = await run({ specs: [], command: node(script, pidFile), timeoutMs: 700, killGraceMs: 300 });
    expect(code).toBe(124);
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    const deadline = Date.now() + 3000;
    while (alive(grandchild) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(alive(grandchild)).toBe(false);
  });
});

describe('runWithSecrets: secrecy', () => {
  it('Should never put a secret value in the child argv', async () => {
    const out = join(work, 'cmdline.json');
    const { fetchValues } = fakeFetcher({ secret: CANARY });
    const script = `
      const fs = require('fs');
      fs.writeFileSync(process.argv[1], JSON.stringify({
        cmdline: fs.readFileSync('/proc/self/cmdline', 'utf8'),
        parent: fs.readFileSync('/proc/' + process.ppid + '/cmdline', 'utf8'),
        env: process.env.TOKEN,
        fileValue: fs.readFileSync(process.env.TOKEN_FILE, 'utf8'),
      }));`;
    const code = await run({
      specs: [varSpec('TOKEN', 'secret'), varSpec('TOKEN_FILE', 'secret', { toFile: true })],
      command: node(script, out, '@SUMMONENVFILE'),
      fetchValues,
    });
    expect(code).toBe(0);
    const seen = readJson(out);
    expect(seen.env).toBe(CANARY);
    expect(seen.fileValue).toBe(CANARY);
    expect(String(seen.cmdline)).not.toContain(CANARY);
    expect(String(seen.parent)).not.toContain(CANARY);
    expect(errors.join('')).not.toContain(CANARY);
  });

  it('Should keep a fetched value out of stderr even when a cleanup hook echoes it', async () => {
    const { fetchValues } = fakeFetcher({ secret: CANARY });
    const code = await run({
      specs: [varSpec('TOKEN', 'secret')],
      command: node('process.exit(5)'),
      fetchValues,
      onCleanup: async () => {
        throw new Error(`revoke failed for ${CANARY}`);
      },
    });
    expect(code).toBe(5);
    expect(errors).toEqual(['coffer run: revoke failed for [redacted]\n']);
  });

  it('Should refuse a NUL byte in an environment value without showing it', async () => {
    const { fetchValues } = fakeFetcher({ bin: Buffer.from(`${CANARY}\0tail`) });
    const code = await run({ specs: [varSpec('BIN', 'bin')], command: node(''), fetchValues });
    expect(code).toBe(127);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^coffer run: the value of BIN contains a NUL byte/);
    expect(errors[0]).not.toContain(CANARY);
  });
});

describe('runWithSecrets: wiping files', () => {
  it('Should overwrite a secret file with zeros before removing it', async () => {
    // A hard link made by the child keeps the inode readable after the unlink.
    const link = join(work, 'link');
    const { fetchValues } = fakeFetcher({ key: CANARY });
    const code = await run({
      specs: [varSpec('KEY', 'key', { toFile: true })],
      command: node('require("fs").linkSync(process.env.KEY, process.argv[1])', link),
      fetchValues,
    });
    expect(code).toBe(0);
    expect(readFileSync(link)).toEqual(Buffer.alloc(CANARY.length));
  });

  it('Should not follow a symlink the child put in place of a secret file', async () => {
    const victim = join(work, 'victim');
    const script = `
      const fs = require('fs');
      fs.writeFileSync(process.argv[1], 'keep me');
      fs.unlinkSync(process.env.F);
      fs.symlinkSync(process.argv[1], process.env.F);`;
    const code = await run({ specs: [literal('F', 'x', { toFile: true })], command: node(script, victim) });
    expect(code).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('keep me');
    expect(readdirSync(shm)).toEqual([]);
  });
});

describe('runWithSecrets: temporary directory', () => {
  it('Should default to /dev/shm when it is usable', async () => {
    let usable = false;
    try {
      readdirSync('/dev/shm');
      usable = true;
    } catch {
      usable = false;
    }
    const out = join(work, 'where');
    const code = await runWithSecrets({
      specs: [literal('F', 'x', { toFile: true })],
      command: node('require("fs").writeFileSync(process.argv[1], process.env.F)', out),
      fetchValues: fakeFetcher({}).fetchValues,
      stderr: { write: (s: string) => errors.push(s) },
      baseEnv: { PATH: process.env.PATH },
    });
    expect(code).toBe(0);
    const path = readFileSync(out, 'utf8');
    if (usable) {
      expect(path.startsWith('/dev/shm/coffer-run-')).toBe(true);
      expect(errors).toEqual([]);
    } else {
      expect(errors[0]).toMatch(/warning: \/dev\/shm is not usable/);
    }
    expect(existsSync(path)).toBe(false);
  });

  it('Should remove the workspaces of SIGKILLed runners of this pid namespace, and nothing else', async () => {
    const ns = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1]!;
    // A pid that is surely not running: a child that has exited.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const make = (name: string) => {
      mkdirSync(join(shm, name));
      writeFileSync(join(shm, name, 'secret-0'), CANARY, { mode: 0o600 });
      return join(shm, name);
    };
    const abandoned = make(`coffer-run-${ns}-${dead}-AbC123`);
    const live = make(`coffer-run-${ns}-${process.ppid}-XyZ789`);
    const otherNamespace = make(`coffer-run-1-${dead}-QwE456`);
    const unrelated = make('not-coffer');
    const code = await run({ specs: [literal('F', 'x', { toFile: true })], command: node('0') });
    expect(code).toBe(0);
    expect(existsSync(abandoned)).toBe(false);
    for (const kept of [live, otherNamespace, unrelated]) expect(readFileSync(join(kept, 'secret-0'), 'utf8')).toBe(CANARY);
    // And its own workspace is gone as usual.
    expect(readdirSync(shm).sort()).toEqual([live, otherNamespace, unrelated].map((d) => d.slice(shm.length + 1)).sort());
  });
});
