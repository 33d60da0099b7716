/**
 * End to end: `GET /` reports the Conjur OSS release whose API Coffer
 * implements, in both of the forms conjur-api-go's ServerVersion() reads
 * (reference §12), so the Go CLI allows `policy load --dry-run` and
 * `policy fetch` (it refuses both below 1.21.1); Coffer's own version is
 * reported beside it without being mistaken for it.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { VERSION } from '../../src/server.js';
import { CONJUR_API_VERSION } from '../../src/http/routes/misc.js';

let srv: TestServer;
let api: Client;

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
});
afterAll(() => srv.close());

/** conjur-api-go's parseVersionFromHTML: the first `<dd>Version X</dd>`, same pattern. */
function goParseHtml(body: string): string | undefined {
  return /<dd>\s*Version\s*([^\s<]+)\s*<\/dd>/.exec(body)?.[1];
}

/** conjur-api-go's ServerVersionFromRoot: JSON when Content-Type contains application/json, else the HTML pattern. */
function goParseRoot(contentType: string | null, body: string): string | undefined {
  if ((contentType ?? '').includes('application/json')) {
    const v = (JSON.parse(body) as Record<string, unknown>).version;
    return typeof v === 'string' ? v : undefined;
  }
  return goParseHtml(body);
}

/**
 * conjur-api-go's validateMinVersion: semver (Masterminds, which allows a
 * leading v and missing minor/patch) with any `-suffix` ignored, at least `min`.
 */
function goAtLeast(version: string, min: string): boolean {
  const parse = (v: string) => {
    const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/.exec(v);
    if (!m) throw new Error(`failed to parse server version: ${v}`);
    return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
  };
  const a = parse(version);
  const b = parse(min);
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return true;
}

describe('GET / (server version, as conjur-api-go reads it)', () => {
  it('the Go rule itself: refuses 0.1.0 (what Coffer used to report) and accepts 1.21.1 and 1.21.1-25', () => {
    expect(goAtLeast('0.1.0', '1.21.1')).toBe(false);
    expect(goAtLeast('1.21.0', '1.21.1')).toBe(false);
    expect(goAtLeast('1.21.1', '1.21.1')).toBe(true);
    expect(goAtLeast('1.21.1-25', '1.21.1')).toBe(true);
    expect(goParseHtml('<dd>Version 1.21.0.1-25</dd>')).toBe('1.21.0.1-25');
  });

  it('JSON, as the Go client asks for it (Accept: application/json, text/html): version is the Conjur release (≥ 1.21.1), coffer_version is ours', async () => {
    const r = await api.request('GET', '/', { headers: { Accept: 'application/json, text/html' } });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/json');
    expect(r.json).toEqual({ version: CONJUR_API_VERSION, coffer_version: VERSION });
    const seen = goParseRoot(r.headers.get('content-type'), r.text);
    expect(seen).toBe('1.21.1');
    expect(goAtLeast(seen!, '1.21.1')).toBe(true);
  });

  for (const accept of [undefined, 'text/html', '*/*']) {
    it(`HTML (Accept: ${accept ?? 'none'}): the Go client's <dd>Version X</dd> pattern finds the Conjur release, and Coffer's version is listed apart`, async () => {
      const r = await api.request('GET', '/', { headers: accept ? { Accept: accept } : {} });
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toContain('text/html');
      const seen = goParseRoot(r.headers.get('content-type'), r.text);
      expect(seen).toBe(CONJUR_API_VERSION);
      expect(goAtLeast(seen!, '1.21.1')).toBe(true);
      // Exactly one entry the Go pattern could match, so it cannot pick Coffer's own version.
      expect(r.text.match(/<dd>\s*Version/g)).toHaveLength(1);
      expect(r.text).toContain(`<dd>Coffer ${VERSION}</dd>`);
    });
  }

  it('GET /info answers 404, which conjur-api-go takes as "not Enterprise" before asking GET /', async () => {
    const r = await api.request('GET', '/info', { skipContract: true });
    expect([401, 404]).toContain(r.status);
  });
});
