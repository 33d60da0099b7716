/**
 * Transactions after the transaction context has been switched off (src/store/tx-context.ts): overlapping
 * transactions with savepoints and rollbacks, and reads from outside between them, on both backends. A call inside
 * an open transaction that lost its context would run outside it — on PostgreSQL on the pool, where it does not see
 * the transaction's own writes; on SQLite queued behind the transaction it belongs to, which never ends.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import type { Store } from '../../src/store/types.js';
import { tempDir } from '../helpers/tmp.js';
import { describePostgres, startCluster, type PgCluster } from '../helpers/postgres.js';

async function overlappingTransactions(store: Store): Promise<string[]> {
  const failures: string[] = [];
  // One transaction first, so every later one starts with the context switched off and switches it on.
  await store.tx(async () => void (await store.accounts.insert('first')));
  const heldOpen = sleep(40);
  const transaction = async (i: number) => {
    await sleep((i * 17) % 120);
    const name = `acct${i}`;
    await store.tx(async () => {
      if (!store.inTransaction()) failures.push(`${i}: not in its transaction`);
      await store.accounts.insert(name);
      if (i % 3 === 0) await heldOpen; // a promise made outside, maybe while the context was off
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (!(await store.accounts.exists(name))) failures.push(`${i}: its own write is invisible`);
      if (i % 2 === 0) {
        await store.tx(async () => {
          await sleep(1);
          await store.accounts.insert(`${name}sp`);
          if (!store.inTransaction() || !(await store.accounts.exists(`${name}sp`))) failures.push(`${i}: savepoint`);
        });
      }
      if (i % 5 === 0) {
        await store
          .tx(async () => {
            await store.accounts.insert(`${name}rb`);
            throw new Error('rolled back');
          })
          .catch(() => undefined);
        if (await store.accounts.exists(`${name}rb`)) failures.push(`${i}: a rolled-back savepoint's write is visible`);
      }
      const both = await Promise.all([store.accounts.exists(name), sleep(1).then(() => store.accounts.exists(name))]);
      if (!both.every(Boolean)) failures.push(`${i}: parallel calls left the transaction`);
      if (!store.inTransaction()) failures.push(`${i}: left its transaction before the end`);
    });
  };
  const outside = (async () => {
    for (let i = 0; i < 60; i++) {
      await store.accounts.exists('first');
      if (store.inTransaction()) failures.push('a call outside saw a transaction');
      await sleep(2);
    }
  })();
  await Promise.all([...Array.from({ length: 24 }, (_, i) => transaction(i)), outside]);
  for (let i = 0; i < 24; i++) {
    if (!(await store.accounts.exists(`acct${i}`))) failures.push(`${i}: not committed`);
    if (i % 2 === 0 && !(await store.accounts.exists(`acct${i}sp`))) failures.push(`${i}: savepoint not committed`);
    if (i % 5 === 0 && (await store.accounts.exists(`acct${i}rb`))) failures.push(`${i}: rolled-back savepoint committed`);
  }
  if (store.inTransaction()) failures.push('still in a transaction at the end');
  return failures;
}

describe('SQLite store: transactions once the context has been switched off', () => {
  it('keeps every call of an open transaction in it, savepoints and rollbacks included, and no other', { timeout: 20_000 }, async () => {
    const store = openSqliteStore(join(tempDir('coffer-tx-'), 'c.db'));
    try {
      expect(await overlappingTransactions(store)).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describePostgres('PostgreSQL store: transactions once the context has been switched off', () => {
  let cluster: PgCluster;
  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('keeps every call of an open transaction on its connection, savepoints and rollbacks included, and no other', { timeout: 60_000 }, async () => {
    const store = await openPostgresStore(cluster.url, { max: 6 });
    try {
      expect(await overlappingTransactions(store)).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
