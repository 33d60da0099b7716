/**
 * End to end: the audit API's q filter (a literal, ASCII-case-insensitive
 * substring of the message, served by a trigram index) against a naive
 * filter of the full list — special characters, LIKE wildcards, FTS5 syntax
 * and operators, random strings — q's limits (422, nothing lost), and
 * result and q with cursor paging and the NDJSON export.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';

let srv: TestServer;
let api: Client;
let admin: string;
const A = () => srv.account;

interface Event {
  seq: number;
  result: string;
  message: string;
}

/** Ids of variables that do not exist: each failed fetch logs a message naming the id. */
const ODD_IDS = [
  'tried%fetch',
  'under_score',
  'back\\slash',
  'say "hi" * (x): ^start -minus',
  'cats AND dogs NEAR(x y) OR NOT z',
  'ÉCOLE',
  'école',
  'MiXeD CaSe',
  "it's {braces} [brackets] +plus",
  '💥 emoji',
];

async function events(query = ''): Promise<Event[]> {
  const r = await api.request('GET', `/audit/${A()}?limit=1000${query}`, { token: admin });
  expect(r.status, r.text).toBe(200);
  expect(r.json.next_cursor).toBeNull();
  return r.json.events;
}
const seqs = (list: Event[]) => list.map((e) => e.seq);
const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());
const containing = (list: Event[], q: string) => list.filter((e) => asciiLower(e.message).includes(asciiLower(q)));
const qParam = (q: string) => `&q=${encodeURIComponent(q)}`;

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  expect((await api.loadPolicy(admin, 'POST', 'root', '- !variable plain\n')).status).toBe(201);
  expect((await api.setSecret(admin, 'plain', 'v')).status).toBe(201);
  for (let i = 0; i < 3; i++) expect((await api.getSecret(admin, 'plain')).status).toBe(200);
  for (const id of ODD_IDS) {
    const r = await api.request('GET', `/secrets/${A()}/variable/${encodeURIComponent(id)}`, { token: admin });
    expect(r.status, id).toBe(404);
  }
});
afterAll(() => srv.close());

describe('q', () => {
  it.each([
    ['a plain substring', 'tried to fetch', 10],
    ['ASCII case ignored', 'TRIED TO FETCH', 10],
    ['% taken literally', 'tried%fetch', 1],
    ['% not a wildcard', 'tried%to', 0],
    ['_ taken literally', 'under_score', 1],
    ['_ not a wildcard', 'tried_to', 0],
    ['backslash', 'back\\slash', 1],
    ['double quotes', 'say "hi"', 1],
    ['FTS5 syntax * ( ) : ^ -', '* (x): ^start -minus', 1],
    ['AND taken literally', 'cats AND dogs', 1],
    ['NEAR( taken literally', 'NEAR(x y)', 1],
    ['OR NOT taken literally', 'OR NOT z', 1],
    ['a quote between spaces', ' " ', 0],
    ['quotes and a star', 'y "hi" *', 1],
    ['non-ASCII case is not folded (É)', 'ÉCO', 1],
    ['non-ASCII case is not folded (é)', 'éco', 1],
    ['ASCII letters around non-ASCII', 'cole', 2],
    ['mixed case', 'mixed case', 1],
    ["' { } [ ] +", "it's {braces} [brackets] +plus", 1],
    ['emoji', '💥 e', 1],
    ['no match', 'zzz-no-such-text', 0],
  ])('%s: %j matches what a substring search of the full list finds', async (_name, q, count) => {
    const all = await events();
    const found = await events(qParam(q));
    expect(seqs(found)).toEqual(seqs(containing(all, q)));
    expect(found.length).toBe(count);
  });

  it('random q strings answer 200 with exactly the events whose message contains them (never a 500)', async () => {
    const all = await events();
    const alphabet = [...'aAeéÉ%_\\"\'*():^-+ {}[]', 'AND', 'NEAR', 'OR', 'NOT', 'tried', 'fetch', '💥', 'ß', '\t'];
    const fromMessages = fc
      .tuple(fc.constantFrom(...all.map((e) => e.message)), fc.nat(), fc.integer({ min: 3, max: 20 }))
      .map(([m, i, n]) => [...m].slice(i % m.length, (i % m.length) + n).join(''));
    const random = fc.array(fc.constantFrom(...alphabet), { minLength: 3, maxLength: 8 }).map((p) => p.join(''));
    let matched = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof(random, fromMessages).filter((q) => [...q].length >= 3), async (q) => {
        const r = await api.request('GET', `/audit/${A()}?limit=1000${qParam(q)}`, { token: admin });
        expect(r.status, `${q}: ${r.text}`).toBe(200);
        const expected = seqs(containing(all, q));
        expect(seqs(r.json.events), q).toEqual(expected);
        if (expected.length > 0) matched++;
      }),
      { numRuns: 60 },
    );
    expect(matched).toBeGreaterThan(10);
  });

  it.each([
    ['one character', 'a'],
    ['two characters', 'ab'],
    ['two characters, one of them astral', '💥x'],
  ])('shorter than 3 characters (%s) is refused with 422, and nothing is lost', async (_name, q) => {
    const before = await events();
    const r = await api.request('GET', `/audit/${A()}?${qParam(q).slice(1)}`, { token: admin });
    expect(r.status, r.text).toBe(422);
    expect(r.json.error.code).toBe('unprocessable_entity');
    expect(r.json.error.message).toBe("'q' must be at least 3 characters (it is a substring search served by a trigram index)");
    const after = await events();
    expect(seqs(after).slice(-before.length)).toEqual(seqs(before));
  });

  it('with a NUL character is refused with 422', async () => {
    const r = await api.request('GET', `/audit/${A()}?q=ab%00cd`, { token: admin });
    expect(r.status, r.text).toBe(422);
    expect(r.json.error.message).toBe("'q' must not contain NUL characters");
  });

  it('empty filters nothing, as before', async () => {
    expect(seqs(await events('&q='))).toEqual(seqs(await events()));
  });
});

describe('result and q with cursor paging', () => {
  it.each([
    ['result=failure', '&result=failure', (e: Event) => e.result === 'failure'],
    ['result=success', '&result=success', (e: Event) => e.result === 'success'],
    ['q', qParam('fetch'), (e: Event) => e.message.includes('fetch')],
    ['q + result', `${qParam('tried to')}&result=failure`, (e: Event) => e.message.includes('tried to') && e.result === 'failure'],
  ])('%s: pages of 2 in both orders add up to the filtered full list', async (_name, query, keep) => {
    const expected = seqs((await events()).filter(keep));
    expect(expected.length).toBeGreaterThan(2);
    for (const order of ['desc', 'asc']) {
      const got: number[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 100; i++) {
        const r = await api.request('GET', `/audit/${A()}?limit=2&order=${order}${query}${cursor ? `&cursor=${cursor}` : ''}`, { token: admin });
        expect(r.status, r.text).toBe(200);
        got.push(...seqs(r.json.events));
        cursor = r.json.next_cursor;
        if (cursor === null) break;
      }
      expect(got).toEqual(order === 'desc' ? expected : [...expected].reverse());
    }
  });

  it('the NDJSON export with q and result equals the JSON list', async () => {
    const query = `${qParam('tried to')}&result=failure`;
    const r = await api.request('GET', `/audit/${A()}?order=asc${query}`, { token: admin, headers: { Accept: 'application/x-ndjson' } });
    expect(r.status).toBe(200);
    const lines = r.text.trimEnd().split('\n').map((l) => JSON.parse(l) as Event);
    expect(seqs(lines)).toEqual(seqs(await events(query)).reverse());
    expect(lines.length).toBe(ODD_IDS.length);
  });
});
