/**
 * test/helpers/postgres.ts: throwaway clusters, a synchronous standby,
 * killing the primary and promoting the standby (what issue 10's failover
 * test builds on).
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, expect, it } from 'vitest';
import { createPostgresClient, targetSessionAttrs, type PgSql } from '../../src/store/postgres/client.js';
import { describePostgres, killCluster, multiHostUrl, postgresMissing, processAlive, promote, startCluster, startStandby, type PgCluster } from '../helpers/postgres.js';

it('says clearly when the PostgreSQL binaries are missing', () => {
  expect(postgresMissing('/nonexistent/postgresql/bin')).toMatch(/PostgreSQL server binaries not found .*initdb is missing.*apt-get install -y postgresql/);
});

it("maps target_session_attrs=read-write to the driver's primary mode (postgres.js judges read-write by default_transaction_read_only alone)", () => {
  expect(targetSessionAttrs('postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write')).toBe('primary');
  expect(targetSessionAttrs('postgres://u@h1:5432/db?sslmode=disable&target_session_attrs=read-write')).toBe('primary');
  expect(targetSessionAttrs('postgres://u@h1:5432/db')).toBeUndefined();
  expect(targetSessionAttrs('postgres://u@h1:5432/db?target_session_attrs=primary')).toBeUndefined();
});

describePostgres('test helper: PostgreSQL clusters', () => {
  const clusters: PgCluster[] = [];
  const clients: PgSql[] = [];
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end({ timeout: 1 })));
    await Promise.all(clusters.map((c) => c.stop()));
  });

  it('starts a cluster with the settings asked for, makes databases, and removes everything on stop', async () => {
    const pg = await startCluster();
    clusters.push(pg);
    expect(pg.url).toBe(`postgres://postgres@127.0.0.1:${pg.port}/coffer`);
    const settings = await pg.psql("SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'listen_addresses', 'wal_level')");
    expect(settings).toBe('fsync=on,listen_addresses=127.0.0.1,synchronous_commit=on,wal_level=replica');
    if (process.getuid?.() === 0) expect(await pg.psql("SELECT usename FROM pg_user WHERE usesysid = (SELECT datdba FROM pg_database WHERE datname = 'postgres')")).toBe('postgres');
    const url = await pg.createDatabase('other_db');
    const sql = createPostgresClient(url, { max: 1 });
    clients.push(sql);
    expect(await sql`SELECT current_database() AS db, 9007199254740991::int8 AS big`).toEqual([{ db: 'other_db', big: Number.MAX_SAFE_INTEGER }]);
    await sql.end();
    const pid = pg.pid();
    expect(pid).toBeGreaterThan(0);
    await pg.stop();
    expect(existsSync(pg.dir)).toBe(false);
    for (let i = 0; i < 100 && processAlive(pid!); i++) await new Promise((r) => setTimeout(r, 50));
    expect(processAlive(pid!)).toBe(false);
  });

  it('a synchronous standby has every acknowledged write after the primary is killed and it is promoted', { timeout: 90_000 }, async () => {
    const primary = await startCluster();
    clusters.push(primary);
    const standby = await startStandby(primary);
    clusters.push(standby);
    expect(await primary.psql(`SELECT sync_state FROM pg_stat_replication WHERE application_name = '${standby.standbyName}'`)).toBe('sync');
    expect(await primary.psql('SHOW synchronous_standby_names')).toBe(`"${standby.standbyName}"`);
    expect(await standby.psql('SELECT pg_is_in_recovery()')).toBe('t');

    // Through the multi-host URL, as Coffer nodes will connect.
    const url = multiHostUrl([primary, standby], 'coffer');
    const sql = createPostgresClient(url, { max: 2, connectTimeoutSec: 5 });
    clients.push(sql);
    await sql`CREATE TABLE acked (n INT PRIMARY KEY)`;
    for (let n = 1; n <= 50; n++) await sql`INSERT INTO acked (n) VALUES (${n})`;
    expect((await sql`SELECT inet_server_port() AS port`)[0]!.port).toBe(primary.port);

    await killCluster(primary);
    expect(primary.pid()).toBeUndefined();
    // A client that retries, as a node's request would: while no primary is
    // reachable it gets no answer — read-write (the driver's `primary`, see
    // client.ts) never settles on the standby, which would answer
    // pg_is_in_recovery() = true here.
    let answered = false;
    const answer = (async () => {
      for (;;) {
        try {
          return await sql<{ recovery: boolean; n: number; port: number }[]>`
            SELECT pg_is_in_recovery() AS recovery, (SELECT count(*)::int FROM acked) AS n, inet_server_port() AS port`;
        } catch {
          await sleep(50);
        }
      }
    })().finally(() => (answered = true));
    await sleep(1500);
    expect(answered).toBe(false);

    await promote(standby);
    expect(await standby.psql('SELECT pg_is_in_recovery()')).toBe('f');
    // The same client serves again without a restart, from the promoted standby, with every acknowledged row.
    expect(await answer).toEqual([{ recovery: false, n: 50, port: standby.port }]);
    await sql`INSERT INTO acked (n) VALUES (51)`;
    // With a timeout: postgres.js 3.4.9 keeps a connection's in-flight query after the socket dies under it (the
    // kill above can land mid-statement), and end() without a timeout then waits for that connection forever.
    await sql.end({ timeout: 1 });
    await standby.stop();
    await primary.stop();
    expect(existsSync(primary.dir) || existsSync(standby.dir)).toBe(false);
  });
});
