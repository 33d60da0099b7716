/**
 * A resource: kind, owner, policy, annotations, permissions, the roles
 * permitted each privilege, secret versions with the dates the audit log
 * gives them, "reveal" (a real, audited fetch; hidden again), and who can
 * execute it and why.
 */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, getJson, getText, idPath, parseId, qs, type Identity } from '../api';
import { Disclosure, ErrorBox, IdLink, Loading, ROLE_KINDS, Time, useAsync } from '../components/common';
import { ExplainFor } from '../components/explain-graph';
import { href } from '../router';
import type { ResourceJson } from './policies';
import type { AuditEvent } from './audit';

const BASE_PRIVILEGES = ['read', 'execute', 'update'];
const REVEAL_SECONDS = 30;
const EXPLAINED_AT_ONCE = 3;
const MAX_WHY_ROLES = 50;

export function ResourcePage({ who, id }: { who: Identity; id: string }) {
  const parsed = parseId(id);
  const state = useAsync((signal) => (parsed ? getJson<ResourceJson>(idPath('/resources', id), { signal }) : Promise.reject(new Error(`'${id}' is not a full id (account:kind:identifier)`))), [id]);
  if (state.error) {
    return (
      <section>
        <h1 class="id-title">{id || 'Resource'}</h1>
        <ErrorBox error={state.error} />
      </section>
    );
  }
  const r = state.data;
  if (!r) return <Loading what={id} />;
  const kind = parsed!.kind;
  const privileges = [...new Set([...BASE_PRIVILEGES, ...r.permissions.map((p) => p.privilege)])].sort();
  return (
    <section class="resource">
      <p class="crumb">
        <span class="kind">{kind}</span>
      </p>
      <h1 class="id-title">{r.id}</h1>
      <p class="links">
        <a href={href('audit', { resource: r.id })}>Audit events about it</a>
        {ROLE_KINDS.has(kind) && <a href={href('role', { id: r.id })}>Its role: memberships and reach</a>}
        <a href={href('explain', { resource: r.id, privilege: 'execute' })}>Explain access…</a>
      </p>
      <dl class="fields">
        <dt>Kind</dt>
        <dd>{kind}</dd>
        <dt>Owner</dt>
        <dd>
          <IdLink id={r.owner} />
        </dd>
        <dt>Policy</dt>
        <dd>
          <IdLink id={r.policy} page="resource" />
        </dd>
        <dt>Created</dt>
        <dd>
          <Time iso={r.created_at} />
        </dd>
      </dl>

      <h2>Annotations</h2>
      {r.annotations.length === 0 ? (
        <p class="muted">None.</p>
      ) : (
        <div class="table-wrap" tabIndex={0} role="region" aria-label="Annotations">
          <table class="kv">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Value</th>
                <th scope="col">Policy</th>
              </tr>
            </thead>
            <tbody>
              {r.annotations.map((a) => (
                <tr>
                  <td class="mono">{a.name}</td>
                  <td class="annotation-value">{a.value}</td>
                  <td>
                    <IdLink id={a.policy} page="resource" />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      <h2>Permissions</h2>
      {r.permissions.length === 0 ? (
        <p class="muted">No role is permitted anything on it directly (its owner holds every privilege).</p>
      ) : (
        <div class="table-wrap" tabIndex={0} role="region" aria-label="Permissions">
          <table class="kv">
            <thead>
              <tr>
                <th scope="col">Privilege</th>
                <th scope="col">Role</th>
                <th scope="col">Policy</th>
              </tr>
            </thead>
            <tbody>
              {r.permissions.map((p) => (
                <tr>
                  <td>{p.privilege}</td>
                  <td>
                    <IdLink id={p.role} />
                  </td>
                  <td>
                    <IdLink id={p.policy} page="resource" />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      <h2>Permitted roles by privilege</h2>
      <PermittedRoles id={r.id} privileges={privileges} />

      {kind === 'variable' && <Versions who={who} r={r} />}

      {(kind === 'variable' || kind === 'webservice' || kind === 'host_factory' || r.permissions.some((p) => p.privilege === 'execute')) && (
        <>
          <h2>Who can execute this, and why</h2>
          <WhoAndWhy who={who} id={r.id} />
        </>
      )}
    </section>
  );
}

function PermittedRoles({ id, privileges }: { id: string; privileges: string[] }) {
  const [privilege, setPrivilege] = useState(privileges.includes('execute') ? 'execute' : privileges[0]!);
  const state = useAsync((signal) => getJson<string[]>(`${idPath('/resources', id)}${qs({ permitted_roles: true, privilege })}`, { signal }), [id, privilege]);
  return (
    <div class="permitted">
      <div class="tabs" role="group" aria-label="Privilege">
        {privileges.map((p) => (
          <button type="button" aria-pressed={p === privilege} onClick={() => setPrivilege(p)}>
            {p}
          </button>
        ))}
      </div>
      <ErrorBox error={state.error} />
      {state.data && (
        <>
          <p class="muted small">
            {state.data.length} role{state.data.length === 1 ? '' : 's'} hold <code>{privilege}</code> (directly, through membership, or as owner).
          </p>
          <ul class="idlist">
            {state.data.map((role) => (
              <li>
                <IdLink id={role} />{' '}
                <a class="small" href={href('explain', { role, privilege, resource: id })}>
                  why?
                </a>
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}

/** For each role permitted `execute`, the explain paths (the first few drawn at once, the rest on request). */
function WhoAndWhy({ who, id }: { who: Identity; id: string }) {
  const state = useAsync((signal) => getJson<string[]>(`${idPath('/resources', id)}${qs({ permitted_roles: true, privilege: 'execute' })}`, { signal }), [id]);
  if (state.error) return <ErrorBox error={state.error} />;
  if (!state.data) return <Loading what="roles" />;
  // Users and hosts are who actually fetch; groups, layers and policies are how they get there.
  const actors = state.data.filter((r) => ['user', 'host'].includes(parseId(r)?.kind ?? ''));
  const shown = (actors.length ? actors : state.data).slice(0, MAX_WHY_ROLES);
  if (shown.length === 0) return <p class="muted">No role can execute it.</p>;
  return (
    <ul class="why">
      {shown.map((role, i) => (
        <li data-role={role}>
          <Disclosure name={`why ${role} can execute it`} open={i < EXPLAINED_AT_ONCE} head={<IdLink id={role} />}>
            {() => <ExplainFor account={who.account} role={role} privilege="execute" resource={id} />}
          </Disclosure>
        </li>
      ))}
      {state.data.length > shown.length && <li class="muted small">… and {state.data.length - shown.length} more roles (see Permitted roles).</li>}
    </ul>
  );
}

function Versions({ who, r }: { who: Identity; r: ResourceJson }) {
  const versions = [...(r.secrets ?? [])].sort((a, b) => b.version - a.version);
  // The API keeps no date per version; the audit log does (each `update` event carries the version it wrote).
  const dates = useAsync(
    (signal) => getJson<{ events: AuditEvent[] }>(`/audit/${encodeURIComponent(who.account)}${qs({ resource: r.id, action: 'update', result: 'success', limit: 1000 })}`, { signal }),
    [r.id],
  );
  const byVersion = new Map<number, AuditEvent>();
  for (const e of dates.data?.events ?? []) if (e.version !== null && !byVersion.has(e.version)) byVersion.set(e.version, e);
  return (
    <>
      <h2>Secret versions</h2>
      {versions.length === 0 ? (
        <p class="muted">No value has been set.</p>
      ) : (
        <div class="table-wrap" tabIndex={0} role="region" aria-label="Secret versions">
          <table class="kv versions">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Set at</th>
                <th scope="col">Set by</th>
                <th scope="col">Expires</th>
                <th scope="col">Value</th>
              </tr>
            </thead>
            <tbody>
              {versions.map((v) => {
                const e = byVersion.get(v.version);
                return (
                  <tr>
                    <td>{v.version}</td>
                    <td>{e ? <Time iso={e.time} /> : <span class="muted small">{dates.loading ? '…' : 'not in the audit log you can read'}</span>}</td>
                    <td>{e ? <IdLink id={e.role} /> : '—'}</td>
                    <td>{v.expires_at ? <Time iso={v.expires_at} /> : '—'}</td>
                    <td>
                      <Reveal id={r.id} version={v.version} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

/** Fetches one version's value (needs execute; the server audits it as a fetch) and hides it again. */
function Reveal({ id, version }: { id: string; version: number }) {
  const [value, setValue] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();
  const [left, setLeft] = useState(0);
  useEffect(() => {
    if (value === undefined) return;
    const t = setInterval(() => setLeft((s) => s - 1), 1000);
    return () => clearInterval(t);
  }, [value]);
  useEffect(() => {
    if (value !== undefined && left <= 0) setValue(undefined);
  }, [left]);
  const reveal = async () => {
    setError(undefined);
    try {
      const text = await getText(`${idPath('/secrets', id)}${qs({ version })}`, { accept: '*/*' });
      setValue(text);
      setLeft(REVEAL_SECONDS);
    } catch (err) {
      setError(err instanceof ApiError && (err.status === 403 || err.status === 404) ? new Error('You may not fetch this value (execute is needed).') : err);
    }
  };
  if (value !== undefined) {
    return (
      <span class="revealed">
        <code class="secret">{value}</code>
        <button type="button" class="small" onClick={() => setValue(undefined)}>
          Hide
        </button>
        <span class="muted small">hides in {left} s</span>
      </span>
    );
  }
  return (
    <span>
      <span class="masked" aria-label="hidden value">
        ••••••••
      </span>{' '}
      <button type="button" class="small" onClick={() => void reveal()} title="Fetches the value (recorded in the audit log as a fetch)">
        Reveal v{version}
      </button>
      <ErrorBox error={error} />
    </span>
  );
}
