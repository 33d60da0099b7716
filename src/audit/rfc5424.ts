/**
 * Conjur's audit line format (reference §6):
 *   <PRI>1 <ISO8601 ms UTC> - conjur <pid> <MSGID> [sd…] <message>
 * PRI = facility authpriv(10)*8 + severity: info 6 on success, warning 4 on
 * failure, notice 5 for policy changes (86, 84, 85).
 */
import type { AuditRow } from '../store/audit.js';

const ENTERPRISE = 43868;

function sdValue(v: string): string {
  return v.replace(/[\\"\]]/g, (c) => `\\${c}`);
}

function sd(id: string, params: Record<string, string | number | null | undefined>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => `${k}="${sdValue(String(v))}"`);
  return parts.length ? `[${id}@${ENTERPRISE} ${parts.join(' ')}]` : '';
}

export function formatRfc5424(e: AuditRow, pid = process.pid): string {
  const severity = e.result === 'failure' ? 4 : e.action === 'policy' ? 5 : 6;
  const pri = 10 * 8 + severity;
  const data = [
    sd('auth', { user: e.role_id }),
    sd('subject', { resource: e.resource_id, version: e.version }),
    sd('client', { ip: e.client_ip }),
    sd('action', { result: e.result, operation: e.operation }),
    sd('meta', { seq: e.seq, request_id: e.request_id }),
  ].join('');
  // Messages never hold line breaks in the log line (log injection).
  const message = e.message.replace(/[\r\n]+/g, ' ');
  return `<${pri}>1 ${e.time} - conjur ${pid} ${e.action} ${data || '-'} ${message}`;
}
