/** The runner's signal handling around the child: before it starts, in a shared process group, after it exits. */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runWithSecrets, type FetchValues, type RunOptions } from '../../src/cli/run/runner.js';

let work = '';
let shm = '';
let errors: string[] = [];

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'coffer-runner-signals-'));
  shm = join(work, 'shm');
  mkdirSync(shm);
  errors = [];
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

const node = (script: string, ...args: string[]): string[] => [process.execPath, '-e', script, ...args];

function run(opts: Partial<RunOptions> & Pick<RunOptions, 'specs' | 'command'>): Promise<number> {
  return runWithSecrets({
    fetchValues: async () => new Map(),
    stderr: { write: (s: string) => errors.push(s) },
    tmpRoot: shm,
    baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    ...opts,
  });
}

async function waitFor(path: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${path}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('runWithSecrets: a signal before the child starts', () => {
  it('Should not start the child, still clean up (files, token), and exit 128+n', async () => {
    const signals = new EventEmitter();
    const marker = join(work, 'started');
    let cleaned = 0;
    // The fetch is in flight when SIGTERM arrives; it completes, then the run stops.
    const fetchValues: FetchValues = async (paths) => {
      signals.emit('SIGTERM');
      await new Promise((r) => setTimeout(r, 50));
      return new Map(paths.map((p) => [p, Buffer.from('value-1234')]));
    };
    const code = await run({
      specs: [{ name: 'F', kind: 'var', value: 'x', toFile: true }],
      command: node('require("fs").writeFileSync(process.argv[1], "")', marker),
      fetchValues,
      signalSource: signals,
      onCleanup: async () => {
        cleaned++;
      },
    });
    expect(code).toBe(143);
    expect(existsSync(marker)).toBe(false);
    expect(cleaned).toBe(1);
    expect(readdirSync(shm)).toEqual([]);
    expect(errors).toEqual(['coffer run: interrupted by SIGTERM before the command started\n']);
    expect(signals.listenerCount('SIGTERM')).toBe(0);
  });

  it('Should keep listening until cleanup is done, so a signal during cleanup cannot cut it short', async () => {
    const signals = new EventEmitter();
    let listening = -1;
    const code = await run({
      specs: [],
      command: node('process.exit(0)'),
      signalSource: signals,
      onCleanup: async () => {
        listening = signals.listenerCount('SIGINT');
        signals.emit('SIGINT'); // ignored: the child is gone
      },
    });
    expect(code).toBe(0);
    expect(listening).toBe(1);
    expect(errors).toEqual([]);
  });
});

describe('runWithSecrets: a child sharing the runner\'s process group (interactive use)', () => {
  it('Should forward TERM but not INT or QUIT, which the terminal already delivers to the whole group', async () => {
    const signals = new EventEmitter();
    const ready = join(work, 'ready');
    const log = join(work, 'log');
    const script = `
      const fs = require('fs');
      for (const s of ['SIGINT', 'SIGQUIT', 'SIGUSR1']) process.on(s, () => fs.appendFileSync(process.argv[2], s + '\\n'));
      process.on('SIGTERM', () => { fs.appendFileSync(process.argv[2], 'SIGTERM\\n'); process.exit(3); });
      fs.writeFileSync(process.argv[1], '');
      setInterval(() => {}, 1000);`;
    const running = run({ specs: [], command: node(script, ready, log), signalSource: signals, detached: false });
    await waitFor(ready);
    signals.emit('SIGINT');
    signals.emit('SIGQUIT');
    signals.emit('SIGUSR1');
    await waitFor(log);
    signals.emit('SIGTERM');
    expect(await running).toBe(3);
    expect(readFileSync(log, 'utf8')).toBe('SIGUSR1\nSIGTERM\n');
  });

  it('Should still stop before the child starts when INT arrives during the fetch', async () => {
    const signals = new EventEmitter();
    const code = await run({
      specs: [{ name: 'A', kind: 'var', value: 'x', toFile: false }],
      command: node('process.exit(0)'),
      fetchValues: async () => {
        signals.emit('SIGINT');
        return new Map([['x', Buffer.from('v')]]);
      },
      signalSource: signals,
      detached: false,
    });
    expect(code).toBe(130);
  });
});
