/** Explain: does a role hold a privilege on a resource, and through which memberships and grants? */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Identity } from '../api';
import { ExplainFor } from '../components/explain-graph';
import { href, navigate } from '../router';

const PRIVILEGES = ['execute', 'read', 'update', 'create'];

/** `host:ci/x` → `acme:host:ci/x`; a full id stays as is. */
function full(account: string, id: string): string {
  const t = id.trim();
  return t.split(':').length >= 3 ? t : `${account}:${t}`;
}

export function ExplainPage({ who, params }: { who: Identity; params: URLSearchParams }) {
  const role = params.get('role') ?? '';
  const privilege = params.get('privilege') ?? 'execute';
  const resource = params.get('resource') ?? '';
  const [form, setForm] = useState({ role: role || who.roleId, privilege, resource });
  // Reset the form when the address changes (a link, back/forward), not after the first render: then it would
  // overwrite what was typed before the effect ran (seen: a role typed at once replaced by the signed-in user's).
  const shown = useRef(`${role}\n${privilege}\n${resource}`);
  useEffect(() => {
    const key = `${role}\n${privilege}\n${resource}`;
    if (key === shown.current) return;
    shown.current = key;
    setForm({ role: role || who.roleId, privilege, resource });
  }, [role, privilege, resource]);
  const submit = (e: Event) => {
    e.preventDefault();
    navigate(href('explain', { role: full(who.account, form.role), privilege: form.privilege, resource: full(who.account, form.resource) }));
  };
  return (
    <section>
      <h1>Explain</h1>
      <p class="muted">Why can a role reach a resource — or why not. Every path of memberships from the role to the permit or the ownership, each step with the policy that declared it.</p>
      <form class="explain-form" onSubmit={submit}>
        <label>
          Role
          <input name="role" value={form.role} required onInput={(e) => setForm({ ...form, role: e.currentTarget.value })} placeholder="host:ci/executor-01" />
        </label>
        <label>
          Privilege
          <input name="privilege" list="privileges" value={form.privilege} required onInput={(e) => setForm({ ...form, privilege: e.currentTarget.value })} />
          <datalist id="privileges">
            {PRIVILEGES.map((p) => (
              <option value={p} />
            ))}
          </datalist>
        </label>
        <label>
          Resource
          <input name="resource" value={form.resource} required onInput={(e) => setForm({ ...form, resource: e.currentTarget.value })} placeholder="variable:ci/db/password" />
        </label>
        <button type="submit" class="primary">
          Explain
        </button>
      </form>
      {role && resource && (
        <div class="explain-result" aria-live="polite">
          <ExplainFor account={who.account} role={role} privilege={privilege} resource={resource} />
        </div>
      )}
    </section>
  );
}
