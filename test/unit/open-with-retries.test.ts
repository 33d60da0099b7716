/**
 * Starting on PostgreSQL (issue 10): an unreachable database is retried with
 * backoff; an attempt that never settles (a driver stuck after connecting) is
 * given up after the open deadline and retried, and what it opens if it ever
 * finishes is closed, not leaked.
 */
import { describe, expect, it } from 'vitest';
import { openWithRetries, type Vault } from '../../src/server.js';
import { DatabaseUnavailableError } from '../../src/store/postgres/index.js';

const fast = { retry: { first: 5, max: 20 }, deadlineMs: 50 };

function fakeVault(name: string, closed: string[]): Vault {
  return { services: {} as Vault['services'], close: async () => void closed.push(name) };
}

describe('openWithRetries', () => {
  it('gives up an attempt that never settles, retries, and closes the first vault when it finishes late', async () => {
    const closed: string[] = [];
    const log: string[] = [];
    let finishFirst!: (v: Vault) => void;
    const attempts = [
      new Promise<Vault>((r) => (finishFirst = r)),
      Promise.resolve(fakeVault('second', closed)),
    ];
    const opened = await openWithRetries(() => attempts.shift()!, (l) => log.push(l), fast);
    expect(opened.close).toBeDefined();
    expect(log).toEqual(['coffer: the database is unreachable (opening it did not finish within 0 s); retrying in 0 s']);
    expect(attempts).toHaveLength(0);
    finishFirst(fakeVault('first', closed));
    await new Promise((r) => setImmediate(r));
    expect(closed).toEqual(['first']);
    await opened.close();
    expect(closed).toEqual(['first', 'second']);
  });

  it('retries an unreachable database, and fails at once on anything else', async () => {
    const log: string[] = [];
    const attempts: (() => Promise<Vault>)[] = [
      () => Promise.reject(new DatabaseUnavailableError('connect ECONNREFUSED 127.0.0.1:1')),
      () => Promise.reject(new Error('password authentication failed for user "coffer"')),
    ];
    await expect(openWithRetries(() => attempts.shift()!(), (l) => log.push(l), fast)).rejects.toThrow('password authentication failed');
    expect(log).toHaveLength(1);
    expect(log[0]).toMatch(/unreachable \(connect ECONNREFUSED 127.0.0.1:1\); retrying/);
  });

  it('tells an attempt it was given up (its signal aborted, so it closes its connections); the next attempt is not', async () => {
    const log: string[] = [];
    const signals: AbortSignal[] = [];
    let failFirst!: (e: Error) => void;
    const attempts = [new Promise<Vault>((_, reject) => (failFirst = reject)), Promise.resolve(fakeVault('second', []))];
    await openWithRetries(
      (signal) => {
        signals.push(signal);
        return attempts.shift()!;
      },
      (l) => log.push(l),
      fast,
    );
    expect(signals.map((s) => s.aborted)).toEqual([true, false]);
    // Its failure afterwards (what closing its connections causes) is neither logged again nor left unhandled.
    failFirst(new Error('write CONNECTION_ENDED'));
    await new Promise((r) => setImmediate(r));
    expect(log).toHaveLength(1);
  });
});
