/**
 * GET /ui/…: the console's static files (built from web/ into dist/ui/ by
 * `npm ci`), same origin as the API. Every file is read into memory once, at
 * start, from a bounded listing of that directory: a request can only name a
 * key of that map, so no request path ever reaches the file system (no
 * traversal, no symlink surprises). Any other path under /ui/ without a file
 * extension is a client-side route and gets index.html.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RouteDeps } from '../context.js';
import { identifierFrom, type Ctx } from '../request.js';

/** Where `scripts/build-ui.mjs` writes the console (the same from src/ under vitest and from dist/ when built). */
export const DEFAULT_UI_DIR = fileURLToPath(new URL('../../../dist/ui/', import.meta.url));

/** Bounds on what is loaded: the console is a handful of files. */
const MAX_FILES = 64;
const MAX_TOTAL_BYTES = 8 * 1024 * 1024;

/** Default idle sign-out of the console, in minutes. */
export const DEFAULT_CONSOLE_IDLE_MINUTES = 15;

/**
 * The console's Content-Security-Policy: only its own files, no inline
 * script or style, no eval, never framed, no `<base>`, forms post only here.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

interface Asset {
  body: Uint8Array;
  type: string;
  etag: string;
}

/** Reads the built console into memory; an empty map when it has not been built. */
export function loadConsoleAssets(dir: string, idleMinutes: number): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!existsSync(dir)) return assets;
  let total = 0;
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      const st = lstatSync(path);
      if (st.isDirectory()) walk(path);
      else if (st.isFile()) {
        const type = TYPES[extname(name).toLowerCase()];
        if (!type || name.endsWith('.map')) continue;
        if (assets.size >= MAX_FILES) throw new Error(`console directory ${dir} holds more than ${MAX_FILES} files`);
        let body: Uint8Array = readFileSync(path);
        total += body.length;
        if (total > MAX_TOTAL_BYTES) throw new Error(`console directory ${dir} holds more than ${MAX_TOTAL_BYTES} bytes`);
        const key = relative(dir, path).split(sep).join('/');
        if (key === 'index.html') body = Buffer.from(withSettings(Buffer.from(body).toString('utf8'), idleMinutes));
        const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
        assets.set(key, { body, type, etag });
      }
    }
  };
  walk(dir);
  return assets;
}

/** The server's console settings, as `<meta>` (a CSP without inline script rules out a script block). */
function withSettings(html: string, idleMinutes: number): string {
  return html.replace('<!--coffer-settings-->', `<meta name="coffer-idle-minutes" content="${idleMinutes}">`);
}

function secure(headers: Headers): void {
  headers.set('Content-Security-Policy', CONSOLE_CSP);
  headers.set('X-Content-Type-Options', 'nosniff');
  headers.set('Referrer-Policy', 'no-referrer');
  headers.set('X-Frame-Options', 'DENY');
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Resource-Policy', 'same-origin');
  headers.set('Permissions-Policy', 'camera=(), microphone=(), geolocation=(), payment=()');
  // Revalidated on every load (ETag), so a new build is picked up at once.
  headers.set('Cache-Control', 'no-cache');
}

function send(c: Ctx, asset: Asset): Response {
  const headers = new Headers({ 'Content-Type': asset.type, ETag: asset.etag });
  secure(headers);
  if (c.req.header('if-none-match') === asset.etag) return new Response(null, { status: 304, headers });
  return new Response(asset.body, { status: 200, headers });
}

function missing(message: string, status: 404 | 503): Response {
  const headers = new Headers({ 'Content-Type': 'text/plain; charset=utf-8' });
  secure(headers);
  return new Response(message, { status, headers });
}

export function registerUi({ app, config }: RouteDeps): void {
  const assets = loadConsoleAssets(config.uiDir ?? DEFAULT_UI_DIR, config.consoleIdleMinutes ?? DEFAULT_CONSOLE_IDLE_MINUTES);
  const index = () => {
    const page = assets.get('index.html');
    return page ? undefined : missing('The console has not been built: run `npm run build` (npm ci does it).', 503);
  };

  app.get('/ui', (c) => index() ?? send(c, assets.get('index.html')!));

  app.get('/ui/:path{.+}', (c) => {
    const notBuilt = index();
    if (notBuilt) return notBuilt;
    // Decoded and checked like every identifier in a path (400 bad percent-encoding, 422 control characters).
    const path = identifierFrom(c, 1);
    const asset = assets.get(path);
    if (asset) return send(c, asset);
    // A path with an extension names a file, which does not exist; anything else is a page of the console.
    const last = path.slice(path.lastIndexOf('/') + 1);
    if (/\.[A-Za-z0-9]{1,8}$/.test(last)) return missing('Not found', 404);
    return send(c, assets.get('index.html')!);
  });
}
