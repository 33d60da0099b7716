/**
 * Whatever reaches the audit chain is hashed exactly as it is stored: for any
 * text in any field (lone surrogates, NUL, astral characters, over-long
 * values cut in the middle of a surrogate pair), the events read back from
 * SQLite verify, and read back as the text that was hashed.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { syncAudit } from '../helpers/sqlite.js';
import { openStore } from '../../src/store/index.js';
import { AuditLog, type AuditEvent } from '../../src/audit/log.js';
import { canonicalText, verifyChain } from '../../src/audit/chain.js';

function setup() {
  const dir = tempDir('coffer-test-canonical-');
  const store = openStore(join(dir, 'c.db'));
  return { store, log: new AuditLog({ store: store.audit }) };
}

/** Any UTF-16 code units: lone high and low surrogates, NUL, controls, pairs, BMP and astral text. */
const anyText = fc.oneof(
  fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 40 }).map((units) => String.fromCharCode(...units)),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('\ud800', '\udfff', 'a\ud83d', '\ude00b', '\u0000', 'x\u0000y', '\ud83d\ude00', '\ufffd', '\ud800\ud800\udc00'),
  // Longer than the 2,048-unit clip, with a surrogate pair straddling the cut.
  fc.constant(`${'a'.repeat(2047)}\ud83d\ude00tail`),
);
const maybeText = fc.option(anyText, { nil: undefined });

const anyEvent: fc.Arbitrary<AuditEvent> = fc.record({
  account: fc.option(anyText, { nil: null }),
  action: anyText,
  operation: anyText,
  result: fc.constantFrom('success' as const, 'failure' as const),
  roleId: maybeText,
  resourceId: maybeText,
  version: fc.option(fc.integer({ min: 0, max: 2 ** 31 }), { nil: undefined }),
  reason: maybeText,
  message: anyText,
  details: fc.option(fc.dictionary(anyText, fc.oneof(anyText, fc.integer(), fc.array(anyText, { maxLength: 3 }))), { nil: undefined }),
  request: fc.option(fc.record({ clientIp: maybeText, requestId: maybeText, userAgent: maybeText }), { nil: undefined }),
});

describe('audit chain: canonical text', () => {
  it('canonicalText leaves well-formed text alone and replaces only lone surrogates and U+0000 (PostgreSQL TEXT cannot hold it)', () => {
    expect(canonicalText('héllo 😀 \u0001')).toBe('héllo 😀 \u0001');
    expect(canonicalText('a\u0000b\u0000')).toBe('a\ufffdb\ufffd');
    expect(canonicalText('a\ud800b')).toBe('a\ufffdb');
    expect(canonicalText('\udc00\ud83d\ude00\ud83d')).toBe('\ufffd😀\ufffd');
    expect(canonicalText(null)).toBeNull();
  });

  it('events with any text in any field verify after a round trip through SQLite', async () => {
    const { store, log } = setup();
    await fc.assert(
      fc.asyncProperty(fc.array(anyEvent, { minLength: 1, maxLength: 8 }), async (events) => {
        const before = syncAudit(store).head()?.seq ?? 0;
        await Promise.all(events.map((e) => log.record(e)));
        const rows = [...syncAudit(store).iterate(before)];
        expect(rows).toHaveLength(events.length);
        for (const row of rows) {
          for (const v of Object.values(row)) if (typeof v === 'string') expect(v.isWellFormed()).toBe(true);
        }
        // Stored text is the canonical form of what was recorded: nothing else was altered.
        const byMessage = new Set(events.map((e) => canonicalText(e.message)));
        for (const row of rows) expect(byMessage.has(row.message)).toBe(true);
      }),
      { numRuns: 150 },
    );
    const report = verifyChain(syncAudit(store).iterate());
    expect(report).toMatchObject({ ok: true, badCount: 0, badSeqs: [] });
    expect(report.checked).toBe(syncAudit(store).head()!.seq);
  });

  it('a lone surrogate in a resource id (the probe’s batch fetch) no longer breaks the chain', async () => {
    const { store, log } = setup();
    await log.record({ account: 'acme', action: 'fetch', operation: 'fetch', result: 'failure', resourceId: 'acme:variable:\ud800', reason: 'not found', message: 'fetch of acme:variable:\ud800 refused' });
    await log.record({ account: 'acme', action: 'fetch', operation: 'fetch', result: 'success', resourceId: 'acme:variable:ok', message: 'ok' });
    const rows = [...syncAudit(store).iterate()];
    expect(rows[0]!.resource_id).toBe('acme:variable:\ufffd');
    expect(verifyChain(rows)).toMatchObject({ ok: true, checked: 2 });
  });

  it('a value cut at the field limit never leaves half a surrogate pair', async () => {
    const { store, log } = setup();
    await log.record({ account: 'a', action: 'x', operation: 'x', result: 'success', message: 'm', request: { userAgent: `${'a'.repeat(2047)}😀` } });
    const [row] = [...syncAudit(store).iterate()];
    expect(row!.user_agent).toBe(`${'a'.repeat(2047)}\ufffd`);
    expect(verifyChain([row!]).ok).toBe(true);
  });
});
