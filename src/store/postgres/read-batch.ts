/**
 * Coalesces point reads made in one event-loop turn into one statement.
 *
 * Under load a node answers many fetches per turn, and each read its own statement: on PostgreSQL that is a
 * protocol message, a socket write (a system call; a fifth of a node's CPU in a profile of audited fetches) and a
 * statement for the database to plan and run, for one small row. Reads asked for in the same turn go out together
 * when the turn ends (setImmediate), as one statement over every distinct key, and each caller gets its own row.
 *
 * Consistency is that of separate reads: the statement is sent after every caller asked, so it sees every commit
 * that finished before any of them did. Only reads outside a transaction are batched — a transaction's reads must
 * run on its own connection (the caller decides).
 */
export type ReadBatch<K, V> = (key: K) => Promise<V | undefined>;

/** The callers waiting for each key of one turn. */
type Waiting<K, V> = Map<K, { resolve: (v: V | undefined) => void; reject: (err: unknown) => void }[]>;

export function createReadBatch<K, V>(readMany: (keys: K[]) => Promise<Map<K, V>>, maxKeys = 500): ReadBatch<K, V> {
  let pending: Waiting<K, V> | undefined;

  const flush = (batch: Waiting<K, V>): void => {
    const keys = [...batch.keys()];
    for (let i = 0; i < keys.length; i += maxKeys) {
      const slice = keys.slice(i, i + maxKeys);
      readMany(slice).then(
        (rows) => {
          for (const key of slice) for (const waiter of batch.get(key)!) waiter.resolve(rows.get(key));
        },
        (err: unknown) => {
          for (const key of slice) for (const waiter of batch.get(key)!) waiter.reject(err);
        },
      );
    }
  };

  return (key) =>
    new Promise<V | undefined>((resolve, reject) => {
      if (!pending) {
        const batch: Waiting<K, V> = new Map();
        pending = batch;
        setImmediate(() => {
          pending = undefined;
          flush(batch);
        });
      }
      const waiters = pending.get(key);
      if (waiters) waiters.push({ resolve, reject });
      else pending.set(key, [{ resolve, reject }]);
    });
}
