/**
 * The full-text index of audit messages is filled off the write path: only
 * once the log has been quiet, in bounded steps, and pushed back by every new
 * write — so a busy server spends nothing on it (issue 9, item 3).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { join } from 'node:path';
import { openStore } from '../../src/store/index.js';
import { AuditLog, SEARCH_INDEX_BUSY_EVENTS } from '../../src/audit/log.js';
import { SEARCH_INDEX_STEP } from '../../src/store/audit.js';
import { tempDir } from '../helpers/tmp.js';
import { syncAudit } from '../helpers/sqlite.js';

afterEach(() => vi.useRealTimers());

const ev = (i: number) => ({ account: 'a', action: 'fetch', operation: 'fetch', result: 'success' as const, message: `event number ${i}` });

/** Lets a fired timer's async step finish (setImmediate is not faked). */
const settle = () => new Promise((resolve) => setImmediate(resolve));
const advance = async (ms: number) => {
  vi.advanceTimersByTime(ms);
  await settle();
};

describe('audit search index', () => {
  it('is filled in steps once the log is idle, and every write pushes it back', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const store = openStore(join(tempDir('coffer-test-search-'), 'c.db'));
    const log = new AuditLog({ store: store.audit });
    const indexed = () => (store.db.prepare('SELECT indexed_upto AS n FROM audit_fts_state').get() as { n: number }).n;
    const total = SEARCH_INDEX_STEP * 2 + 10;
    await Promise.all(Array.from({ length: total }, (_, i) => log.record(ev(i))));
    expect(indexed()).toBe(0);
    await advance(200);
    expect(indexed()).toBe(0); // not idle long enough yet
    await log.record(ev(total)); // a write pushes the indexing back
    await advance(249);
    expect(indexed()).toBe(0);
    vi.advanceTimersToNextTimer();
    await settle();
    expect(indexed()).toBe(SEARCH_INDEX_STEP); // one bounded step per timer turn
    vi.advanceTimersToNextTimer();
    await settle();
    expect(indexed()).toBe(SEARCH_INDEX_STEP * 2);
    vi.advanceTimersToNextTimer();
    await settle();
    expect(indexed()).toBe(total + 1);
    expect(vi.getTimerCount()).toBe(0); // caught up: nothing more scheduled
    expect((store.db.prepare(`SELECT count(*) AS n FROM audit_fts WHERE audit_fts MATCH '"number"'`).get() as { n: number }).n).toBe(total + 1);
    await log.close();
    store.close();
  });
});

describe('audit search index while writes land', () => {
  it('a batch still running when a write lands does not schedule the next one: the write waits its own idle time', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const store = openStore(join(tempDir('coffer-test-search-race-'), 'c.db'));
    let release: (() => void) | undefined;
    let calls = 0;
    const audit = {
      ...store.audit,
      // Each batch is indexed at once but answers only when released: "still running" for as long as the test says.
      indexSearchBatch: async (max: number) => {
        calls++;
        const added = await store.audit.indexSearchBatch(max);
        await new Promise<void>((resolve) => (release = resolve));
        return added;
      },
    };
    const log = new AuditLog({ store: audit });
    const indexed = () => (store.db.prepare('SELECT indexed_upto AS n FROM audit_fts_state').get() as { n: number }).n;
    await Promise.all(Array.from({ length: SEARCH_INDEX_STEP * 3 }, (_, i) => log.record(ev(i))));
    await advance(250);
    expect(calls).toBe(1); // the first batch runs, and is held
    await log.record(ev(-1)); // a write lands meanwhile: it arms its own 250 ms wait
    release!();
    await settle();
    await advance(0);
    expect(calls).toBe(1); // the finished batch did not chain a second one at once
    expect(vi.getTimerCount()).toBe(1); // only the write's timer
    await advance(249);
    expect(calls).toBe(1);
    await advance(1);
    expect(calls).toBe(2);
    expect(indexed()).toBe(SEARCH_INDEX_STEP * 2);
    release!();
    await settle();
    vi.useRealTimers();
    await log.close();
    store.close();
  });
});

describe('audit search on a full disk', () => {
  it('a q query still answers, through the account index, when the search index cannot be caught up', async () => {
    const store = openStore(join(tempDir('coffer-test-search-full-'), 'c.db'));
    const log = new AuditLog({ store: store.audit });
    const total = SEARCH_INDEX_STEP * 3;
    await Promise.all(Array.from({ length: total }, (_, i) => log.record(ev(i))));
    // The database may not grow by a page more: every write that needs one fails with SQLITE_FULL.
    store.db.pragma(`max_page_count = ${store.db.pragma('page_count', { simple: true }) as number}`);
    expect(() => syncAudit(store).indexSearchBatch(SEARCH_INDEX_STEP)).toThrow(expect.objectContaining({ code: 'SQLITE_FULL' }));
    const rows = syncAudit(store).query({ account: 'a', scopes: [{ type: 'all', account: 'a' }], q: 'number 12', order: 'desc' });
    const expected = Array.from({ length: total }, (_, i) => i).filter((i) => `event number ${i}`.includes('number 12'));
    expect(rows.map((r) => r.message)).toEqual(expected.reverse().map((i) => `event number ${i}`));
    await log.close();
    store.close();
  });
});

describe('audit search index filled while busy (stores that fill off the node, as PostgreSQL)', () => {
  it('fills every SEARCH_INDEX_BUSY_EVENTS events without waiting for quiet, one fill at a time, and close waits for it', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] }); // the quiet-time fill never fires here
    const store = openStore(join(tempDir('coffer-test-search-busy-'), 'c.db'));
    const calls: number[] = [];
    let release: (() => void) | undefined;
    const audit = {
      ...store.audit,
      indexSearchWhileBusy: true,
      // Held until released, so the test decides how long a fill runs.
      indexSearchBatch: async (max: number) => {
        calls.push(max);
        const added = await store.audit.indexSearchBatch(max);
        await new Promise<void>((resolve) => (release = resolve));
        return added;
      },
    };
    const log = new AuditLog({ store: audit });
    const indexed = () => (store.db.prepare('SELECT indexed_upto AS n FROM audit_fts_state').get() as { n: number }).n;
    await Promise.all(Array.from({ length: SEARCH_INDEX_BUSY_EVENTS - 1 }, (_, i) => log.record(ev(i))));
    expect(calls).toEqual([]); // below the threshold (and the idle fill waits 250 ms)
    await log.record(ev(-1));
    expect(calls).toEqual([SEARCH_INDEX_BUSY_EVENTS]);
    // More than a threshold's worth of events while that fill runs starts no second one.
    await Promise.all(Array.from({ length: SEARCH_INDEX_BUSY_EVENTS * 1.5 }, (_, i) => log.record(ev(i))));
    expect(calls).toHaveLength(1);
    // A full step goes on at once with the next (the log is still behind), a short one ends the fill.
    release!();
    await settle();
    expect(calls).toHaveLength(2);
    release!();
    await settle();
    expect(calls).toHaveLength(3);
    release!(); // the third step copied the rest: fewer than a full step, so the fill ends
    await settle();
    expect(indexed()).toBe(SEARCH_INDEX_BUSY_EVENTS * 2.5);
    // close waits for a running fill, and that fill stops after its step even when the log is still behind.
    await Promise.all(Array.from({ length: SEARCH_INDEX_BUSY_EVENTS * 2 }, (_, i) => log.record(ev(i))));
    expect(calls).toHaveLength(4);
    const closing = log.close();
    let closed = false;
    void closing.then(() => (closed = true));
    await settle();
    expect(closed).toBe(false);
    release!(); // a full step: the fill would go on, but the log is closing
    await closing;
    expect(calls).toHaveLength(4);
    expect(indexed()).toBe(SEARCH_INDEX_BUSY_EVENTS * 3.5);
    store.close();
  });

  it('a store that throws at once does not leave the busy fill stuck', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] }); // only the busy fill calls the store here
    const store = openStore(join(tempDir('coffer-test-search-throw-'), 'c.db'));
    let calls = 0;
    const audit = {
      ...store.audit,
      indexSearchWhileBusy: true,
      indexSearchBatch: (): Promise<number> => {
        calls++;
        throw new Error('refused at once');
      },
    };
    const log = new AuditLog({ store: audit });
    await Promise.all(Array.from({ length: SEARCH_INDEX_BUSY_EVENTS }, (_, i) => log.record(ev(i))));
    await settle();
    await Promise.all(Array.from({ length: SEARCH_INDEX_BUSY_EVENTS }, (_, i) => log.record(ev(i))));
    expect(calls).toBe(2); // tried again after the next SEARCH_INDEX_BUSY_EVENTS events
    await log.close();
    store.close();
  });

  it('a store that fills only when quiet (SQLite) is not filled while busy', async () => {
    const store = openStore(join(tempDir('coffer-test-search-quiet-'), 'c.db'));
    const log = new AuditLog({ store: store.audit });
    await Promise.all(Array.from({ length: SEARCH_INDEX_BUSY_EVENTS * 2 }, (_, i) => log.record(ev(i))));
    await settle();
    expect((store.db.prepare('SELECT indexed_upto AS n FROM audit_fts_state').get() as { n: number }).n).toBe(0);
    await log.close();
    store.close();
  });
});
