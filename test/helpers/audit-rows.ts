/** The audit log as a test reads it, on either backend: every event, through the store interface. */
import type { AuditRow } from '../../src/store/audit.js';
import type { Store } from '../../src/store/index.js';

export async function allAuditRows(store: Store): Promise<AuditRow[]> {
  const rows: AuditRow[] = [];
  for (let after = 0; ; ) {
    const page = await store.audit.page(after, 5000);
    if (page.length === 0) return rows;
    rows.push(...page);
    after = page[page.length - 1]!.seq;
  }
}

/** How many events the log holds (seq numbers are contiguous from 1). */
export async function auditCount(store: Store): Promise<number> {
  return (await store.audit.head())?.seq ?? 0;
}
