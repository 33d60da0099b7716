/** A small history router: pages are /ui/<page>, ids and filters travel in the query string. */
import { useEffect, useState } from 'preact/hooks';

export const BASE = '/ui';

export interface Route {
  page: string;
  params: URLSearchParams;
}

function read(): Route {
  const path = location.pathname.startsWith(`${BASE}/`) ? location.pathname.slice(BASE.length + 1) : '';
  return { page: path.replace(/\/+$/, '') || 'audit', params: new URLSearchParams(location.search) };
}

const listeners = new Set<() => void>();

/** `/ui/<page>?<params>` */
export function href(page: string, params: Record<string, string | undefined> = {}): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') u.set(k, v);
  const q = u.toString();
  return `${BASE}/${page}${q ? `?${q}` : ''}`;
}

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  for (const l of listeners) l();
}

export function useRoute(): Route {
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const update = () => setRoute(read());
    listeners.add(update);
    addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      removeEventListener('popstate', update);
    };
  }, []);
  return route;
}

/** Turns a plain left click on an in-console link into client navigation. */
export function onLinkClick(e: MouseEvent): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.target as Element | null)?.closest?.('a');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(`${BASE}/`)) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
}
