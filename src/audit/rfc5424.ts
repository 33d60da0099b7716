/**
 * Conjur's audit line format (reference §6):
 *   <PRI>1 <ISO8601 ms UTC> - conjur <pid> <MSGID> [sd…] <message>
 * PRI = facility authpriv(10)*8 + severity: info 6 on success, warning 4 on
 * failure, notice 5 for policy changes (86, 84, 85); whoami (`identity-check`)
 * uses facility auth(4): 38. Structured data uses CyberArk's enterprise number
 * 43868 (`auth`, `subject`, `client`, `action`, `policy`), plus the
 * IANA-registered `meta sequenceId` carrying the event's sequence number.
 */
import type { AuditRow } from '../store/audit.js';

const ENTERPRISE = 43868;
const AUTHPRIV = 10;
const AUTH = 4;

type Params = Record<string, string | number | null | undefined>;

/** RFC 5424 §6.3.3: `"`, `\` and `]` are escaped inside a PARAM-VALUE. */
function sdValue(v: string): string {
  return v.replace(/[\\"\]]/g, (c) => `\\${c}`);
}

function sd(id: string, params: Params): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => `${k}="${sdValue(String(v))}"`);
  return parts.length ? `[${id} ${parts.join(' ')}]` : '';
}

const cyberark = (name: string, params: Params) => sd(`${name}@${ENTERPRISE}`, params);

/** MSGID is 1–32 printable ASCII characters without spaces. */
function msgId(action: string): string {
  return action.replace(/[^!-~]/g, '_').slice(0, 32) || '-';
}

/** A message never holds line breaks or other control characters in a log line (log injection). */
function oneLine(message: string): string {
  // eslint-disable-next-line no-control-regex
  return message.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ');
}

function details(e: AuditRow): Record<string, unknown> {
  if (e.details === null) return {};
  try {
    const parsed = JSON.parse(e.details) as unknown;
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function line(e: AuditRow, pid: number, severity: number, facility: number, msgid: string, data: string[], message: string): string {
  const sdText = data.join('') || '-';
  return `<${facility * 8 + severity}>1 ${e.time} - conjur ${pid} ${msgId(msgid)} ${sdText} ${oneLine(message)}`;
}

const client = (e: AuditRow) => cyberark('client', { ip: e.client_ip, request_id: e.request_id });
const meta = (e: AuditRow) => sd('meta', { sequenceId: e.seq });

/** The structured data Conjur writes for each kind of event. */
function structuredData(e: AuditRow): string[] {
  const d = details(e);
  const action = cyberark('action', { result: e.result, operation: e.operation });
  switch (e.action) {
    case 'authn':
      return [
        cyberark('subject', { role: e.resource_id }),
        cyberark('auth', { user: e.role_id, authenticator: str(d.authenticator), service: str(d.service) }),
        client(e),
        action,
        meta(e),
      ];
    case 'check':
      return [
        cyberark('auth', { user: e.role_id }),
        cyberark('subject', { resource: e.resource_id, role: str(d.role), privilege: str(d.privilege) }),
        client(e),
        action,
        meta(e),
      ];
    case 'policy':
      return [
        cyberark('auth', { user: e.role_id }),
        cyberark('subject', { resource: e.resource_id }),
        cyberark('policy', { id: e.resource_id, version: e.version }),
        client(e),
        action,
        meta(e),
      ];
    default:
      return [
        cyberark('auth', { user: e.role_id }),
        cyberark('subject', { resource: e.resource_id, version: e.version }),
        client(e),
        action,
        meta(e),
      ];
  }
}

/** Formats one event as one line (a policy load as its summary line). */
export function formatRfc5424(e: AuditRow, pid = process.pid): string {
  const severity = e.result === 'failure' ? 4 : e.action === 'policy' ? 5 : 6;
  const facility = e.action === 'identity-check' ? AUTH : AUTHPRIV;
  return line(e, pid, severity, facility, e.action, structuredData(e), e.message);
}

/** What a policy change line is about, from Coffer's change text (`added permission of R to P on X`, …). */
function changeSubject(change: string): Params {
  let m = /^\w+ (resource|role) (\S+)$/.exec(change);
  if (m) return { [m[1]!]: m[2] };
  m = /^\w+ permission of (\S+) to (\S+) on (\S+)$/.exec(change);
  if (m) return { role: m[1], privilege: m[2], resource: m[3] };
  m = /^\w+ (?:membership|admin option) of (\S+) in (\S+)$/.exec(change);
  if (m) return { role: m[2], member: m[1] };
  m = /^\w+ ownership of (\S+) in (\S+)$/.exec(change);
  if (m) return { resource: m[2], owner: m[1] };
  m = /^\w+ annotation (.+) on (\S+)$/.exec(change);
  if (m) return { resource: m[2], annotation: m[1] };
  m = /^\w+ (?:owner|credentials|restricted_to) of (\S+)/.exec(change);
  if (m) return { role: m[1] };
  return {};
}

const CHANGE_OPERATION = { added: 'add', changed: 'change', removed: 'remove' } as const;

/**
 * The lines Conjur would write for an event. A successful policy load becomes
 * one line per changed row (`U added resource R`, operation add/change/remove),
 * as Conjur logs it; every other event is one line.
 */
export function formatRfc5424Lines(e: AuditRow, pid = process.pid): string[] {
  if (e.action !== 'policy' || e.result !== 'success') return [formatRfc5424(e, pid)];
  const d = details(e);
  const lines: string[] = [];
  for (const key of ['added', 'changed', 'removed'] as const) {
    const changes = Array.isArray(d[key]) ? (d[key] as unknown[]).filter((c): c is string => typeof c === 'string') : [];
    for (const change of changes) {
      const data = [
        cyberark('auth', { user: e.role_id }),
        cyberark('subject', changeSubject(change)),
        cyberark('policy', { id: e.resource_id, version: e.version }),
        client(e),
        cyberark('action', { result: e.result, operation: CHANGE_OPERATION[key] }),
        meta(e),
      ];
      lines.push(line(e, pid, 5, AUTHPRIV, 'policy', data, `${e.role_id ?? '-'} ${change}`));
    }
  }
  return lines.length ? lines : [formatRfc5424(e, pid)];
}
