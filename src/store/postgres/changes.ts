/**
 * The change feed on PostgreSQL (migration postgres/0002): LISTEN on
 * `coffer_changes`, plus a poll of `change_generations` every POLL_MS that
 * reloads a topic in full when its generation moved past the last one a
 * notification announced — a notification lost while the listening
 * connection was down, say. Listening (again, after a reconnection) also
 * polls at once.
 */
import type { ChangeFeed, StoreChange } from '../types.js';
import type { PgSql } from './client.js';

export const CHANGE_POLL_MS = 500;

const FULL: Record<string, StoreChange> = { graph: { topic: 'graph' }, tokens: { topic: 'tokens' }, keyring: { topic: 'keyring' } };

/** A notification's payload as a change and the generation it carries (see the migration), or undefined if malformed. */
export function parseChange(payload: string): { topic: string; generation: number; change: StoreChange } | undefined {
  const m = /^(graph|keyring|revoked|notbefore) (\d+)(?: (\d+) ([\s\S]+))?$/.exec(payload);
  if (!m) return undefined;
  const generation = Number(m[2]);
  switch (m[1]) {
    case 'graph':
    case 'keyring':
      return { topic: m[1], generation, change: FULL[m[1]]! };
    case 'revoked':
      return m[3] && m[4] ? { topic: 'tokens', generation, change: { topic: 'revoked', expiresAt: Number(m[3]), jti: m[4] } } : undefined;
    case 'notbefore':
      return m[3] && m[4] ? { topic: 'tokens', generation, change: { topic: 'notBefore', atMs: Number(m[3]), roleId: m[4] } } : undefined;
  }
  return undefined;
}

export function createPgChangeFeed(sql: PgSql, pollMs = CHANGE_POLL_MS): ChangeFeed & { close(): Promise<void> } {
  const listeners: ((c: StoreChange) => void)[] = [];
  /** The highest generation per topic this node knows it has seen. */
  const seen = new Map<string, number>();
  let started = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let unlisten: (() => Promise<void>) | undefined;
  let polling = false;

  const emit = (c: StoreChange) => {
    for (const fn of listeners) {
      try {
        fn(c);
      } catch {
        // A listener's failure must not stop the others; each reloads on its own next change.
      }
    }
  };

  const poll = async () => {
    if (polling || closed) return;
    polling = true;
    try {
      const rows = await sql<{ topic: string; generation: number }[]>`SELECT topic, generation FROM change_generations`;
      for (const r of rows) {
        const known = seen.get(r.topic);
        seen.set(r.topic, Math.max(known ?? 0, r.generation));
        // The first poll reloads too: a change may have landed between loading the caches and this poll.
        if (known === undefined || r.generation > known) emit(FULL[r.topic] ?? { topic: 'graph' });
      }
    } catch {
      // The database is unreachable: the caches cannot be stale against rows nobody can write; retry next tick.
    } finally {
      polling = false;
    }
  };

  const start = async () => {
    await poll();
    const listening = await sql.listen(
      'coffer_changes',
      (payload) => {
        const parsed = parseChange(payload);
        if (!parsed) return emit({ topic: 'graph' });
        seen.set(parsed.topic, Math.max(seen.get(parsed.topic) ?? 0, parsed.generation));
        emit(parsed.change);
      },
      () => void poll(),
    );
    unlisten = listening.unlisten;
    const tick = () => {
      if (closed) return;
      void poll().finally(() => {
        if (!closed) timer = setTimeout(tick, pollMs).unref();
      });
    };
    timer = setTimeout(tick, pollMs).unref();
  };

  return {
    subscribe(fn) {
      listeners.push(fn);
      if (!started) {
        started = true;
        const attempt = () => {
          if (!closed) start().catch(() => void setTimeout(attempt, pollMs).unref());
        };
        attempt();
      }
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await unlisten?.().catch(() => undefined);
    },
  };
}
