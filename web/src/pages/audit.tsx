/**
 * The audit explorer: every filter of GET /audit/{account}, cursor paging as
 * you scroll, an event drawer, the timeline, live mode, the chain badge and
 * NDJSON export of the current filter.
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { getJson, qs, request, type Identity } from '../api';
import { Drawer, ErrorBox, IdLink, Time } from '../components/common';
import { Timeline } from '../components/timeline';
import { ChainBadge } from '../components/chain';
import { href, navigate } from '../router';

export interface AuditEvent {
  seq: number;
  time: string;
  account: string | null;
  action: string;
  operation: string;
  result: 'success' | 'failure';
  role: string | null;
  resource: string | null;
  version: number | null;
  client_ip: string | null;
  request_id: string | null;
  user_agent: string | null;
  reason: string | null;
  message: string;
  details: unknown;
  hash: string;
}

interface AuditPage {
  events: AuditEvent[];
  next_cursor: string | null;
}

/** The query parameters of GET /audit/{account}, as the page's URL carries them. */
export const FILTERS = ['resource', 'role', 'action', 'result', 'since', 'until', 'q', 'order'] as const;
type Filters = Partial<Record<(typeof FILTERS)[number], string>>;

const ACTIONS = ['fetch', 'update', 'authn', 'policy', 'list', 'check', 'membership', 'password', 'api-key', 'identity-check', 'expire', 'host-factory'];
const PAGE_SIZE = 100;
const LIVE_MS = 2000;

function filtersOf(params: URLSearchParams): Filters {
  const f: Filters = {};
  for (const k of FILTERS) {
    const v = params.get(k);
    if (v) f[k] = v;
  }
  return f;
}

/** ISO → the value of a datetime-local input (local time, to the second). */
function toLocalInput(iso: string | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function fromLocalInput(v: string): string | undefined {
  if (!v) return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export function AuditPage({ who, params }: { who: Identity; params: URLSearchParams }) {
  const account = who.account;
  const filters = useMemo(() => filtersOf(params), [params.toString()]);
  const key = JSON.stringify(filters);
  const [events, setEvents] = useState<AuditEvent[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>();
  const [selected, setSelected] = useState<AuditEvent | undefined>();
  const [live, setLive] = useState(false);
  const [fresh, setFresh] = useState<Set<number>>(new Set());
  const [tick, setTick] = useState(0);
  const generation = useRef(0);
  const sentinel = useRef<HTMLDivElement>(null);

  const base = `/audit/${encodeURIComponent(account)}`;

  const loadPage = async (from: string | null, gen: number) => {
    setLoading(true);
    try {
      const page = await getJson<AuditPage>(`${base}${qs({ ...filters, limit: PAGE_SIZE, cursor: from })}`);
      if (gen !== generation.current) return;
      setEvents((prev) => (from === null ? page.events : [...prev, ...page.events]));
      setCursor(page.next_cursor);
      setError(undefined);
    } catch (err) {
      if (gen === generation.current) setError(err);
    } finally {
      if (gen === generation.current) setLoading(false);
    }
  };

  useEffect(() => {
    const gen = ++generation.current;
    setEvents([]);
    setCursor(null);
    setSelected(undefined);
    setFresh(new Set());
    void loadPage(null, gen);
  }, [key, account]);

  // Cursor paging as the end of the table scrolls into view.
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !cursor) return;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !loading && cursor) void loadPage(cursor, generation.current);
    });
    io.observe(el);
    return () => io.disconnect();
  }, [cursor, loading]);

  // Live mode: poll the newest page and put what is new on top.
  const descending = (filters.order ?? 'desc') === 'desc';
  useEffect(() => {
    if (!live || !descending) return;
    let stop = false;
    const gen = generation.current;
    const poll = async () => {
      try {
        const page = await getJson<AuditPage>(`${base}${qs({ ...filters, limit: PAGE_SIZE })}`);
        if (stop || gen !== generation.current) return;
        setEvents((prev) => {
          const top = prev[0]?.seq ?? 0;
          const added = page.events.filter((e) => e.seq > top);
          if (added.length === 0) return prev;
          setFresh(new Set(added.map((e) => e.seq)));
          setTick((t) => t + 1);
          return [...added, ...prev];
        });
      } catch (err) {
        if (!stop) setError(err);
      }
    };
    const timer = setInterval(poll, LIVE_MS);
    void poll();
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [live, key, account]);

  const setFilter = (patch: Filters) => {
    const next = { ...filters, ...patch };
    navigate(href('audit', next));
  };

  const chartRange = useMemo(() => {
    const until = filters.until ?? new Date(Date.now() + 60_000).toISOString();
    const since = filters.since ?? new Date(Date.parse(until) - 24 * 3_600_000).toISOString();
    return { since, until };
  }, [key, live ? Math.floor(tick / 5) : 0]);
  const chartFilters = { resource: filters.resource, role: filters.role, action: filters.action, result: filters.result, q: filters.q };

  return (
    <section class="audit">
      <div class="page-head">
        <h1>Audit log</h1>
        <ChainBadge account={account} />
      </div>
      <FilterForm filters={filters} onApply={(f) => navigate(href('audit', f))} />
      <Timeline account={account} filters={chartFilters} since={chartRange.since} until={chartRange.until} refresh={tick} onPick={(since, until) => setFilter({ since, until })} />
      <div class="toolbar">
        <label class="switch">
          <input type="checkbox" checked={live} disabled={!descending} onChange={(e) => setLive(e.currentTarget.checked)} /> Live
          {live && <span class="pulse" aria-hidden="true" />}
        </label>
        {!descending && <span class="muted small">Live mode needs newest-first order.</span>}
        <span class="muted small" role="status" aria-live="polite">
          {events.length} event{events.length === 1 ? '' : 's'} shown{cursor ? ', more below' : ''}
        </span>
        <Export account={account} filters={filters} />
      </div>
      <ErrorBox error={error} />
      <div class="table-wrap">
        <table class="events">
          <caption class="sr-only">Audit events, {descending ? 'newest' : 'oldest'} first. Press Enter on a row for its details.</caption>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Action</th>
              <th scope="col">Result</th>
              <th scope="col">Role</th>
              <th scope="col">Resource</th>
              <th scope="col">Client IP</th>
              <th scope="col">Request id</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <Row key={e.seq} e={e} fresh={fresh.has(e.seq)} selected={selected?.seq === e.seq} onOpen={() => setSelected(e)} onFilter={setFilter} />
            ))}
          </tbody>
        </table>
        {events.length === 0 && !loading && !error && <p class="empty">No events match these filters.</p>}
        <div ref={sentinel} class="sentinel" />
        {cursor && (
          <button type="button" class="more" disabled={loading} onClick={() => void loadPage(cursor, generation.current)}>
            {loading ? 'Loading…' : 'Load more'}
          </button>
        )}
        {loading && !cursor && <p class="muted">Loading…</p>}
      </div>
      {selected && <EventDrawer e={selected} onClose={() => setSelected(undefined)} onFilter={setFilter} />}
    </section>
  );
}

function Row({ e, fresh, selected, onOpen, onFilter }: { e: AuditEvent; fresh: boolean; selected: boolean; onOpen: () => void; onFilter: (f: Filters) => void }) {
  const onKey = (ev: KeyboardEvent) => {
    const tr = ev.currentTarget as HTMLTableRowElement;
    if (ev.target !== tr) return;
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      onOpen();
    } else if (ev.key === 'ArrowDown' || ev.key === 'j') {
      ev.preventDefault();
      (tr.nextElementSibling as HTMLElement | null)?.focus();
    } else if (ev.key === 'ArrowUp' || ev.key === 'k') {
      ev.preventDefault();
      (tr.previousElementSibling as HTMLElement | null)?.focus();
    }
  };
  const onClick = (ev: MouseEvent) => {
    if ((ev.target as Element).closest('a,button')) return;
    onOpen();
  };
  return (
    <tr tabIndex={0} class={`${fresh ? 'fresh' : ''} ${selected ? 'selected' : ''}`} data-seq={e.seq} onKeyDown={onKey} onClick={onClick} aria-label={`Event ${e.seq}: ${e.action} ${e.result}`}>
      <td class="nowrap">
        <Time iso={e.time} />
      </td>
      <td>{e.action}</td>
      <td>
        <span class={`pill ${e.result}`}>{e.result}</span>
      </td>
      <td>
        <IdCell id={e.role} onFilter={() => e.role && onFilter({ role: e.role })} what="role" />
      </td>
      <td>
        <IdCell id={e.resource} onFilter={() => e.resource && onFilter({ resource: e.resource })} what="resource" />
      </td>
      <td class="mono ip">{e.client_ip ?? '—'}</td>
      <td class="mono small reqid" title={e.request_id ?? undefined}>
        {e.request_id ?? '—'}
      </td>
    </tr>
  );
}

function IdCell({ id, onFilter, what }: { id: string | null; onFilter: () => void; what: string }) {
  if (!id) return <span class="muted">—</span>;
  return (
    <span class="idcell">
      <IdLink id={id} />
      <button type="button" class="icon small" onClick={onFilter} title={`Only events with this ${what}`} aria-label={`Filter by ${what} ${id}`}>
        ⊕
      </button>
    </span>
  );
}

function EventDrawer({ e, onClose, onFilter }: { e: AuditEvent; onClose: () => void; onFilter: (f: Filters) => void }) {
  // A fetch needs execute, a value update needs update: the explanation of the privilege the event used.
  const privilege = e.action === 'fetch' ? 'execute' : e.action === 'update' ? 'update' : undefined;
  const explain = e.role && e.resource && privilege ? href('explain', { role: e.role, privilege, resource: e.resource }) : undefined;
  const rows: [string, preact.ComponentChildren][] = [
    ['Sequence', String(e.seq)],
    ['Time', e.time],
    ['Account', e.account ?? '—'],
    ['Action', `${e.action} (${e.operation})`],
    ['Result', e.result],
    ['Role', <IdCell id={e.role} onFilter={() => e.role && onFilter({ role: e.role })} what="role" />],
    ['Resource', <IdCell id={e.resource} onFilter={() => e.resource && onFilter({ resource: e.resource })} what="resource" />],
    ['Version', e.version === null ? '—' : String(e.version)],
    ['Client IP', e.client_ip ?? '—'],
    ['Request id', e.request_id ?? '—'],
    ['User agent', e.user_agent ?? '—'],
    ['Reason', e.reason ?? '—'],
    ['Message', e.message],
    ['Hash', e.hash],
  ];
  return (
    <Drawer title={`Event ${e.seq}`} onClose={onClose}>
      <dl class="fields">
        {rows.map(([k, v]) => (
          <>
            <dt>{k}</dt>
            <dd class={k === 'Hash' || k === 'Request id' ? 'mono small' : ''}>{v}</dd>
          </>
        ))}
      </dl>
      {e.details !== null && e.details !== undefined && (
        <>
          <h3>Details</h3>
          <pre class="details">{JSON.stringify(e.details, null, 2)}</pre>
        </>
      )}
      {explain && (
        <p>
          <a href={explain}>Why {e.result === 'success' ? 'could' : 'could not'} this role {privilege} it? (explain)</a>
        </p>
      )}
    </Drawer>
  );
}

function FilterForm({ filters, onApply }: { filters: Filters; onApply: (f: Filters) => void }) {
  const [f, setF] = useState<Filters>(filters);
  useEffect(() => setF(filters), [JSON.stringify(filters)]);
  const field = (k: keyof Filters, label: string, placeholder = '') => (
    <label>
      {label}
      <input name={k} value={f[k] ?? ''} placeholder={placeholder} onInput={(e) => setF({ ...f, [k]: e.currentTarget.value || undefined })} />
    </label>
  );
  return (
    <form
      class="filters"
      role="search"
      aria-label="Filter audit events"
      onSubmit={(e) => {
        e.preventDefault();
        onApply(Object.fromEntries(Object.entries(f).filter(([, v]) => v)) as Filters);
      }}
    >
      {field('resource', 'Resource', 'variable:ci/db/password')}
      {field('role', 'Role', 'host:ci/executor-01')}
      <label>
        Action
        <input name="action" list="audit-actions" value={f.action ?? ''} onInput={(e) => setF({ ...f, action: e.currentTarget.value || undefined })} />
        <datalist id="audit-actions">
          {ACTIONS.map((a) => (
            <option value={a} />
          ))}
        </datalist>
      </label>
      <label>
        Result
        <select name="result" value={f.result ?? ''} onChange={(e) => setF({ ...f, result: e.currentTarget.value || undefined })}>
          <option value="">any</option>
          <option value="success">success</option>
          <option value="failure">failure</option>
        </select>
      </label>
      <label>
        Since
        <input name="since" type="datetime-local" step={1} value={toLocalInput(f.since)} onInput={(e) => setF({ ...f, since: fromLocalInput(e.currentTarget.value) })} />
      </label>
      <label>
        Until
        <input name="until" type="datetime-local" step={1} value={toLocalInput(f.until)} onInput={(e) => setF({ ...f, until: fromLocalInput(e.currentTarget.value) })} />
      </label>
      {field('q', 'Message contains', 'at least 3 characters')}
      <label>
        Order
        <select name="order" value={f.order ?? 'desc'} onChange={(e) => setF({ ...f, order: e.currentTarget.value === 'asc' ? 'asc' : undefined })}>
          <option value="desc">newest first</option>
          <option value="asc">oldest first</option>
        </select>
      </label>
      <div class="filter-actions">
        <button type="submit" class="primary">
          Apply
        </button>
        <button type="button" onClick={() => onApply({})}>
          Clear
        </button>
      </div>
    </form>
  );
}

/** Pages through GET /audit/{account} with the current filter and saves the events as NDJSON. */
function Export({ account, filters }: { account: string; filters: Filters }) {
  const [progress, setProgress] = useState<number | undefined>();
  const [error, setError] = useState<unknown>();
  const ctl = useRef<AbortController>();
  const run = async () => {
    ctl.current = new AbortController();
    const signal = ctl.current.signal;
    setError(undefined);
    setProgress(0);
    const lines: string[] = [];
    try {
      let cursor: string | null = null;
      do {
        const res = await request(`/audit/${encodeURIComponent(account)}${qs({ ...filters, limit: 1000, cursor })}`, { signal });
        const page = (await res.json()) as AuditPage;
        for (const e of page.events) lines.push(`${JSON.stringify(e)}\n`);
        setProgress(lines.length);
        cursor = page.next_cursor;
      } while (cursor && !signal.aborted);
      if (signal.aborted) return;
      const url = URL.createObjectURL(new Blob(lines, { type: 'application/x-ndjson' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = `coffer-audit-${account}-${new Date().toISOString().replace(/[:.]/g, '-')}.ndjson`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      if (!signal.aborted) setError(err);
    } finally {
      setProgress(undefined);
    }
  };
  return (
    <span class="export">
      {progress === undefined ? (
        <button type="button" onClick={() => void run()}>
          Export NDJSON
        </button>
      ) : (
        <>
          <span role="status">Exporting… {progress} events</span>
          <button type="button" onClick={() => ctl.current?.abort()}>
            Cancel
          </button>
        </>
      )}
      <ErrorBox error={error} />
    </span>
  );
}
