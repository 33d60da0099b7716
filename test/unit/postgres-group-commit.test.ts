/**
 * The PostgreSQL group commit (AuditStore.appendChained, src/store/postgres/index.ts), measured on the wire: a TCP
 * proxy between the store and PostgreSQL reads the protocol and counts round trips (a request sent when nothing
 * was left to answer).
 * A batch on the head this node wrote last is one round trip; when another writer moved the head nothing is written
 * on the stale one and the batch is built again on the real head; a failed batch hands back no connection left
 * inside a transaction. The chain verifies throughout.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { chainHash, GENESIS_HASH, verifyChain, type UnhashedRow } from '../../src/audit/chain.js';
import type { AuditRow } from '../../src/store/audit.js';
import { createPostgresClient, type PgSql } from '../../src/store/postgres/client.js';
import { createPostgresStore, type PostgresStore } from '../../src/store/postgres/index.js';
import { migratePostgres } from '../../src/store/postgres/migrate.js';
import type { AuditHead } from '../../src/store/types.js';
import { describePostgres, startCluster, type PgCluster } from '../helpers/postgres.js';

/**
 * A reader of PostgreSQL protocol messages from a byte stream cut anywhere: calls `on(type)` per message.
 * `untyped` skips the client's startup message, the one message without a type byte.
 */
function messageReader(on: (type: string) => void, untyped: boolean): (chunk: Buffer) => void {
  let buf = Buffer.alloc(0);
  let startup = untyped;
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (startup) {
        if (buf.length < 4) return;
        const len = buf.readInt32BE(0);
        if (buf.length < len) return;
        buf = buf.subarray(len);
        startup = false;
        continue;
      }
      if (buf.length < 5) return;
      const len = buf.readInt32BE(1);
      if (buf.length < 1 + len) return;
      on(String.fromCharCode(buf[0]!));
      buf = buf.subarray(1 + len);
    }
  };
}

const ANSWER_DELAY_MS = 40;

/**
 * Forwards to PostgreSQL and counts round trips as the protocol defines them: a client message sent while
 * every request it made before has been answered (each Sync or simple Query is answered by one ReadyForQuery)
 * starts a new round trip; messages sent while answers are still due ride in the same one (pipelining).
 */
class CountingProxy {
  flights = 0;
  private outstanding = 0;
  private readonly sockets = new Set<Socket>();
  private constructor(private readonly server: Server) {}

  static async start(target: number): Promise<CountingProxy> {
    const server = createServer();
    const proxy = new CountingProxy(server);
    server.on('connection', (client) => {
      const upstream = connect(target, '127.0.0.1');
      for (const s of [client, upstream]) {
        proxy.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      let sending = false;
      const fromClient = messageReader((type) => {
        if (proxy.outstanding === 0 && !sending) proxy.flights++;
        sending = true;
        if (type === 'S' || type === 'Q') proxy.outstanding++;
      }, true);
      const fromServer = messageReader((type) => {
        sending = false;
        if (type === 'Z') proxy.outstanding = Math.max(0, proxy.outstanding - 1);
      }, false);
      client.on('data', (d) => {
        fromClient(d);
        upstream.write(d);
      });
      // Answers reach the client ANSWER_DELAY_MS late: a request that waits for one is sent after it arrives, while
      // one the driver merely writes in a later turn of the event loop (it is not waiting) is sent long before.
      upstream.on('data', (d) => {
        setTimeout(() => {
          fromServer(d);
          client.write(d);
        }, ANSWER_DELAY_MS);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  /** Round trips made by `work`. */
  async count(work: () => Promise<unknown>): Promise<number> {
    const before = this.flights;
    await work();
    return this.flights - before;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const event = (n: number): Omit<UnhashedRow, 'seq'> => ({
  time: '2030-01-01T00:00:00.000Z', account: 'a', action: 'fetch', operation: 'fetch', result: 'success', role_id: 'a:host:h',
  resource_id: `a:variable:v${n}`, version: null, client_ip: '::1', request_id: null, user_agent: null, reason: null, message: `event ${n}`, details: null,
});

/** A chain builder as the audit log's, counting its calls and the heads it was given. */
function builder(events: number[]) {
  const heads: (AuditHead | undefined)[] = [];
  const chain = (head: AuditHead | undefined): AuditRow[] => {
    heads.push(head);
    let seq = head?.seq ?? 0;
    let prev = head?.hash ?? GENESIS_HASH;
    return events.map((n) => {
      const base: UnhashedRow = { seq: ++seq, ...event(n) };
      const hash = chainHash(prev, base);
      const row = { ...base, prev_hash: prev, hash };
      prev = hash;
      return row;
    });
  };
  return { chain, heads };
}

const headOf = (rows: AuditRow[]): AuditHead => ({ seq: rows.at(-1)!.seq, hash: rows.at(-1)!.hash });

describePostgres('PostgreSQL group commit', () => {
  let cluster: PgCluster;
  let proxy: CountingProxy;
  let direct: PgSql;
  let node: PostgresStore;
  let other: PostgresStore;

  beforeAll(async () => {
    cluster = await startCluster();
    const url = await cluster.createDatabase('gc');
    direct = createPostgresClient(url, { max: 2 });
    await migratePostgres(direct);
    proxy = await CountingProxy.start(Number(new URL(url).port));
    const viaProxy = new URL(url);
    viaProxy.port = String(proxy.port);
    // One connection: every statement of the node crosses the proxy on it.
    node = createPostgresStore(createPostgresClient(viaProxy.toString(), { max: 1 }));
    other = createPostgresStore(createPostgresClient(url, { max: 2 }));
  });
  afterAll(async () => {
    await node?.close();
    await other?.close();
    await direct?.end({ timeout: 1 });
    await proxy?.close();
    await cluster?.stop();
  });

  const all = async () => node.audit.page(0, 10_000);

  it('is one round trip on the head this node wrote last, two without one, and the chain links', async () => {
    // Warm up: the connection is opened, and each statement is prepared (described) once per connection.
    let written = await node.audit.appendChained(builder([1, 2]).chain);
    let head = headOf(written);
    written = await node.audit.appendChained(builder([3]).chain, head);
    head = headOf(written);

    const b = builder([4, 5, 6]);
    expect(await proxy.count(async () => (written = await node.audit.appendChained(b.chain, head)))).toBe(1);
    expect(b.heads).toEqual([head]); // built once, on the expected head, which was not read
    expect(written.map((r) => r.seq)).toEqual([head.seq + 1, head.seq + 2, head.seq + 3]);
    head = headOf(written);

    const c = builder([7]);
    expect(await proxy.count(() => node.audit.appendChained(c.chain))).toBe(2); // no expected head: [BEGIN, lock, head], [insert, COMMIT]
    expect(c.heads).toEqual([head]);
    const rows = await all();
    expect(rows).toHaveLength(7);
    expect(verifyChain(rows)).toMatchObject({ ok: true });
  });

  it('writes nothing on a head another writer moved: builds again on the real one, then stays at two round trips until the head is its own again', async () => {
    let mine = headOf(await all());
    // Another node appends.
    const theirs = await other.audit.appendChained(builder([100, 101]).chain, mine);
    const realHead = headOf(theirs);

    const b = builder([8, 9]);
    let written: AuditRow[] = [];
    expect(await proxy.count(async () => (written = await node.audit.appendChained(b.chain, mine)))).toBe(3); // the try, then two
    expect(b.heads).toEqual([mine, realHead]);
    expect(written[0]!.seq).toBe(realHead.seq + 1);
    expect(written[0]!.prev_hash).toEqual(realHead.hash);
    mine = headOf(written);

    // Contended: the next batch reads the head first (two round trips), finds its own, and goes back to one.
    expect(await proxy.count(async () => (written = await node.audit.appendChained(builder([10]).chain, mine)))).toBe(2);
    mine = headOf(written);
    expect(await proxy.count(async () => (written = await node.audit.appendChained(builder([11]).chain, mine)))).toBe(1);

    const rows = await all();
    expect(rows.map((r) => r.message).slice(-6)).toEqual(['event 100', 'event 101', 'event 8', 'event 9', 'event 10', 'event 11']);
    expect(verifyChain(rows)).toMatchObject({ ok: true });
  });

  it('a head with the right sequence number but another hash is not the head: nothing is written on it', async () => {
    const real = headOf(await all());
    const forged: AuditHead = { seq: real.seq, hash: Buffer.alloc(32, 7) };
    const b = builder([12]);
    const written = await node.audit.appendChained(b.chain, forged);
    expect(b.heads).toEqual([forged, real]);
    expect(written[0]!.prev_hash).toEqual(real.hash);
    const rows = await all();
    expect(rows.filter((r) => r.prev_hash.equals(forged.hash))).toEqual([]);
    expect(verifyChain(rows)).toMatchObject({ ok: true });
  });

  it('a failed batch is refused whole and leaves no connection inside a transaction', async () => {
    const before = await all();
    const head = headOf(before);
    // Rows that collide with stored ones (seq 1 again) on both paths: the optimistic one and the one that reads the head.
    const bad = () => builder([13, 14]).chain(undefined);
    await expect(node.audit.appendChained(() => bad(), head)).rejects.toThrow(/duplicate key|audit_events/);
    await expect(node.audit.appendChained(() => bad())).rejects.toThrow(/duplicate key|audit_events/);
    // The pool's one connection is back outside any transaction: a statement on it commits on its own.
    await node.audit.head();
    const stuck = await direct<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'`;
    expect(stuck[0]!.n).toBe(0);
    expect(await all()).toEqual(before);
    // And the next batch is written.
    const ok = await node.audit.appendChained(builder([15]).chain, head);
    expect(ok[0]!.seq).toBe(head.seq + 1);
    expect(verifyChain(await all())).toMatchObject({ ok: true });
  });

  it('two stores appending at once keep one chain, every batch written once', async () => {
    const heads = { a: headOf(await all()), b: headOf(await all()) };
    const batches = 40;
    await Promise.all(
      (['a', 'b'] as const).map(async (who) => {
        const store = who === 'a' ? node : other;
        for (let i = 0; i < batches; i++) {
          const written = await store.audit.appendChained(builder([1000 * (who === 'a' ? 1 : 2) + i]).chain, heads[who]);
          heads[who] = headOf(written);
        }
      }),
    );
    const rows = await all();
    const messages = rows.map((r) => r.message);
    for (let i = 0; i < batches; i++) {
      expect(messages.filter((m) => m === `event ${1000 + i}`)).toHaveLength(1);
      expect(messages.filter((m) => m === `event ${2000 + i}`)).toHaveLength(1);
    }
    expect(verifyChain(rows)).toMatchObject({ ok: true });
  });
});
