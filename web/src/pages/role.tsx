/** A role: its memberships, its members, and what it can reach, by privilege. */
import { useMemo } from 'preact/hooks';
import { ApiError, getJson, idPath, parseId, qs, type Identity } from '../api';
import { ErrorBox, IdLink, Loading, Time, useAsync } from '../components/common';
import { href } from '../router';
import { listAll, type ResourceJson } from './policies';

interface Grant {
  role: string;
  member: string;
  admin_option: boolean;
  ownership: boolean;
  policy?: string;
}

interface RoleJson {
  id: string;
  created_at: string;
  policy?: string;
  members: Grant[];
}

export function RolePage({ who, id }: { who: Identity; id: string }) {
  const valid = parseId(id) !== undefined;
  const role = useAsync((signal) => (valid ? getJson<RoleJson>(idPath('/roles', id), { signal }) : Promise.reject(new Error(`'${id}' is not a full id`))), [id]);
  const memberships = useAsync((signal) => getJson<Grant[]>(`${idPath('/roles', id)}${qs({ memberships: true })}`, { signal }), [id]);
  if (role.error) {
    return (
      <section>
        <h1 class="id-title">{id || 'Role'}</h1>
        <ErrorBox error={role.error} />
      </section>
    );
  }
  const r = role.data;
  if (!r) return <Loading what={id} />;
  return (
    <section class="role">
      <p class="crumb">
        <span class="kind">{parseId(r.id)?.kind} role</span>
      </p>
      <h1 class="id-title">{r.id}</h1>
      <p class="links">
        <a href={href('audit', { role: r.id })}>Audit events by it</a>
        <a href={href('resource', { id: r.id })}>Its resource: owner, annotations</a>
        <a href={href('explain', { role: r.id, privilege: 'execute' })}>Explain its access…</a>
      </p>
      <dl class="fields">
        <dt>Policy</dt>
        <dd>
          <IdLink id={r.policy} page="resource" />
        </dd>
        <dt>Created</dt>
        <dd>
          <Time iso={r.created_at} />
        </dd>
      </dl>
      <div class="two-col">
        <div>
          <h2>Member of</h2>
          <ErrorBox error={memberships.error} />
          {memberships.data && <GrantList grants={memberships.data} side="role" empty="Not a member of any role." />}
        </div>
        <div>
          <h2>Members</h2>
          <GrantList grants={r.members} side="member" empty="No members." />
        </div>
      </div>
      <h2>What it can reach</h2>
      <Reach who={who} id={r.id} />
    </section>
  );
}

function GrantList({ grants, side, empty }: { grants: Grant[]; side: 'role' | 'member'; empty: string }) {
  if (grants.length === 0) return <p class="muted">{empty}</p>;
  return (
    <ul class="idlist">
      {grants.map((g) => (
        <li>
          <IdLink id={g[side]} />
          {g.admin_option && <span class="tag">admin</span>}
          {g.ownership && <span class="tag">owner</span>}
          {g.policy && (
            <span class="muted small">
              {' '}
              via <IdLink id={g.policy} page="resource" />
            </span>
          )}
        </li>
      ))}
    </ul>
  );
}

/**
 * The resources the role can see (listed as the role: `?role=`), and on each
 * the privileges it holds: a permit to any role it holds (`?all`), or
 * ownership, which carries every privilege.
 */
function Reach({ who, id }: { who: Identity; id: string }) {
  const state = useAsync(
    async (signal) => {
      const [all, listed] = await Promise.all([getJson<string[]>(`${idPath('/roles', id)}${qs({ all: true })}`, { signal }), listAll(who.account, signal, { role: id })]);
      return { all: new Set(all), rows: listed.rows, truncated: listed.truncated };
    },
    [id],
  );
  const byPrivilege = useMemo(() => {
    const out = new Map<string, ResourceJson[]>();
    if (!state.data) return out;
    const { all, rows } = state.data;
    for (const r of rows) {
      if (r.id === id) continue;
      const privs = new Set<string>();
      if (all.has(r.owner)) privs.add('owns (every privilege)');
      for (const p of r.permissions) if (all.has(p.role)) privs.add(p.privilege);
      for (const p of privs) {
        if (!out.has(p)) out.set(p, []);
        out.get(p)!.push(r);
      }
    }
    return new Map([...out.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }, [state.data]);
  if (state.error) {
    return state.error instanceof ApiError && state.error.status === 403 ? (
      <p class="muted">Only a role that holds {id} can list what it reaches; you do not.</p>
    ) : (
      <ErrorBox error={state.error} />
    );
  }
  if (!state.data) return <Loading what="what it can reach" />;
  if (byPrivilege.size === 0) return <p class="muted">Nothing: it holds no privilege on any resource.</p>;
  return (
    <div class="reach">
      {[...byPrivilege.entries()].map(([privilege, rows]) => (
        <div class="reach-group" data-privilege={privilege}>
          <h3>
            {privilege} <span class="muted small">{rows.length}</span>
          </h3>
          <ul class="idlist">
            {rows.map((r) => (
              <li>
                <IdLink id={r.id} />{' '}
                {!privilege.startsWith('owns') && (
                  <a class="small" href={href('explain', { role: id, privilege, resource: r.id })}>
                    why?
                  </a>
                )}
              </li>
            ))}
          </ul>
        </div>
      ))}
      {state.data.truncated && <p class="muted small">Only the first 20,000 visible resources were considered.</p>}
    </div>
  );
}
