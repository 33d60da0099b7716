import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { syncAudit } from '../helpers/sqlite.js';
import { openStore } from '../../src/store/index.js';
import { AuditLog } from '../../src/audit/log.js';
import { canonicalEncoding, canonicalTail, verifyChain, type UnhashedRow } from '../../src/audit/chain.js';
import { formatRfc5424 } from '../../src/audit/rfc5424.js';

function setup() {
  const store = openStore(join(tempDir('coffer-audit-'), 'c.db'));
  const log = new AuditLog({ store: store.audit });
  return { store, log };
}
const ev = (i: number) => ({ account: 'a', action: 'fetch', operation: 'fetch', result: 'success' as const, roleId: 'a:user:u', resourceId: `a:variable:v${i}`, message: `u fetched v${i}` });

describe('audit chain', () => {
  it('an encoding is `[seq` followed by the tail a batch keeps when it is linked again, for any seq and fields', () => {
    const base: Omit<UnhashedRow, 'seq'> = {
      time: '2030-01-01T00:00:00.000Z', account: 'a', action: 'fetch', operation: 'fetch', result: 'success', role_id: 'a:host:h',
      resource_id: 'a:variable:db/\u00e9\u{1F511}', version: 7, client_ip: '127.0.0.1', request_id: 'r"1\\', user_agent: null,
      reason: 'line\nbreak', message: 'fetched \uFFFD', details: '{"k":[1,"\\u0000"]}',
    };
    const nulls = Object.fromEntries(Object.entries(base).map(([k, v]) => [k, k === 'time' || k === 'message' ? v : null])) as typeof base;
    for (const fields of [base, nulls, { ...base, version: 2 ** 53 - 1 }])
      for (const seq of [1, 9, 10, 123_456, 2 ** 53 - 1]) {
        expect(`[${seq}${canonicalTail(fields)}`).toBe(canonicalEncoding({ seq, ...fields }));
      }
  });


  it('group-commits concurrent events in one transaction and chains them', async () => {
    const { store, log } = setup();
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.record(ev(i))));
    const rows = [...syncAudit(store).iterate()];
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(verifyChain(rows)).toMatchObject({ ok: true, checked: 50, lastSeq: 50 });
  });

  it('detects an edited byte and a deleted row', async () => {
    const { store, log } = setup();
    for (let i = 0; i < 5; i++) await log.record(ev(i));
    store.db.exec('DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;');
    store.db.prepare("UPDATE audit_events SET message = 'u fetched vX' WHERE seq = 3").run();
    expect(verifyChain(syncAudit(store).iterate())).toMatchObject({ ok: false, firstBadSeq: 3 });
    store.db.prepare("UPDATE audit_events SET message = 'u fetched v2' WHERE seq = 3").run();
    expect(verifyChain(syncAudit(store).iterate()).ok).toBe(true);
    store.db.prepare('DELETE FROM audit_events WHERE seq = 2').run();
    expect(verifyChain(syncAudit(store).iterate())).toMatchObject({ ok: false, firstBadSeq: 2 });
  });

  it('rejects every waiter with 503 when the write fails, and writes nothing', async () => {
    const { store, log } = setup();
    store.db.exec("CREATE TRIGGER fail_insert BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END;");
    const results = await Promise.allSettled([log.record(ev(1)), log.record(ev(2))]);
    expect(results.every((r) => r.status === 'rejected' && (r.reason as { code: string }).code === 'service_unavailable')).toBe(true);
    expect([...syncAudit(store).iterate()]).toHaveLength(0);
  });

  it("formats RFC 5424 lines in Conjur's shape", async () => {
    const { store, log } = setup();
    await log.record({ ...ev(1), result: 'failure', reason: 'Forbidden' });
    const line = formatRfc5424([...syncAudit(store).iterate()][0]!, 42);
    expect(line).toMatch(/^<84>1 \d{4}-\d\d-\d\dT[\d:.]+Z - conjur 42 fetch \[auth@43868 user="a:user:u"\]\[subject@43868 resource="a:variable:v1"\]/);
    expect(line).toContain('[action@43868 result="failure" operation="fetch"]');
  });
});
