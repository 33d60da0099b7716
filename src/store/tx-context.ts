/**
 * Which transaction, if any, a store call belongs to: an AsyncLocalStorage that is switched off whenever no
 * transaction is open.
 *
 * On Node 20 and 22 an enabled AsyncLocalStorage runs a hook for every promise the process creates, and it stays
 * enabled from its first run() on: after a node's first transaction (a policy load, a secret written; on SQLite every
 * group commit), every request paid for the hooks. Switched off between transactions, one SQLite node process served
 * 1.05–1.15× the fetches of the previous build, ahead in every pair of two runs of five alternating pairs
 * (`npm run bench:ab`: 4,170 against 3,966 fetches/s, 233 against 246 µs of its CPU per fetch).
 *
 * The stores only ever ask whether the caller is inside an *open* transaction (`getStore()?.open`). Work a body
 * awaits settles before its run() does, so it always sees its context; only work a body started without awaiting
 * and that outlives it — after the last open transaction's body settled — sees none, the same answer its closed
 * context gives once the transaction has ended. Node 24 keeps contexts in frames instead, without promise hooks:
 * nothing to switch off, so there the storage stays on.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

const nodeFlags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
/** Whether this Node keeps AsyncLocalStorage contexts in frames (the default from Node 24) rather than with promise hooks. */
export const CONTEXT_FRAMES =
  nodeFlags.includes('--experimental-async-context-frame') ||
  (Number(process.versions.node.split('.')[0]) >= 24 && !nodeFlags.includes('--no-async-context-frame'));

export class TransactionContext<T extends { open: boolean }> {
  private readonly storage = new AsyncLocalStorage<T>();
  /** run() calls not yet settled, nested ones (savepoints) included. */
  private running = 0;

  getStore(): T | undefined {
    return this.storage.getStore();
  }

  /** Runs `fn` with `ctx` as the store of everything it calls and awaits. */
  async run<R>(ctx: T, fn: () => Promise<R>): Promise<R> {
    this.running++;
    try {
      return await this.storage.run(ctx, fn);
    } finally {
      if (--this.running === 0 && !CONTEXT_FRAMES) this.storage.disable();
    }
  }
}
