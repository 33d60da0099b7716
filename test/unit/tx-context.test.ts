import { describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONTEXT_FRAMES, TransactionContext } from '../../src/store/tx-context.js';

/** Where contexts live in frames (Node 24), left-over work keeps its frame's context: nothing is switched off. */
const leftoverSees = (name: string) => (CONTEXT_FRAMES ? name : undefined);

type Ctx = { open: boolean; name: string };

describe('TransactionContext', () => {
  it('is told which implementation this Node has', () => {
    const major = Number(process.versions.node.split('.')[0]);
    if (major < 22) expect(CONTEXT_FRAMES).toBe(false);
    if (major >= 24 && !process.execArgv.includes('--no-async-context-frame')) expect(CONTEXT_FRAMES).toBe(true);
  });

  it('gives run()’s context to everything the body calls and awaits, and none outside', async () => {
    const context = new TransactionContext<Ctx>();
    const tx = { open: true, name: 'tx' };
    expect(context.getStore()).toBeUndefined();
    const seen = await context.run(tx, async () => {
      const before = context.getStore();
      await sleep(1);
      const nested = await context.run({ open: true, name: 'savepoint' }, async () => (await sleep(1), context.getStore()?.name));
      return [before?.name, context.getStore()?.name, nested];
    });
    expect(seen).toEqual(['tx', 'tx', 'savepoint']);
    expect(context.getStore()).toBeUndefined();
  });

  it('switches the storage off when the last open run ends, not before', async () => {
    const context = new TransactionContext<Ctx>();
    let releaseFirst!: () => void;
    const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
    let secondSawAfterFirstEnded: string | undefined;
    // Work the first body left running: it continues after its run() has settled.
    let leftover!: Promise<string | undefined>;
    const first = context.run({ open: true, name: 'first' }, async () => {
      leftover = sleep(30).then(() => context.getStore()?.name);
      await firstHeld;
    });
    const second = context.run({ open: true, name: 'second' }, async () => {
      await first;
      await sleep(1);
      secondSawAfterFirstEnded = context.getStore()?.name;
    });
    releaseFirst();
    await Promise.all([first, second]);
    // The second run was still open when the first ended: it kept its context.
    expect(secondSawAfterFirstEnded).toBe('second');
    // Both ended: the storage is off, so the first body's leftover work no longer sees a context (a closed one
    // would be the same answer to `getStore()?.open`), and the process's promises no longer pay for its hooks.
    expect(await leftover).toBe(leftoverSees('first'));
    // A later run switches it on again.
    expect(await context.run({ open: true, name: 'again' }, async () => (await sleep(1), context.getStore()?.name))).toBe('again');
  });

  it('counts a body that throws as ended', async () => {
    const context = new TransactionContext<Ctx>();
    let leftover!: Promise<string | undefined>;
    await expect(
      context.run({ open: true, name: 'failing' }, async () => {
        leftover = sleep(20).then(() => context.getStore()?.name);
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect(await leftover).toBe(leftoverSees('failing'));
  });
});
