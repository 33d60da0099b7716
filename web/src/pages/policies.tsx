/** The policy tree: every policy you can see, its sub-policies and the records it declares. */
import { useMemo, useState } from 'preact/hooks';
import { getJson, parseId, qs, type Identity } from '../api';
import { Disclosure, ErrorBox, IdLink, Loading, useAsync } from '../components/common';

export interface ResourceJson {
  id: string;
  owner: string;
  policy?: string;
  created_at: string;
  permissions: { privilege: string; role: string; policy?: string }[];
  annotations: { name: string; value: string; policy?: string }[];
  secrets?: { version: number; expires_at: string | null }[];
}

const PAGE = 1000;
const MAX_RECORDS = 20_000;

/** Every resource the caller can see (pages of 1000, at most 20,000). */
export async function listAll(account: string, signal: AbortSignal, extra: Record<string, string> = {}): Promise<{ rows: ResourceJson[]; truncated: boolean }> {
  const rows: ResourceJson[] = [];
  for (let offset = 0; offset < MAX_RECORDS; offset += PAGE) {
    const page = await getJson<ResourceJson[]>(`/resources/${encodeURIComponent(account)}${qs({ ...extra, limit: PAGE, offset })}`, { signal });
    rows.push(...page);
    if (page.length < PAGE) return { rows, truncated: false };
  }
  return { rows, truncated: true };
}

interface Node {
  id: string;
  children: Node[];
  records: ResourceJson[];
}

function buildTree(rows: ResourceJson[], account: string): Node[] {
  const nodes = new Map<string, Node>();
  const node = (id: string) => {
    let n = nodes.get(id);
    if (!n) nodes.set(id, (n = { id, children: [], records: [] }));
    return n;
  };
  for (const r of rows) if (parseId(r.id)?.kind === 'policy') node(r.id);
  const roots: Node[] = [];
  for (const r of rows) {
    const kind = parseId(r.id)?.kind;
    if (kind === 'policy') {
      const parent = r.policy && r.policy !== r.id ? r.policy : undefined;
      if (parent && nodes.has(parent)) nodes.get(parent)!.children.push(node(r.id));
      else roots.push(node(r.id));
    } else {
      const owner = r.policy && nodes.has(r.policy) ? r.policy : `${account}:policy:root`;
      node(owner).records.push(r);
      if (!rows.some((x) => x.id === owner) && !roots.includes(nodes.get(owner)!)) roots.push(nodes.get(owner)!);
    }
  }
  const sort = (n: Node) => {
    n.children.sort((a, b) => a.id.localeCompare(b.id));
    n.records.sort((a, b) => a.id.localeCompare(b.id));
    n.children.forEach(sort);
  };
  roots.forEach(sort);
  return roots.sort((a, b) => a.id.localeCompare(b.id));
}

function matches(n: Node, text: string): boolean {
  return n.id.toLowerCase().includes(text) || n.records.some((r) => r.id.toLowerCase().includes(text)) || n.children.some((c) => matches(c, text));
}

function Tree({ n, depth, text }: { n: Node; depth: number; text: string }) {
  if (text && !matches(n, text)) return null;
  const records = text ? n.records.filter((r) => r.id.toLowerCase().includes(text) || n.id.toLowerCase().includes(text)) : n.records;
  return (
    <li>
      <Disclosure
        name={n.id}
        open={depth < 2 || text !== ''}
        head={
          <>
            <span class="kind">policy</span> <IdLink id={n.id} page="resource" /> <span class="muted small">{n.records.length} records</span>
          </>
        }
      >
        {() => (
          <ul>
            {n.children.map((c) => (
              <Tree n={c} depth={depth + 1} text={text} />
            ))}
            {records.map((r) => (
              <li class="record">
                <span class="kind">{parseId(r.id)?.kind}</span> <IdLink id={r.id} />
              </li>
            ))}
          </ul>
        )}
      </Disclosure>
    </li>
  );
}

export function PoliciesPage({ who }: { who: Identity; params: URLSearchParams }) {
  const state = useAsync((signal) => listAll(who.account, signal), [who.account]);
  const [text, setText] = useState('');
  const tree = useMemo(() => (state.data ? buildTree(state.data.rows, who.account) : []), [state.data]);
  return (
    <section>
      <div class="page-head">
        <h1>Policies</h1>
        <label class="inline-search">
          Find
          <input type="search" value={text} onInput={(e) => setText(e.currentTarget.value.toLowerCase())} placeholder="id contains…" />
        </label>
      </div>
      <ErrorBox error={state.error} />
      {state.loading && !state.data && <Loading what="policies" />}
      {state.data && (
        <>
          <p class="muted small">
            {state.data.rows.length} records visible to {who.roleId}
            {state.data.truncated ? ' (only the first 20,000 are shown)' : ''}.
          </p>
          <ul class="tree">
            {tree.map((n) => (
              <Tree n={n} depth={0} text={text} />
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
