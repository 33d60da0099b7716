/**
 * The PostgreSQL group commit (AuditStore.appendChained, src/store/postgres/index.ts), measured on the wire: a TCP
 * proxy between the store and PostgreSQL reads the protocol and counts round trips (a request sent when nothing
 * was left to answer).
 * A batch is one round trip (one statement: migration 0005's audit_append links it to the head under the write lock),
 * whichever writer moved the head; the database's hashes are checked against the node's, and a disagreement refuses
 * the batch before anything is committed. The chain verifies throughout.
 */
import { createHash } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { canonicalEncoding, chainHash, GENESIS_HASH, verifyChain, type UnhashedRow } from '../../src/audit/chain.js';
import type { AuditRow } from '../../src/store/audit.js';
import { createPostgresClient, type PgSql } from '../../src/store/postgres/client.js';
import { createPostgresStore, WRITE_LOCK_KEY, type PostgresStore } from '../../src/store/postgres/index.js';
import { migratePostgres } from '../../src/store/postgres/migrate.js';
import type { AuditHead, ChainBatch } from '../../src/store/types.js';
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
  /** Statements executed (each extended-protocol Execute or simple Query the client sends). */
  statements = 0;
  private outstanding = 0;
  private holding = false;
  private readonly onRelease: (() => void)[] = [];

  /** While true, what the client sends is held back (the database seems not to answer); false sends it on. */
  set hold(on: boolean) {
    this.holding = on;
    if (!on) for (const release of this.onRelease) release();
  }

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
        if (type === 'E' || type === 'Q') proxy.statements++;
      }, true);
      const fromServer = messageReader((type) => {
        sending = false;
        if (type === 'Z') proxy.outstanding = Math.max(0, proxy.outstanding - 1);
      }, false);
      const held: Buffer[] = [];
      proxy.onRelease.push(() => {
        for (const d of held.splice(0)) upstream.write(d);
      });
      client.on('data', (d) => {
        fromClient(d);
        if (proxy.holding) held.push(d);
        else upstream.write(d);
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

/** A batch as the audit log's, counting the heads it was linked to. */
function builder(events: number[]) {
  const heads: (AuditHead | undefined)[] = [];
  const batch: ChainBatch = {
    chain: (head) => {
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
    },
    encode: canonicalEncoding,
  };
  return { batch, heads };
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

  it('is one round trip, on the head this node wrote last or without one, and the chain links', async () => {
    // Warm up: the connection is opened and the statement prepared (described) once per connection.
    let written = await node.audit.appendChained(builder([1, 2]).batch);
    expect(written.map((r) => r.seq)).toEqual([1, 2]);
    let head = headOf(written);

    const b = builder([3, 4, 5]);
    expect(await proxy.count(async () => (written = await node.audit.appendChained(b.batch, head)))).toBe(1);
    expect(b.heads).toEqual([head]); // linked once, on the expected head, which was not read first
    expect(written.map((r) => r.seq)).toEqual([head.seq + 1, head.seq + 2, head.seq + 3]);
    head = headOf(written);

    const c = builder([6]);
    expect(await proxy.count(async () => (written = await node.audit.appendChained(c.batch)))).toBe(1);
    expect(c.heads).toEqual([undefined, head]); // built on nothing, then checked on the head the database linked it to
    expect(written[0]!.prev_hash).toEqual(head.hash);
    const rows = await all();
    expect(rows).toHaveLength(6);
    expect(rows.slice(-1)).toEqual(written);
    expect(verifyChain(rows)).toMatchObject({ ok: true });
  });

  it('links to the real head when another writer moved it, in the same one round trip', async () => {
    let mine = headOf(await all());
    const theirs = await other.audit.appendChained(builder([100, 101]).batch, mine);
    const realHead = headOf(theirs);

    const b = builder([7, 8]);
    let written: AuditRow[] = [];
    expect(await proxy.count(async () => (written = await node.audit.appendChained(b.batch, mine)))).toBe(1);
    expect(b.heads).toEqual([mine, realHead]);
    expect(written[0]!.seq).toBe(realHead.seq + 1);
    expect(written[0]!.prev_hash).toEqual(realHead.hash);
    mine = headOf(written);

    const rows = await all();
    expect(rows.map((r) => r.message).slice(-4)).toEqual(['event 100', 'event 101', 'event 7', 'event 8']);
    expect(rows.slice(-2)).toEqual(written);
    expect(verifyChain(rows)).toMatchObject({ ok: true });
  });

  it('a head with the right sequence number but another hash is not the head: the batch links to the real one', async () => {
    const real = headOf(await all());
    const forged: AuditHead = { seq: real.seq, hash: Buffer.alloc(32, 7) };
    const b = builder([9]);
    const written = await node.audit.appendChained(b.batch, forged);
    expect(b.heads).toEqual([forged, real]);
    expect(written[0]!.prev_hash).toEqual(real.hash);
    const rows = await all();
    expect(rows.filter((r) => r.prev_hash.equals(forged.hash))).toEqual([]);
    expect(verifyChain(rows)).toMatchObject({ ok: true });
  });

  it('a batch of any size is one statement', async () => {
    const head = headOf(await all());
    const big = builder(Array.from({ length: 5_001 }, (_, i) => 10_000 + i));
    let written: AuditRow[] = [];
    const before = proxy.statements;
    expect(await proxy.count(async () => (written = await node.audit.appendChained(big.batch, head)))).toBe(1);
    expect(proxy.statements - before).toBe(2); // the liveness `SELECT 1` and audit_append
    expect(written).toHaveLength(5_001);
    const rows = await all();
    expect(rows.slice(-5_001)).toEqual(written);
    expect(verifyChain(rows)).toMatchObject({ ok: true });
  });

  it('stores text exactly as the node hashed it: unicode, quotes, JSON in details, NULLs, a version past 2^32', async () => {
    const head = headOf(await all());
    const odd: ChainBatch = {
      chain: (h) => {
        const base: UnhashedRow = {
          ...event(0), seq: (h?.seq ?? 0) + 1, account: null, role_id: null, version: 2 ** 40 + 3, user_agent: 'ü "quoted" \\ \n tab\t 𝄞 \u2028',
          reason: "it's", message: '[1,"x"],', details: JSON.stringify({ k: ['v', 1, null], s: '\\"' }),
        };
        const hash = chainHash(h?.hash ?? GENESIS_HASH, base);
        return [{ ...base, prev_hash: h?.hash ?? GENESIS_HASH, hash }];
      },
      encode: canonicalEncoding,
    };
    const written = await node.audit.appendChained(odd, head);
    const rows = await all();
    expect(rows.at(-1)).toEqual(written[0]);
    expect(verifyChain(rows)).toMatchObject({ ok: true });
  });

  it('two stores appending at once keep one chain, every batch written once', async () => {
    const heads: Record<'a' | 'b', AuditHead | undefined> = { a: headOf(await all()), b: undefined };
    const batches = 40;
    await Promise.all(
      (['a', 'b'] as const).map(async (who) => {
        const store = who === 'a' ? node : other;
        for (let i = 0; i < batches; i++) heads[who] = headOf(await store.audit.appendChained(builder([1000 * (who === 'a' ? 1 : 2) + i]).batch, heads[who]));
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

  it('an encoding that is not what its hash covers is refused before anything is sent', async () => {
    const before = await all();
    const head = headOf(before);
    const { batch } = builder([20, 21]);
    const skewed: ChainBatch = { chain: batch.chain, encode: (row) => canonicalEncoding({ ...row, message: `${row.message}!` }) };
    const sent = proxy.flights;
    await expect(node.audit.appendChained(skewed, head)).rejects.toThrow(/audit event \d+: its encoding is not what its hash covers/);
    await expect(node.audit.appendChained({ chain: batch.chain, encode: () => 'not an encoding' })).rejects.toThrow(/its encoding is not what its hash covers/);
    expect(proxy.flights).toBe(sent);
    expect(await all()).toEqual(before);
  });

  it('PostgreSQL refuses, committing nothing: a hash it computes differently, an event that is not 15 fields, a batch past its time', async () => {
    const before = await all();
    const head = headOf(before);
    const [row] = builder([30]).batch.chain(head);
    const tail = canonicalEncoding(row!).slice(`[${row!.seq}`.length);
    const call = (doc: unknown, notAfter = new Date(Date.now() + 60_000)) =>
      direct`SELECT * FROM audit_append(${JSON.stringify(doc)}, ${head.seq}::int8, ${head.hash}::bytea, ${WRITE_LOCK_KEY}::int8, ${notAfter.toISOString()}::timestamptz)`;
    await expect(call([{ tail, hash: Buffer.alloc(32, 1).toString('hex') }])).rejects.toThrow(/hashes differently here than on the node/);
    const sixteen = canonicalEncoding(row!).slice(0, -1) + ',"extra"]';
    const extra = sixteen.slice(`[${row!.seq}`.length);
    const extraHash = createHash('sha256').update(head.hash).update(sixteen, 'utf8').digest().toString('hex');
    await expect(call([{ tail: extra, hash: extraHash }])).rejects.toThrow(`event ${row!.seq} is not the 15 fields`);
    // One field short, no text at all, and text that does not continue the seq (`[31.5,…` would be hashed, seq 31
    // stored), each after an event that is whole: refused by sequence number.
    const fourteen = `,${JSON.stringify((JSON.parse(`[0${tail}`) as unknown[]).slice(1, -1))}`.replace(',[', ',');
    expect(JSON.parse(`[0${fourteen}`)).toHaveLength(14);
    for (const bad of [{ tail: fourteen }, {}, { tail: `.5${tail}` }]) {
      await expect(call([{ tail, hash: row!.hash.toString('hex') }, { ...bad, hash: '00' }])).rejects.toThrow(`event ${row!.seq + 1} is not the 15 fields`);
    }
    await expect(call([{ tail, hash: row!.hash.toString('hex') }], new Date(Date.now() - 1000))).rejects.toThrow(/after its node gave up on it/);
    expect(await all()).toEqual(before);
    // The same call in time is written.
    const [linked] = await call([{ tail, hash: row!.hash.toString('hex') }]);
    expect(linked).toMatchObject({ seq: row!.seq, hash: row!.hash });
    expect(verifyChain(await all())).toMatchObject({ ok: true });
  });

  it('takes the write lock transactions take: it waits while another transaction holds it', async () => {
    const head = headOf(await all());
    let release!: () => void;
    let locked!: () => void;
    const held = new Promise<void>((resolve) => (locked = resolve));
    const holder = direct.begin(async (t) => {
      await t.unsafe(`SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`);
      locked();
      await new Promise<void>((resolve) => (release = resolve));
    });
    await held;
    let settled = false;
    const append = node.audit.appendChained(builder([31]).batch, head).finally(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(settled).toBe(false);
    release();
    await holder;
    expect((await append)[0]!.seq).toBe(head.seq + 1);
  });

  it('a database that does not answer: 503 at the deadline, and the batch is never committed when it answers again', async () => {
    const viaProxy = new URL(await cluster.createDatabase('gc_deadline'));
    const target = Number(viaProxy.port);
    const sql = createPostgresClient(viaProxy.toString(), { max: 1 });
    await migratePostgres(sql);
    await sql.end({ timeout: 1 });
    const silent = await CountingProxy.start(target);
    viaProxy.port = String(silent.port);
    const store = createPostgresStore(createPostgresClient(viaProxy.toString(), { max: 1 }), { deadlineMs: 600 });
    try {
      const first = await store.audit.appendChained(builder([1]).batch);
      silent.hold = true; // the connection stays open; nothing reaches the database
      const started = Date.now();
      await expect(store.audit.appendChained(builder([2]).batch, headOf(first))).rejects.toThrow(/did not answer within 600 ms/);
      expect(Date.now() - started).toBeLessThan(3000);
      await new Promise((resolve) => setTimeout(resolve, 700)); // past the batch's time
      silent.hold = false; // what was held now arrives: the batch is refused there
      const check = createPostgresClient(`${viaProxy.protocol}//${viaProxy.username}@127.0.0.1:${target}${viaProxy.pathname}`, { max: 1 });
      try {
        for (let i = 0; i < 20; i++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          const [row] = await check<{ n: number }[]>`SELECT count(*)::int AS n FROM audit_events`;
          expect(row!.n).toBe(1);
        }
      } finally {
        await check.end({ timeout: 1 });
      }
    } finally {
      await store.close().catch(() => undefined);
      await silent.close();
    }
  });
});
