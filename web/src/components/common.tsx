/** Small shared pieces. Every id, annotation and audit field is rendered as a text node (JSX escapes it). */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, parseId } from '../api';
import { href } from '../router';

export const ROLE_KINDS = new Set(['user', 'host', 'group', 'layer', 'policy']);

/** A link to a record's page: roles to the role page, everything else to the resource page. */
export function IdLink({ id, page }: { id: string | null | undefined; page?: 'role' | 'resource' }) {
  if (!id) return <span class="muted">—</span>;
  const kind = parseId(id)?.kind;
  const target = page ?? (kind && ROLE_KINDS.has(kind) && kind !== 'policy' ? 'role' : 'resource');
  return (
    <a class="id" href={href(target, { id })} title={id}>
      {id}
    </a>
  );
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const text =
    error instanceof ApiError
      ? error.status === 404
        ? `Not found, or not visible to you (${error.message}).`
        : error.status === 403
          ? 'You are not permitted to do this.'
          : `${error.status}: ${error.message}`
      : error instanceof Error
        ? error.message
        : String(error);
  return (
    <p class="error" role="alert">
      {text}
    </p>
  );
}

export function Loading({ what }: { what?: string }) {
  return (
    <p class="muted" role="status" aria-live="polite">
      Loading{what ? ` ${what}` : ''}…
    </p>
  );
}

export interface AsyncState<T> {
  data?: T;
  error?: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` when `deps` change; the latest call wins. */
export function useAsync<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): AsyncState<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    setState((s) => ({ data: s.data, loading: true }));
    load(ctl.signal).then(
      (data) => !ctl.signal.aborted && setState({ data, loading: false }),
      (error) => !ctl.signal.aborted && setState({ error, loading: false }),
    );
    return () => ctl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

/** A side panel: focus moves into it on open and back on close; Escape closes it. */
export function Drawer({ title, onClose, children }: { title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLElement>(null);
  useEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    ref.current?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') onClose();
    };
    addEventListener('keydown', onKey);
    return () => {
      removeEventListener('keydown', onKey);
      before?.focus?.();
    };
  }, []);
  return (
    <aside class="drawer" role="dialog" aria-modal="false" aria-label={title} tabIndex={-1} ref={ref}>
      <header class="drawer-head">
        <h2>{title}</h2>
        <button type="button" class="icon" onClick={onClose} aria-label="Close details">
          ✕
        </button>
      </header>
      <div class="drawer-body">{children}</div>
    </aside>
  );
}

// One formatter for every cell: toLocaleString(…, options) builds a new Intl.DateTimeFormat per call.
const LOCAL_TIME = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });

/** Time as the auditor reads it: local date and time with seconds, and the ISO form on hover. */
export function Time({ iso }: { iso: string | null | undefined }) {
  if (!iso) return <span class="muted">—</span>;
  const d = new Date(iso);
  return (
    <time dateTime={iso} title={iso}>
      {Number.isNaN(d.getTime()) ? iso : LOCAL_TIME.format(d)}
    </time>
  );
}

/**
 * A disclosure: a toggle button beside a head that may hold links (a
 * <summary> may not: links inside it are nested interactive controls).
 * The body is rendered only while open.
 */
export function Disclosure({ name, head, open: initial = false, children }: { name: string; head: ComponentChildren; open?: boolean; children: () => ComponentChildren }) {
  const [open, setOpen] = useState(initial);
  useEffect(() => setOpen(initial), [initial]);
  return (
    <div class="disclosure">
      <div class="disclosure-head">
        <button type="button" class="icon toggle" aria-expanded={open} aria-label={`${open ? 'Collapse' : 'Expand'} ${name}`} onClick={() => setOpen(!open)}>
          {open ? '▾' : '▸'}
        </button>
        {head}
      </div>
      {open && <div class="disclosure-body">{children()}</div>}
    </div>
  );
}
