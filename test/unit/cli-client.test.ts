/** Pure pieces of the client CLI: netrc editing, dry-run plans, tables, progress line, sanitising, ids, durations. */
import { describe, it, expect, vi } from 'vitest';
import { findEntry, parseNetrc, removeEntries, upsertEntry } from '../../src/cli/client/netrc.js';
import { changes, renderPlan } from '../../src/cli/commands/plan.js';
import { makeCtx, type CliIo } from '../../src/cli/commands/context.js';
import { readSecret, startProgress, table } from '../../src/cli/commands/ui.js';
import { PassThrough } from 'node:stream';
import { httpError, sanitize } from '../../src/cli/client/errors.js';
import { parseId } from '../../src/cli/commands/ids.js';
import { parseDuration, parseTime } from '../../src/cli/commands/time.js';
import { parseAccessToken } from '../../src/cli/client/token.js';
import { normalizeApplianceUrl } from '../../src/cli/client/config.js';

function ctx(opts: { tty?: boolean; env?: NodeJS.ProcessEnv } = {}) {
  const err: string[] = [];
  const io: CliIo = { out: () => undefined, err: () => undefined, writeErr: (c) => void err.push(c), stdoutIsTTY: opts.tty ?? false, stderrIsTTY: opts.tty ?? false };
  return { c: makeCtx(opts.env ?? {}, io), err };
}

describe('netrc', () => {
  const text = '# personal\nmachine github.com login me password ghp1\nmachine https://c.example/authn\n  login alice\n  password k1\ndefault login anon password x\n';

  it('parses multi-line and one-line entries, comments and default', () => {
    expect(parseNetrc(text)).toEqual([
      { machine: 'github.com', login: 'me', password: 'ghp1' },
      { machine: 'https://c.example/authn', login: 'alice', password: 'k1' },
    ]);
    expect(findEntry(text, 'https://c.example')).toBeUndefined();
  });

  it('replaces an entry in place and keeps everything else byte for byte', () => {
    const out = upsertEntry(text, { machine: 'https://c.example/authn', login: 'bob', password: 'k2' });
    expect(out).toBe('# personal\nmachine github.com login me password ghp1\nmachine https://c.example/authn\n  login bob\n  password k2\ndefault login anon password x\n');
  });

  it('appends a new entry, adding a newline when the file lacks one', () => {
    expect(upsertEntry('machine a login b password c', { machine: 'm', login: 'l', password: 'p' })).toBe('machine a login b password c\nmachine m\n  login l\n  password p\n');
    expect(upsertEntry('', { machine: 'm', login: 'l', password: 'p' })).toBe('machine m\n  login l\n  password p\n');
  });

  it('refuses values a netrc cannot hold', () => {
    expect(() => upsertEntry('', { machine: 'm', login: 'a b', password: 'p' })).toThrow(/whitespace/);
    expect(() => upsertEntry('', { machine: 'm', login: 'a', password: '' })).toThrow(/empty/);
  });

  it('removes every entry of the given machines', () => {
    const both = `${text}machine https://c.example\n  login alice\n  password k1\n`;
    const { text: out, removed } = removeEntries(both, ['https://c.example/authn', 'https://c.example']);
    expect(removed).toBe(2);
    expect(parseNetrc(out).map((e) => e.machine)).toEqual(['github.com']);
    expect(out).toContain('default login anon password x');
  });

  it('skips macdef bodies', () => {
    const m = 'macdef init\ncd /tmp\nmachine fake login x password y\n\nmachine real login a password b\n';
    expect(parseNetrc(m)).toEqual([{ machine: 'real', login: 'a', password: 'b' }]);
  });
});

describe('dry-run plan', () => {
  const before = { identifier: 'a:group:g', owner: 'a:user:admin', annotations: { k: 'old', gone: 'x' }, members: ['a:user:admin', 'a:user:bob'], memberships: [], permissions: { read: ['a:variable:v'] }, restricted_to: [] };
  const after = { identifier: 'a:group:g', owner: 'a:policy:p', annotations: { k: 'new', added: 'y' }, members: ['a:user:admin', 'a:user:carol'], memberships: [], permissions: { read: ['a:variable:v'], execute: ['a:variable:v'] }, restricted_to: ['10.0.0.0/8'] };

  it('lists each change of an updated record as before → after', () => {
    expect(changes(before, after)).toEqual([
      '~ owner: a:user:admin → a:policy:p',
      '+ annotation added = "y"',
      '- annotation gone (was "x")',
      '~ annotation k: "old" → "new"',
      '+ may execute a:variable:v',
      '+ member: a:user:carol',
      '- member: a:user:bob',
      '~ restricted to: (anywhere) → 10.0.0.0/8',
    ]);
  });

  it('renders created, updated and deleted records, coloured only on a terminal', () => {
    const report = { status: 'Valid YAML', created: { items: [{ identifier: 'a:variable:v2', owner: 'a:user:admin', annotations: {}, permitted: { execute: ['a:host:h'] } }] }, updated: { before: { items: [before] }, after: { items: [after] } }, deleted: { items: [{ identifier: 'a:layer:l' }] } };
    const plain = renderPlan(ctx().c, 'policy update -b root', report);
    expect(plain[0]).toBe('Plan for policy update -b root: 1 to create, 1 to update, 1 to delete.');
    expect(plain).toContain('+ a:variable:v2');
    expect(plain).toContain('      permit execute to a:host:h');
    expect(plain).toContain('      ~ annotation k: "old" → "new"');
    expect(plain).toContain('- a:layer:l');
    expect(plain.join('\n')).not.toContain('\x1b[');
    const coloured = renderPlan(ctx({ tty: true }).c, 'x', report);
    expect(coloured).toContain('\x1b[32m+ a:variable:v2\x1b[0m');
    expect(coloured).toContain('\x1b[31m- a:layer:l\x1b[0m');
    expect(renderPlan(ctx({ tty: true, env: { NO_COLOR: '1' } }).c, 'x', report).join('\n')).not.toContain('\x1b[');
  });

  it('says "No changes." for an empty report', () => {
    const empty = { status: 'Valid YAML', created: { items: [] }, updated: { before: { items: [] }, after: { items: [] } }, deleted: { items: [] } };
    expect(renderPlan(ctx().c, 'x', empty)).toEqual(['Plan for x: 0 to create, 0 to update, 0 to delete.', 'No changes.']);
  });
});

describe('terminal output', () => {
  it('aligns table columns and strips control characters from server text', () => {
    expect(table(ctx().c, ['A', 'LONGER'], [['xx', 'y'], ['z\x1b]0;pwned\x07', 'w']])).toEqual(['A           LONGER', 'xx          y', 'z ]0;pwned  w']);
    expect(sanitize('line1\nline2\x1b[31mred\x1b[0m')).toBe('line1 line2red');
  });

  it('shows a progress line only on a terminal and only after the delay, and clears it', () => {
    vi.useFakeTimers();
    try {
      const quiet = ctx();
      startProgress(quiet.c, 'Loading', 1000);
      vi.advanceTimersByTime(3000);
      expect(quiet.err).toEqual([]);
      const fast = ctx({ tty: true });
      startProgress(fast.c, 'Loading', 1000).stop();
      vi.advanceTimersByTime(3000);
      expect(fast.err).toEqual([]);
      const slow = ctx({ tty: true });
      const p = startProgress(slow.c, 'Loading policy', 1000);
      vi.advanceTimersByTime(1500);
      expect(slow.err.join('')).toContain('Loading policy (1s)');
      p.stop();
      expect(slow.err[slow.err.length - 1]).toBe('\r\x1b[K');
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('errors', () => {
  const res = (status: number, body: string, type = 'application/json') => ({ status, headers: { 'content-type': type }, body: Buffer.from(body) });
  it('maps statuses to the documented exit codes and keeps the server message on one line', () => {
    expect(httpError(res(401, 'Unauthorized: Invalid token', 'text/plain'), 'x')).toMatchObject({ exitCode: 6, message: 'x: Unauthorized: Invalid token' });
    expect(httpError(res(403, '', ''), 'x')).toMatchObject({ exitCode: 4, message: 'x: forbidden (the role lacks the privilege)' });
    expect(httpError(res(404, '{"error":{"code":"not_found","message":"gone"}}'), 'x')).toMatchObject({ exitCode: 4, message: 'x: gone' });
    expect(httpError(res(422, '{"error":{"code":"policy_invalid","message":"bad\\nthing","innererror":{"line":3,"column":1}}}'), 'x')).toMatchObject({ exitCode: 1, message: 'x: bad thing (line 3, column 1)' });
    expect(httpError(res(422, '{"status":"Invalid YAML","errors":[{"line":2,"column":4,"message":"oops"}]}'), 'x').message).toBe('x: line 2, column 4: oops');
    expect(httpError(res(500, '<html>boom</html>', 'text/html'), 'x')).toMatchObject({ exitCode: 1, message: 'x: internal server error' });
    expect(httpError({ status: 429, headers: { 'retry-after': '7' }, body: Buffer.alloc(0) }, 'x').message).toBe('x: too many requests (retry after 7 s)');
  });
});

describe('ids, durations, tokens, URLs', () => {
  it('parses kind:id, account:kind:id and bare ids', () => {
    expect(parseId('variable:a/b', 'acme')).toMatchObject({ full: 'acme:variable:a/b' });
    expect(parseId('other:variable:a/b', 'acme')).toMatchObject({ account: 'other', full: 'other:variable:a/b' });
    expect(parseId('a/b:c', 'acme', 'variable')).toMatchObject({ full: 'acme:variable:a/b:c' });
    expect(parseId('host:ci/x', 'acme')).toMatchObject({ kind: 'host', identifier: 'ci/x' });
    expect(() => parseId('a/b', 'acme')).toThrow(/not an id of the form KIND:ID/);
    expect(() => parseId('variable:', 'acme')).toThrow();
  });

  it('parses durations and times', () => {
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1.5h')).toBeUndefined();
    expect(parseTime('1h', Date.parse('2026-01-01T12:00:00Z'))).toBe('2026-01-01T11:00:00.000Z');
    expect(parseTime('2026-02-03')).toBe('2026-02-03T00:00:00.000Z');
    expect(parseTime('soonish')).toBeUndefined();
  });

  it('reads the lifetime of an access token given as JSON or base64, and refuses anything else', () => {
    const payload = Buffer.from(JSON.stringify({ sub: 'a', iat: 1000, exp: 1480 })).toString('base64');
    const json = JSON.stringify({ protected: 'e30', payload, signature: 'c2ln' });
    expect(parseAccessToken(json, 't')).toMatchObject({ lifetimeMs: 480_000, header: `Token token="${Buffer.from(json).toString('base64')}"` });
    expect(parseAccessToken(Buffer.from(json).toString('base64'), 't').lifetimeMs).toBe(480_000);
    expect(() => parseAccessToken('{"a":1}', 'CONJUR_AUTHN_TOKEN')).toThrow('CONJUR_AUTHN_TOKEN does not hold a Conjur access token');
  });

  it('normalises appliance URLs', () => {
    expect(normalizeApplianceUrl('https://c.example/', 'x')).toBe('https://c.example');
    expect(normalizeApplianceUrl(' https://c.example/conjur// ', 'x')).toBe('https://c.example/conjur');
    expect(() => normalizeApplianceUrl('https://c.example/?a=1', 'x')).toThrow(/query/);
  });
});

describe('reading a secret on a terminal', () => {
  it('prompts on stderr, echoes nothing, honours backspace, restores the terminal mode', async () => {
    const stdin = Object.assign(new PassThrough(), { isTTY: true, modes: [] as boolean[], setRawMode(m: boolean) { this.modes.push(m); return this; } });
    const err: string[] = [];
    const out: string[] = [];
    const io: CliIo = { out: (l) => void out.push(l), err: (l) => void err.push(l), writeErr: (c) => void err.push(c), stdin, stdinIsTTY: true };
    const c = makeCtx({}, io);
    const pending = readSecret(c, 'Password: ');
    stdin.write('hunter2x');
    stdin.write('\u007f');
    stdin.write('\r');
    expect(await pending).toBe('hunter2');
    expect(err.join('')).toBe('Password: \n');
    expect(out).toEqual([]);
    expect(stdin.modes).toEqual([true, false]);
  });

  it('Ctrl-C aborts with exit 130', async () => {
    const stdin = Object.assign(new PassThrough(), { isTTY: true, setRawMode: () => stdin });
    const c = makeCtx({}, { out: () => undefined, err: () => undefined, writeErr: () => undefined, stdin, stdinIsTTY: true } as CliIo);
    const pending = readSecret(c, 'Password: ');
    stdin.write('ab\u0003');
    await expect(pending).rejects.toMatchObject({ exitCode: 130, message: 'interrupted' });
  });

  it('without a terminal reads all of stdin and drops one trailing newline only', async () => {
    const c = makeCtx({}, { out: () => undefined, err: () => undefined, stdin: PassThrough.from(['key\n\n']) } as unknown as CliIo);
    expect(await readSecret(c, 'x')).toBe('key\n');
  });
});
