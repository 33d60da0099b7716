/**
 * A policy dry run as a readable plan, like `terraform plan`: what would be
 * created, how each updated record would change (before → after), and what
 * would be deleted — computed from the server's dry-run report.
 */
import { sanitize } from '../client/errors.js';
import type { Ctx } from './context.js';
import { paint } from './ui.js';

export interface DryRunItem {
  identifier: string;
  id?: string;
  type?: string;
  owner?: string;
  policy?: string;
  permissions?: Record<string, string[]>;
  permitted?: Record<string, string[]>;
  annotations?: Record<string, string>;
  members?: string[];
  memberships?: string[];
  restricted_to?: string[];
}

export interface DryRunReport {
  status: string;
  created: { items: DryRunItem[] };
  updated: { before: { items: DryRunItem[] }; after: { items: DryRunItem[] } };
  deleted: { items: DryRunItem[] };
}

const q = (s: string) => JSON.stringify(sanitize(s, 200));

/** The attributes of a record, one line each (for created records). */
function describe(item: DryRunItem): string[] {
  const lines: string[] = [];
  if (item.owner) lines.push(`owner: ${item.owner}`);
  for (const [k, v] of Object.entries(item.annotations ?? {})) lines.push(`annotation ${k} = ${q(v)}`);
  for (const [priv, roles] of Object.entries(item.permitted ?? {})) for (const r of roles) lines.push(`permit ${priv} to ${r}`);
  for (const [priv, resources] of Object.entries(item.permissions ?? {})) for (const r of resources) lines.push(`may ${priv} ${r}`);
  for (const m of item.members ?? []) lines.push(`member: ${m}`);
  for (const m of item.memberships ?? []) lines.push(`member of: ${m}`);
  if (item.restricted_to?.length) lines.push(`restricted to: ${item.restricted_to.join(', ')}`);
  return lines;
}

function setDiff(label: string, before: string[] = [], after: string[] = []): string[] {
  const b = new Set(before);
  const a = new Set(after);
  return [...after.filter((x) => !b.has(x)).map((x) => `+ ${label} ${x}`), ...before.filter((x) => !a.has(x)).map((x) => `- ${label} ${x}`)];
}

function mapDiff(label: (key: string) => string, before: Record<string, string[]> = {}, after: Record<string, string[]> = {}): string[] {
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return keys.flatMap((k) => setDiff(label(k), before[k], after[k]));
}

/** What changed between two versions of one record, one line each. */
export function changes(before: DryRunItem, after: DryRunItem): string[] {
  const lines: string[] = [];
  if ((before.owner ?? '') !== (after.owner ?? '')) lines.push(`~ owner: ${before.owner ?? '(none)'} → ${after.owner ?? '(none)'}`);
  if ((before.policy ?? '') !== (after.policy ?? '')) lines.push(`~ policy: ${before.policy ?? '(none)'} → ${after.policy ?? '(none)'}`);
  const ba = before.annotations ?? {};
  const aa = after.annotations ?? {};
  for (const k of [...new Set([...Object.keys(ba), ...Object.keys(aa)])].sort()) {
    if (!(k in ba)) lines.push(`+ annotation ${k} = ${q(aa[k]!)}`);
    else if (!(k in aa)) lines.push(`- annotation ${k} (was ${q(ba[k]!)})`);
    else if (ba[k] !== aa[k]) lines.push(`~ annotation ${k}: ${q(ba[k]!)} → ${q(aa[k]!)}`);
  }
  lines.push(...mapDiff((p) => `permit ${p} to`, before.permitted, after.permitted));
  lines.push(...mapDiff((p) => `may ${p}`, before.permissions, after.permissions));
  lines.push(...setDiff('member:', before.members, after.members));
  lines.push(...setDiff('member of:', before.memberships, after.memberships));
  const rb = (before.restricted_to ?? []).join(', ');
  const ra = (after.restricted_to ?? []).join(', ');
  if (rb !== ra) lines.push(`~ restricted to: ${rb || '(anywhere)'} → ${ra || '(anywhere)'}`);
  return lines;
}

function colourOf(line: string): 'green' | 'red' | 'yellow' | undefined {
  return line.startsWith('+') ? 'green' : line.startsWith('-') ? 'red' : line.startsWith('~') ? 'yellow' : undefined;
}

export function renderPlan(ctx: Ctx, title: string, report: DryRunReport): string[] {
  const created = report.created?.items ?? [];
  const before = report.updated?.before?.items ?? [];
  const after = report.updated?.after?.items ?? [];
  const deleted = report.deleted?.items ?? [];
  const out: string[] = [];
  const line = (text: string, indent = '') => {
    const clean = sanitize(text, 10_000);
    const colour = colourOf(clean);
    out.push(indent + (colour ? paint(ctx, colour, clean) : clean));
  };
  out.push(`Plan for ${title}: ${created.length} to create, ${after.length} to update, ${deleted.length} to delete.`);
  if (!created.length && !after.length && !deleted.length) {
    out.push('No changes.');
    return out;
  }
  out.push('');
  for (const item of created) {
    line(`+ ${item.identifier}`);
    for (const d of describe(item)) out.push(`      ${sanitize(d, 10_000)}`);
  }
  const beforeById = new Map(before.map((b) => [b.identifier, b]));
  for (const a of after) {
    line(`~ ${a.identifier}`);
    const b = beforeById.get(a.identifier);
    const diff = b ? changes(b, a) : describe(a);
    if (!diff.length) out.push('      (no visible change)');
    for (const d of diff) line(d, '      ');
  }
  for (const item of deleted) line(`- ${item.identifier}`);
  out.push('', 'This was a dry run: nothing was changed.');
  return out;
}
