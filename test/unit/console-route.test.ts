/**
 * GET /ui/…: the console's files come from memory only (no request reaches
 * the file system), every answer carries the strict headers, pages fall
 * back to index.html, and the build stays within its JavaScript budget.
 */
import { describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createApp } from '../../src/http/app.js';
import { CONSOLE_CSP, loadConsoleAssets } from '../../src/http/routes/ui.js';
import { tempDir } from '../helpers/tmp.js';
import { buildConsole, FIRST_LOAD_JS_BUDGET } from '../../scripts/build-ui.mjs';

// Route modules only capture services at registration, so a proxy that answers every property builds the app.
const anything: any = new Proxy(function () {}, { get: (_t, p) => (p === 'then' ? undefined : anything), apply: () => anything });

function appFor(uiDir: string, consoleIdleMinutes?: number) {
  const config = { bodyLimit: 1024, policyBodyLimit: 1024, trustedProxies: [], version: 'test', logError: () => undefined, uiDir, consoleIdleMinutes };
  return createApp(anything, config as unknown as Parameters<typeof createApp>[1]);
}

function fixture(): string {
  const root = tempDir('coffer-ui-');
  const dir = join(root, 'ui');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(dir, 'index.html'), '<!doctype html><head><!--coffer-settings--></head><div id="app"></div>');
  writeFileSync(join(dir, 'main.js'), 'console.log(1)');
  writeFileSync(join(dir, 'styles.css'), 'body{}');
  writeFileSync(join(dir, 'sub', 'x.svg'), '<svg/>');
  writeFileSync(join(dir, 'main.js.map'), '{}');
  writeFileSync(join(dir, 'notes.md'), 'unknown type');
  writeFileSync(join(root, 'secret.txt'), 'outside the console directory');
  symlinkSync(join(root, 'secret.txt'), join(dir, 'link.txt'));
  return dir;
}

const ROOT = join(import.meta.dirname, '..', '..');
const walk = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)]));

const get = (app: ReturnType<typeof appFor>, path: string, headers: Record<string, string> = {}) => app.request(`http://localhost${path}`, { headers });

function expectStrictHeaders(res: Response): void {
  expect(res.headers.get('content-security-policy')).toBe(CONSOLE_CSP);
  expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  expect(res.headers.get('referrer-policy')).toBe('no-referrer');
  expect(res.headers.get('x-frame-options')).toBe('DENY');
}

describe('the console route', () => {
  it("has a CSP without inline script or eval, and never framed", () => {
    expect(CONSOLE_CSP).toContain("default-src 'self'");
    expect(CONSOLE_CSP).toContain("script-src 'self'");
    expect(CONSOLE_CSP).toContain("style-src 'self'");
    expect(CONSOLE_CSP).toContain("frame-ancestors 'none'");
    expect(CONSOLE_CSP).toContain("base-uri 'none'");
    expect(CONSOLE_CSP).not.toMatch(/unsafe|\*|data:.*script/);
  });

  it('serves the built files with their types and the strict headers, and the idle setting as <meta>', async () => {
    const app = appFor(fixture(), 7);
    const page = await get(app, '/ui/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await page.text()).toContain('<meta name="coffer-idle-minutes" content="7">');
    expectStrictHeaders(page);
    const js = await get(app, '/ui/main.js');
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await js.text()).toBe('console.log(1)');
    expectStrictHeaders(js);
    expect((await get(app, '/ui/sub/x.svg')).headers.get('content-type')).toBe('image/svg+xml');
    expect((await get(app, '/ui')).status).toBe(200);
  });

  it('answers 304 to a matching If-None-Match', async () => {
    const app = appFor(fixture());
    const first = await get(app, '/ui/styles.css');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{22}"$/);
    const again = await get(app, '/ui/styles.css', { 'If-None-Match': etag });
    expect(again.status).toBe(304);
    expectStrictHeaders(again);
  });

  it('gives index.html for console pages and 404 for unknown files, source maps, unknown types and symlinks', async () => {
    const app = appFor(fixture());
    for (const page of ['/ui/audit', '/ui/resource?id=acme:variable:a.b', '/ui/explain', '/ui/a/b/c']) {
      const res = await get(app, page);
      expect(res.status, page).toBe(200);
      expect(await res.text(), page).toContain('<div id="app">');
    }
    for (const file of ['/ui/nope.js', '/ui/main.js.map', '/ui/notes.md', '/ui/link.txt']) {
      const res = await get(app, file);
      expect(res.status, file).toBe(404);
      expectStrictHeaders(res);
      expect(await res.text()).not.toContain('outside');
    }
  });

  it('lets no path reach outside the console directory', async () => {
    const app = appFor(fixture());
    for (const probe of ['/ui/../secret.txt', '/ui/..%2fsecret.txt', '/ui/%2e%2e/secret.txt', '/ui/%2e%2e%2fsecret.txt', '/ui/sub/../../secret.txt', '/ui//etc/passwd', '/ui/%2fetc%2fpasswd']) {
      const res = await get(app, probe);
      expect(await res.text(), probe).not.toMatch(/outside the console directory|root:/);
    }
    expect((await get(app, '/ui/%zz')).status).toBe(400);
    expect((await get(app, '/ui/a%01b')).status).toBe(422);
  });

  it('answers 503 with a hint when the console has not been built', async () => {
    const app = appFor(join(tempDir('coffer-ui-'), 'missing'));
    for (const path of ['/ui/', '/ui/audit', '/ui/main.js']) {
      const res = await get(app, path);
      expect(res.status).toBe(503);
      expect(await res.text()).toContain('npm run build');
    }
  });

  it('refuses to load a directory beyond its bounds (files)', () => {
    const dir = join(tempDir('coffer-ui-'), 'ui');
    mkdirSync(dir);
    for (let i = 0; i < 65; i++) writeFileSync(join(dir, `f${i}.js`), '');
    expect(() => loadConsoleAssets(dir, 15)).toThrow(/more than 64 files/);
  });

  it(`builds within the first-load JavaScript budget (${FIRST_LOAD_JS_BUDGET / 1024} KB gzipped), with no inline script in index.html`, async () => {
    const out = join(tempDir('coffer-ui-build-'), 'ui');
    const { files, firstLoadJsGzip } = await buildConsole(out, { quiet: true });
    expect(Object.keys(files).sort()).toEqual(['favicon.svg', 'index.html', 'main.js', 'styles.css']);
    expect(firstLoadJsGzip).toBeGreaterThan(5_000);
    expect(firstLoadJsGzip).toBeLessThanOrEqual(FIRST_LOAD_JS_BUDGET);
    const assets = loadConsoleAssets(out, 15);
    const html = Buffer.from(assets.get('index.html')!.body).toString('utf8');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    expect(html).not.toMatch(/style=/);
    const js = Buffer.from(assets.get('main.js')!.body).toString('utf8');
    expect(js).not.toMatch(/\beval\(|new Function\(|document\.write/);
  });

  it("renders data as text only: the console's sources never write HTML strings or keep a token in storage", () => {
    const sources = walk(join(ROOT, 'web', 'src'));
    expect(sources.length).toBeGreaterThan(8);
    const offending = sources.flatMap((file) => {
      const text = readFileSync(file, 'utf8');
      return [/dangerouslySetInnerHTML/, /\.innerHTML\b/, /\.outerHTML\b/, /insertAdjacentHTML/, /document\.write/, /\beval\(/, /new Function\(/, /sessionStorage\./, /document\.cookie/]
        .filter((re) => re.test(text))
        .map((re) => `${file}: ${re}`);
    });
    expect(offending).toEqual([]);
    // localStorage holds the theme choice only.
    const storageUses = sources.flatMap((file) => readFileSync(file, 'utf8').match(/localStorage\.\w+\([^)]*\)/g) ?? []);
    expect(storageUses.sort()).toEqual(['localStorage.getItem(THEME_KEY)', 'localStorage.setItem(THEME_KEY, next)']);
  });
});
