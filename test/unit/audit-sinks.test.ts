/** The --audit-log stream sink: failure, reopening, back-pressure; and the RFC 5424 lines of a policy load. */
import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StreamSink, formatAuditLines, openAuditSinks } from '../../src/audit/sinks.js';
import { formatRfc5424Lines } from '../../src/audit/rfc5424.js';
import type { AuditRow } from '../../src/store/audit.js';

const row = (seq: number, over: Partial<AuditRow> = {}): AuditRow => ({
  seq,
  time: '2026-01-01T00:00:00.000Z',
  account: 'a',
  action: 'fetch',
  operation: 'fetch',
  result: 'success',
  role_id: 'a:host:h',
  resource_id: 'a:variable:v',
  version: 1,
  client_ip: '127.0.0.1',
  request_id: 'r1',
  user_agent: null,
  reason: null,
  message: `a:host:h fetched a:variable:v (${seq})`,
  details: null,
  prev_hash: Buffer.alloc(32),
  hash: Buffer.alloc(32, seq),
  ...over,
});

const settle = () => new Promise((r) => setTimeout(r, 50));

describe('StreamSink', () => {
  it('reports a failure once, drops while failed, reopens after the pause and says which events were not streamed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-sink-'));
    const link = join(dir, 'audit.log');
    const real = join(dir, 'real.log');
    symlinkSync('/dev/full', link);
    const reports: string[] = [];
    let now = 0;
    const sink = new StreamSink(link, 'json', (l) => reports.push(l), { reopenAfterMs: 1000, now: () => now });
    try {
      sink.write(row(1));
      await settle();
      sink.write(row(2));
      sink.write(row(3));
      await settle();
      expect(reports).toHaveLength(1);
      expect(reports[0]).toBe(`coffer: audit sink ${link} failed: ENOSPC: no space left on device, write; events stay in the database; reopening it in 1 s`);

      // The disk "recovers": the path now leads to a writable file. Before the pause is over, nothing is tried.
      rmSync(link);
      writeFileSync(real, '');
      symlinkSync(real, link);
      now = 500;
      sink.write(row(4));
      await settle();
      expect(readFileSync(real, 'utf8')).toBe('');
      now = 1500;
      sink.write(row(5));
      await settle();
      expect(readFileSync(real, 'utf8')).toBe(formatAuditLines(row(5), 'json'));
      expect(reports[1]).toBe(`coffer: audit sink ${link} recovered; 4 event(s) between seq 1 and 4 were not streamed (read them with GET /audit/{account})`);
      sink.write(row(6));
      await sink.close();
      expect(readFileSync(real, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).seq)).toEqual([5, 6]);
      expect(reports).toHaveLength(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('drops instead of buffering without bound when the target falls behind, and says so once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-sink-'));
    const file = join(dir, 'audit.log');
    const reports: string[] = [];
    const sink = new StreamSink(file, 'json', (l) => reports.push(l), { maxBufferedBytes: 10 });
    try {
      // Written in one turn: the first line is queued (longer than 10 bytes), so the next ones are dropped.
      for (let seq = 1; seq <= 5; seq++) sink.write(row(seq));
      await settle();
      sink.write(row(6));
      await sink.close();
      expect(readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).seq)).toEqual([1, 6]);
      expect(reports[0]).toMatch(new RegExp(`^coffer: audit sink ${file} is not keeping up \\(\\d+ bytes queued\\); dropping events until it catches up`));
      expect(reports[1]).toBe(`coffer: audit sink ${file} recovered; 4 event(s) between seq 2 and 5 were not streamed (read them with GET /audit/{account})`);
      expect(reports).toHaveLength(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('creates the file owner-only and fails fast when it cannot be opened', () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-sink-'));
    try {
      expect(() => openAuditSinks(join(dir, 'missing', 'a.log'), 'json', () => {})).toThrow(
        `--audit-log: cannot open ${join(dir, 'missing', 'a.log')}: ENOENT`,
      );
      expect(openAuditSinks(undefined, 'json', () => {})).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('RFC 5424 lines', () => {
  it('a policy load is one line per change, with the subject Conjur names; control characters never break a line', () => {
    const policy = row(9, {
      action: 'policy',
      operation: 'update',
      role_id: 'a:user:admin',
      resource_id: 'a:policy:root',
      version: 3,
      message: 'a:user:admin loaded policy a:policy:root version 3: 2 added, 1 changed, 1 removed',
      details: JSON.stringify({
        added: ['added resource a:variable:x', 'added permission of a:host:h to execute on a:variable:x'],
        changed: ['changed annotation desc on a:variable:x'],
        removed: ['removed membership of a:user:bob in a:group:ops'],
      }),
    });
    const lines = formatRfc5424Lines(policy, 7);
    const sd = (s: string) => `[auth@43868 user="a:user:admin"][subject@43868 ${s}][policy@43868 id="a:policy:root" version="3"][client@43868 ip="127.0.0.1" request_id="r1"]`;
    expect(lines).toEqual([
      `<85>1 2026-01-01T00:00:00.000Z - conjur 7 policy ${sd('resource="a:variable:x"')}[action@43868 result="success" operation="add"][meta sequenceId="9"] a:user:admin added resource a:variable:x`,
      `<85>1 2026-01-01T00:00:00.000Z - conjur 7 policy ${sd('role="a:host:h" privilege="execute" resource="a:variable:x"')}[action@43868 result="success" operation="add"][meta sequenceId="9"] a:user:admin added permission of a:host:h to execute on a:variable:x`,
      `<85>1 2026-01-01T00:00:00.000Z - conjur 7 policy ${sd('resource="a:variable:x" annotation="desc"')}[action@43868 result="success" operation="change"][meta sequenceId="9"] a:user:admin changed annotation desc on a:variable:x`,
      `<85>1 2026-01-01T00:00:00.000Z - conjur 7 policy ${sd('role="a:group:ops" member="a:user:bob"')}[action@43868 result="success" operation="remove"][meta sequenceId="9"] a:user:admin removed membership of a:user:bob in a:group:ops`,
    ]);
    const injected = formatRfc5424Lines(row(10, { result: 'failure', reason: 'x', message: 'tried to fetch a:variable:v\n<86>1 forged line', resource_id: 'a:variable:"]x' }), 7);
    expect(injected).toHaveLength(1);
    expect(injected[0]).toContain('[subject@43868 resource="a:variable:\\"\\]x" version="1"]');
    expect(injected[0]).toMatch(/^<84>1 .* tried to fetch a:variable:v <86>1 forged line$/);
  });
});
