/**
 * src/store/postgres/read-batch.ts: reads asked for in one event-loop turn go out as one call over the distinct
 * keys, each caller gets its own answer, and nothing is held back past the turn.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { expect, it } from 'vitest';
import { createReadBatch } from '../../src/store/postgres/read-batch.js';

function recorder() {
  const calls: string[][] = [];
  const state: { fail?: Error } = {};
  const batch = createReadBatch<string, string>(async (keys) => {
    calls.push(keys);
    if (state.fail) throw state.fail;
    return new Map(keys.filter((k) => !k.startsWith('missing')).map((k) => [k, `row of ${k}`]));
  }, 3);
  return { calls, batch, state };
}

it('answers every read of one turn from one call over the distinct keys, each to its caller', async () => {
  const { calls, batch } = recorder();
  const answers = await Promise.all(['a', 'b', 'a', 'missing-1'].map((k) => batch(k)));
  expect(answers).toEqual(['row of a', 'row of b', 'row of a', undefined]);
  expect(calls).toEqual([['a', 'b', 'missing-1']]);
});

it('reads of a later turn go out in a call of their own, after the earlier one', async () => {
  const { calls, batch } = recorder();
  const first = batch('a');
  await nextTurn();
  const second = batch('b');
  expect(await Promise.all([first, second])).toEqual(['row of a', 'row of b']);
  expect(calls).toEqual([['a'], ['b']]);
});

it('splits a large turn into calls of at most maxKeys keys', async () => {
  const { calls, batch } = recorder();
  const keys = ['k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7'];
  expect(await Promise.all(keys.map((k) => batch(k)))).toEqual(keys.map((k) => `row of ${k}`));
  expect(calls).toEqual([['k1', 'k2', 'k3'], ['k4', 'k5', 'k6'], ['k7']]);
});

it('a failed call rejects every caller of its keys with its error, and the next turn starts afresh', async () => {
  const boom = new Error('the database did not answer');
  const { calls, batch, state } = recorder();
  state.fail = boom;
  const results = await Promise.allSettled(['a', 'b', 'a'].map((k) => batch(k)));
  expect(results.map((r) => (r.status === 'rejected' ? r.reason : r.value))).toEqual([boom, boom, boom]);
  state.fail = undefined;
  expect(await batch('c')).toBe('row of c');
  expect(calls).toEqual([['a', 'b'], ['c']]);
});
