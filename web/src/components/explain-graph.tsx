/**
 * An explain answer drawn as a small graph: for every path, the role, the
 * roles it is a member of up to the one holding the permit (or owning the
 * resource), and the resource; each edge labelled with the policy (id and
 * version) that declared it. The same paths are listed as text beneath.
 */
import { getJson, qs } from '../api';
import { ErrorBox, IdLink, Loading, useAsync } from './common';

export interface PolicyRef {
  id: string;
  version: number | null;
}

export interface Explain {
  role: string;
  privilege: string;
  resource: string;
  allowed: boolean;
  paths: {
    grant: { type: 'permit' | 'ownership'; role: string; policy: PolicyRef | null };
    edges: { member: string; role: string; admin_option: boolean; policy: PolicyRef | null }[];
  }[];
  paths_truncated: boolean;
  reason: string | null;
  message: string;
}

export function fetchExplain(account: string, role: string, privilege: string, resource: string, signal?: AbortSignal): Promise<Explain> {
  return getJson<Explain>(`/explain/${encodeURIComponent(account)}${qs({ role, privilege, resource })}`, { signal });
}

const policyText = (p: PolicyRef | null) => (p ? `${p.id}${p.version !== null && p.version !== undefined ? ` v${p.version}` : ''}` : 'no policy (API)');
const short = (id: string, max = 30) => {
  const i = id.indexOf(':');
  const s = i > 0 ? id.slice(i + 1) : id;
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
};

interface Step {
  from: string;
  to: string;
  label: string;
  policy: PolicyRef | null;
}

function stepsOf(e: Explain, p: Explain['paths'][number]): Step[] {
  const steps: Step[] = p.edges.map((x) => ({ from: x.member, to: x.role, label: x.admin_option ? 'member (admin)' : 'member of', policy: x.policy }));
  steps.push({ from: p.grant.role, to: e.resource, label: p.grant.type === 'ownership' ? 'owns' : `permit ${e.privilege}`, policy: p.grant.policy });
  return steps;
}

const NODE_H = 30;
const GAP = 150;
const ROW_H = 78;

export function ExplainGraph({ e }: { e: Explain }) {
  if (!e.allowed || e.paths.length === 0) {
    return (
      <div class="explain-none" data-explain="none">
        <p class="verdict denied">
          <strong>No path.</strong> {e.role} does not hold <code>{e.privilege}</code> on {e.resource}.
        </p>
        <p class="muted">
          {e.reason === 'no_permit' ? 'No role it holds is permitted this privilege, and none of them owns the resource.' : e.reason ? `Reason: ${e.reason}.` : ''} {e.message}
        </p>
      </div>
    );
  }
  const rows = e.paths.map((p) => stepsOf(e, p));
  const nodeW = (id: string) => Math.min(230, short(id).length * 7 + 24);
  const widths = rows.map((steps) => [steps[0]!.from, ...steps.map((s) => s.to)].reduce((w, id) => w + nodeW(id), 0) + steps.length * GAP);
  const W = Math.max(...widths) + 20;
  const H = rows.length * ROW_H + 10;
  return (
    <div class="explain-yes" data-explain="allowed">
      <p class="verdict allowed">
        <strong>Allowed</strong> — {e.paths.length} path{e.paths.length === 1 ? '' : 's'}
        {e.paths_truncated ? ' (more exist; only these are shown)' : ''}.
      </p>
      <div class="graph-wrap" tabIndex={0} role="region" aria-label="Path graph (scrolls sideways)">
        <svg class="graph" viewBox={`0 0 ${W} ${H}`} width={W} height={H} role="img" aria-label={`${e.paths.length} paths from ${e.role} to ${e.resource}; listed below as text`}>
          <defs>
            <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" class="arrowhead" />
            </marker>
          </defs>
          {rows.map((steps, r) => {
            const y = 10 + r * ROW_H + 20;
            let x = 10;
            const ids = [steps[0]!.from, ...steps.map((s) => s.to)];
            const boxes = ids.map((id, i) => {
              const w = nodeW(id);
              const box = { id, x, w, last: i === ids.length - 1 };
              x += w + GAP;
              return box;
            });
            return (
              <g class="path-row">
                {steps.map((s, i) => {
                  const a = boxes[i]!;
                  const b = boxes[i + 1]!;
                  const x1 = a.x + a.w;
                  const x2 = b.x;
                  const mid = (x1 + x2) / 2;
                  return (
                    <g class={`edge ${i === steps.length - 1 ? 'grant' : ''}`}>
                      <line x1={x1} y1={y + NODE_H / 2} x2={x2 - 2} y2={y + NODE_H / 2} marker-end="url(#arrow)" />
                      <text x={mid} y={y + NODE_H / 2 - 6} text-anchor="middle" class="edge-label">
                        {s.label}
                      </text>
                      <text x={mid} y={y + NODE_H / 2 + 16} text-anchor="middle" class="edge-policy">
                        <title>{policyText(s.policy)}</title>
                        {short(policyText(s.policy), 22)}
                      </text>
                    </g>
                  );
                })}
                {boxes.map((b) => (
                  <g class={`node ${b.last ? 'resource' : ''}`}>
                    <title>{b.id}</title>
                    <rect x={b.x} y={y} width={b.w} height={NODE_H} rx={6} />
                    <text x={b.x + b.w / 2} y={y + NODE_H / 2 + 4} text-anchor="middle">
                      {short(b.id)}
                    </text>
                  </g>
                ))}
              </g>
            );
          })}
        </svg>
      </div>
      <ol class="paths">
        {e.paths.map((p) => (
          <li>
            {stepsOf(e, p).map((s, i) => (
              <span class="step">
                {i === 0 && <IdLink id={s.from} />} <span class="muted">—{s.label} ({policyText(s.policy)})→</span> <IdLink id={s.to} />
              </span>
            ))}
          </li>
        ))}
      </ol>
    </div>
  );
}

/** Fetches and draws one explain answer. */
export function ExplainFor({ account, role, privilege, resource }: { account: string; role: string; privilege: string; resource: string }) {
  const state = useAsync((signal) => fetchExplain(account, role, privilege, resource, signal), [account, role, privilege, resource]);
  if (state.error) return <ErrorBox error={state.error} />;
  if (!state.data) return <Loading what="the explanation" />;
  return <ExplainGraph e={state.data} />;
}
