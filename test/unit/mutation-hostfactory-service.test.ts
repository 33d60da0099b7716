/**
 * The host-factory service in process (no HTTP), aimed at survivors of
 * src/hostfactory/ (npm run mutation -- --module hostfactory): what an
 * enrolled host is given (its factory's layers only, never the admin option
 * or another group the factory belongs to; its owner's admin membership), a
 * re-enrolment, the audit event of every token request, revocation and
 * enrolment (success and failure), and the expiration parser's field limits.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { tempDir } from '../helpers/tmp.js';
import { createAccountIn, openVault, type Vault } from '../../src/server.js';
import type { Actor } from '../../src/context.js';
import { parseIso8601, tokenRules } from '../../src/hostfactory/tokens.js';

const open: Vault[] = [];
afterEach(async () => {
  for (const v of open.splice(0)) await v.close();
});

const A = 'acme';
const F = `${A}:host_factory:f`;
const REQ = { clientIp: '127.0.0.1' };
const EXP = '2999-01-01T00:00:00Z';

async function vault() {
  const v = await openVault({ dataDir: tempDir('coffer-mut-hf-'), masterKey: randomBytes(32) });
  open.push(v);
  await createAccountIn(v, A);
  const s = v.services;
  const actor = (login: string): Actor => ({ account: A, roleId: `${A}:user:${login}`, login, request: REQ });
  const admin = actor('admin');
  await s.policies.load(admin, 'root', 'add', `
- !user alice
- !user viewer
- !layer l
- !group g
- !host-factory { id: f, layers: [ !layer l ] }
- !grant { role: !group g, member: !host-factory f }
- !permit { role: !user viewer, privilege: read, resource: !host-factory f }
`, false);
  /** The newest host-factory event in the whole log (a failure with no known factory belongs to no account). */
  const lastEvent = async () => {
    const row = (await s.store.audit.page(0, 100_000)).filter((r) => r.action === 'host-factory').at(-1)!;
    return { ...row, details: row.details === null ? null : JSON.parse(row.details) };
  };
  const token = async () => (await s.hostFactories.createTokens(admin, { hostFactory: 'host_factory:f', expiration: EXP, cidr: [] }))[0]!.token;
  return { s, g: s.store.graph, admin, actor, lastEvent, token };
}

describe('enrolment', () => {
  it("a new host joins the factory's layers only, without the admin option, and the factory holds it as owner; audited as created", async () => {
    const { s, g, token, lastEvent } = await vault();
    const created = await s.hostFactories.createHost(await token(), { id: 'h1', annotations: [] }, REQ);
    const h = `${A}:host:h1`;
    expect(created).toMatchObject({ hostId: h, hostFactoryId: F, created: true });
    expect(await g.getRole(h)).toMatchObject({ kind: 'host' });
    expect(await g.getMembership(`${A}:layer:l`, h, false)).toMatchObject({ admin_option: 0, ownership: 0 });
    // The factory is a member of group g; its hosts are not.
    expect((await s.authorizer.allRoles(h)).has(`${A}:group:g`)).toBe(false);
    expect(await g.getMembership(h, F, true)).toMatchObject({ admin_option: 1, ownership: 1 });
    const e = await lastEvent();
    expect(e).toMatchObject({ operation: 'create-host', result: 'success', role_id: F, resource_id: h });
    expect(e.details).toMatchObject({ host_factory: F, created: true, layers: [`${A}:layer:l`] });
    expect(e.message).toContain(`created host ${h}`);
  });

  it('enrolling the same id again rotates its key (the old one stops working) and is audited as not created', async () => {
    const { s, token, lastEvent } = await vault();
    const first = await s.hostFactories.createHost(await token(), { id: 'h1', annotations: [] }, REQ);
    const again = await s.hostFactories.createHost(await token(), { id: 'h1', annotations: [] }, REQ);
    expect(again).toMatchObject({ created: false });
    expect(again.apiKey).not.toBe(first.apiKey);
    await expect(s.authn.authenticate(A, 'host/h1', first.apiKey, REQ)).rejects.toMatchObject({ code: 'unauthorized' });
    expect(await s.authn.authenticate(A, 'host/h1', again.apiKey, REQ)).toBeTruthy();
    const e = await lastEvent();
    expect(e.details).toMatchObject({ created: false });
    expect(e.message).toContain('rotated the API key of its host');
  });

  it('a missing token is 401, audited with token "none" and no factory; a bad host id names the factory', async () => {
    const { s, token, lastEvent } = await vault();
    await expect(s.hostFactories.createHost(undefined, { id: 'h1', annotations: [] }, REQ)).rejects.toMatchObject({ code: 'unauthorized' });
    const e = await lastEvent();
    expect(e).toMatchObject({ account: null, operation: 'create-host', result: 'failure', role_id: null, resource_id: null, details: { token: 'none' } });
    expect(e.message).toMatch(/^a host factory token failed to create host h1/);
    await expect(s.hostFactories.createHost(await token(), { id: 'other/../x', annotations: [] }, REQ)).rejects.toMatchObject({ code: 'argument_error' });
    expect(await lastEvent()).toMatchObject({ result: 'failure', role_id: F, resource_id: F });
  });
});

describe('tokens', () => {
  it('a token request is audited with the token ids, expiration and ranges; the factory may be named with spaces around it', async () => {
    const { s, admin, lastEvent } = await vault();
    const issued = await s.hostFactories.createTokens(admin, { hostFactory: ' host_factory:f ', expiration: EXP, count: '2', cidr: ['10.0.0.1'] });
    expect(issued).toHaveLength(2);
    const e = await lastEvent();
    expect(e).toMatchObject({ action: 'host-factory', operation: 'create-tokens', result: 'success', role_id: admin.roleId, resource_id: F });
    expect(e.details).toEqual({ tokens: [expect.stringMatching(/^[0-9a-f]{16}$/), expect.stringMatching(/^[0-9a-f]{16}$/)], expiration: '2999-01-01T00:00:00Z', cidr: ['10.0.0.1/32'] });
    for (const blank of ['', '   ']) {
      await expect(s.hostFactories.createTokens(admin, { hostFactory: blank, expiration: EXP, cidr: [] })).rejects.toMatchObject({
        code: 'argument_error', message: 'param is missing or the value is empty: host_factory',
      });
    }
  });

  it('revocation: audited on success; malformed, invisible and forbidden revocations are refused and audited', async () => {
    const { s, admin, actor, token, lastEvent } = await vault();
    await expect(s.hostFactories.revokeToken(admin, 'not a token')).rejects.toMatchObject({ code: 'not_found' });
    expect(await lastEvent()).toMatchObject({ operation: 'revoke-token', result: 'failure', details: { token: 'malformed' } });
    const t = await token();
    await expect(s.hostFactories.revokeToken(actor('alice'), t)).rejects.toMatchObject({ code: 'not_found' });
    expect(await lastEvent()).toMatchObject({ result: 'failure', reason: "the token's host factory is not visible", resource_id: F });
    await expect(s.hostFactories.revokeToken(actor('viewer'), t)).rejects.toMatchObject({ code: 'forbidden' });
    expect(await lastEvent()).toMatchObject({ result: 'failure', resource_id: F });
    await s.hostFactories.revokeToken(admin, t);
    expect(await lastEvent()).toMatchObject({ action: 'host-factory', operation: 'revoke-token', result: 'success', resource_id: F, details: { token: expect.stringMatching(/^[0-9a-f]{16}$/) } });
    await expect(s.hostFactories.createHost(t, { id: 'h1', annotations: [] }, REQ)).rejects.toMatchObject({ code: 'unauthorized' });
  });
});

describe('expiration parsing: every field at its limit', () => {
  const at = (text: string) => parseIso8601(text);
  it('the last valid value of each field parses; one past it does not', () => {
    expect(at('2050-12-31T23:59:59Z')).toBe(Date.UTC(2050, 11, 31, 23, 59, 59));
    expect(at('2050-01-01T00:00:00Z')).toBe(Date.UTC(2050, 0, 1));
    for (const bad of ['2050-00-10', '2050-13-10', '2050-01-00', '2050-01-10T24:00:00Z', '2050-01-10T10:60:00Z', '2050-01-10T10:00:60Z']) {
      expect(at(bad), bad).toBeUndefined();
    }
  });

  it('impossible dates and years a two-digit Date.UTC would move are refused', () => {
    expect(at('2050-02-28')).toBe(Date.UTC(2050, 1, 28));
    expect(at('2048-02-29')).toBe(Date.UTC(2048, 1, 29));
    for (const bad of ['2050-02-29', '2050-04-31', '0050-01-01', '0099-12-31']) expect(at(bad), bad).toBeUndefined();
  });

  it('an error echoes at most 64 characters of the input', () => {
    const exactly = '1'.repeat(64);
    expect(() => tokenRules({ expiration: EXP, count: exactly, cidr: [] }, 0)).toThrow(`got '${exactly}'`);
    expect(() => tokenRules({ expiration: EXP, count: `${exactly}1`, cidr: [] }, 0)).toThrow(`got '${exactly}…'`);
  });
});
