/** The Coffer console: sign-in gate, navigation, theme, idle sign-out, pages. */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { identity, onSessionChange, signOut, type Identity } from './api';
import { href, onLinkClick, useRoute } from './router';
import { SignIn } from './pages/signin';
import { AuditPage } from './pages/audit';
import { PoliciesPage } from './pages/policies';
import { ResourcePage } from './pages/resource';
import { RolePage } from './pages/role';
import { ExplainPage } from './pages/explain';

/** Idle minutes from the server (`<meta name="coffer-idle-minutes">`, COFFER_CONSOLE_IDLE_MINUTES); 15 by default. */
function idleMinutes(): number {
  const n = Number(document.querySelector('meta[name="coffer-idle-minutes"]')?.getAttribute('content'));
  return Number.isFinite(n) && n > 0 ? n : 15;
}

type Theme = 'light' | 'dark';
const THEME_KEY = 'coffer-console-theme';

function initialTheme(): Theme {
  // Only the theme choice is stored (never a credential).
  const saved = localStorage.getItem(THEME_KEY);
  if (saved === 'light' || saved === 'dark') return saved;
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

function useIdleSignOut(active: boolean): void {
  useEffect(() => {
    if (!active) return;
    const limitMs = idleMinutes() * 60_000;
    let last = Date.now();
    const touch = () => {
      last = Date.now();
    };
    const events = ['keydown', 'pointerdown', 'wheel', 'touchstart'] as const;
    for (const e of events) addEventListener(e, touch, { passive: true, capture: true });
    const timer = setInterval(() => {
      if (Date.now() - last >= limitMs) void signOut(`Signed out after ${idleMinutes()} minutes without activity.`);
    }, Math.min(15_000, limitMs / 4));
    return () => {
      clearInterval(timer);
      for (const e of events) removeEventListener(e, touch, { capture: true });
    };
  }, [active]);
}

const PAGES: { page: string; label: string }[] = [
  { page: 'audit', label: 'Audit' },
  { page: 'policies', label: 'Policies' },
  { page: 'explain', label: 'Explain' },
];

function App() {
  const [who, setWho] = useState<Identity | undefined>(identity());
  const [notice, setNotice] = useState<string | undefined>();
  const [theme, setTheme] = useState<Theme>(initialTheme);
  const route = useRoute();
  useEffect(() => onSessionChange((w, why) => {
    setWho(w);
    setNotice(w ? undefined : why);
  }), []);
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);
  useIdleSignOut(who !== undefined);
  useEffect(() => {
    const title = PAGES.find((p) => p.page === route.page)?.label ?? route.page[0]!.toUpperCase() + route.page.slice(1);
    document.title = who ? `${title} · Coffer console` : 'Sign in · Coffer console';
  }, [route.page, who]);

  const toggleTheme = () => {
    const next = theme === 'dark' ? 'light' : 'dark';
    localStorage.setItem(THEME_KEY, next);
    setTheme(next);
  };

  return (
    <div class="shell" onClick={onLinkClick}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href('audit')}>
          Coffer <span>console</span>
        </a>
        {who && (
          <nav aria-label="Sections">
            {PAGES.map((p) => (
              <a href={href(p.page)} aria-current={route.page === p.page ? 'page' : undefined}>
                {p.label}
              </a>
            ))}
          </nav>
        )}
        <div class="top-right">
          <button type="button" class="ghost" onClick={toggleTheme} aria-label={`Switch to ${theme === 'dark' ? 'light' : 'dark'} theme`}>
            {theme === 'dark' ? '☀' : '☾'}
          </button>
          {who && (
            <>
              <span class="who" title={who.roleId}>
                {who.roleId}
              </span>
              <button type="button" class="ghost" onClick={() => void signOut('You signed out.')}>
                Sign out
              </button>
            </>
          )}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {!who ? <SignIn notice={notice} /> : <Page who={who} page={route.page} params={route.params} />}
      </main>
    </div>
  );
}

function Page({ who, page, params }: { who: Identity; page: string; params: URLSearchParams }) {
  switch (page) {
    case 'audit':
      return <AuditPage who={who} params={params} />;
    case 'policies':
      return <PoliciesPage who={who} params={params} />;
    case 'resource':
      return <ResourcePage who={who} id={params.get('id') ?? ''} />;
    case 'role':
      return <RolePage who={who} id={params.get('id') ?? ''} />;
    case 'explain':
      return <ExplainPage who={who} params={params} />;
    default:
      return (
        <section>
          <h1>Page not found</h1>
          <p>
            <a href={href('audit')}>Back to the audit log</a>
          </p>
        </section>
      );
  }
}

render(<App />, document.getElementById('app')!);
