/**
 * The authn service in process (no HTTP), aimed at mutants of
 * src/authn/service.ts (npm run mutation -- --module authn-service): the
 * API key and restricted_to decisions with the audit reason of each refusal,
 * a key rotated while an authentication is in flight, the failed-login
 * throttle's key (per login and origin), `?role=` in each of its spellings on
 * Basic calls and on token calls, and the audit event of a rotation.
 *
 * Every decision is asserted inside the test body: a failure in a hook makes
 * Stryker's vitest runner report the mutant as survived (it sees no failed test).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { tempDir } from '../helpers/tmp.js';
import { createAccountIn, openVault, type Vault } from '../../src/server.js';
import type { Actor } from '../../src/context.js';
import type { RequestInfo } from '../../src/audit/log.js';

const open: Vault[] = [];
afterEach(async () => {
  for (const v of open.splice(0)) await v.close();
});

const A = 'acme';
const IP1: RequestInfo = { clientIp: '192.168.1.1' };
const IP2: RequestInfo = { clientIp: '192.168.1.2' };
const INSIDE: RequestInfo = { clientIp: '10.1.2.3' };

async function vault() {
  let ms = Date.UTC(2030, 0, 1);
  const v = await openVault({ dataDir: tempDir('coffer-mut-authn-svc-'), masterKey: randomBytes(32), clock: { nowMs: () => ms } });
  open.push(v);
  await createAccountIn(v, A);
  const s = v.services;
  const actor = (roleId: string): Actor => ({ account: A, roleId, login: roleId.split(':').slice(2).join(':'), request: IP1 });
  const admin = actor(`${A}:user:admin`);
  const loaded = (await s.policies.load(admin, 'root', 'add', `
- !user alice
- !user bob
- !user "x:"
- !user ":x"
- !host { id: h, restricted_to: [10.0.0.0/8] }
`, false)) as { created_roles: Record<string, { api_key: string }> };
  const key = (roleId: string) => loaded.created_roles[roleId]!.api_key;
  /** The newest audit event of `action`. */
  const lastEvent = async (action: string) => {
    const [row] = await s.store.audit.query({ account: A, scopes: [{ type: 'all', account: A }], action, order: 'desc', limit: 1 });
    return row!;
  };
  return { s, admin, actor, key, lastEvent, advance: (sec: number) => (ms += sec * 1000) };
}

const refused = (code: string) => expect.objectContaining({ code });

describe('authenticate', () => {
  it('the right key gets a token from anywhere (even an unknown origin) when restricted_to is empty; a wrong key is 401, audited', async () => {
    const { s, key, lastEvent } = await vault();
    const alice = `${A}:user:alice`;
    for (const req of [IP1, {}]) {
      const json = await s.authn.authenticate(A, 'alice', key(alice), req);
      expect(await s.tokens.verify(json)).toMatchObject({ roleId: alice });
      expect(await lastEvent('authn')).toMatchObject({ result: 'success', operation: 'authenticate', role_id: alice });
    }
    await expect(s.authn.authenticate(A, 'alice', key(`${A}:user:bob`), IP1)).rejects.toEqual(refused('unauthorized'));
    expect(await lastEvent('authn')).toMatchObject({ result: 'failure', reason: 'CONJ00002E Invalid credentials' });
  });

  it('restricted_to: inside the range a token, outside or from an unknown origin 401 with CONJ00003E', async () => {
    const { s, key, lastEvent } = await vault();
    const h = `${A}:host:h`;
    expect(await s.tokens.verify(await s.authn.authenticate(A, 'host/h', key(h), INSIDE))).toMatchObject({ roleId: h });
    for (const req of [IP1, {}]) {
      await expect(s.authn.authenticate(A, 'host/h', key(h), req)).rejects.toEqual(refused('unauthorized'));
      expect((await lastEvent('authn')).reason).toMatch(/^CONJ00003E Origin .* is not allowed to authenticate as acme:host:h$/);
    }
  });

  it('a key rotated while the authentication is in flight gets no token', async () => {
    const { s, key, lastEvent } = await vault();
    const alice = `${A}:user:alice`;
    const issue = s.tokens.issue.bind(s.tokens);
    // The rotation finishes between the key check and the token being issued.
    s.tokens.issue = async (account, login, ttl) => {
      await s.credentials.rotate(alice);
      return issue(account, login, ttl);
    };
    try {
      await expect(s.authn.authenticate(A, 'alice', key(alice), IP1)).rejects.toEqual(refused('unauthorized'));
    } finally {
      s.tokens.issue = issue;
    }
    expect((await lastEvent('authn')).reason).toBe('CONJ00002E Invalid credentials (the API key changed during authentication)');
  });
});

describe('Basic login', () => {
  it('an unknown login is 401 audited as CONJ00007E', async () => {
    const { s, lastEvent } = await vault();
    await expect(s.authn.login(A, 'nobody', 'secret', undefined, IP1)).rejects.toEqual(refused('unauthorized'));
    expect(await lastEvent('authn')).toMatchObject({ result: 'failure', operation: 'login', reason: "CONJ00007E 'nobody' not found" });
  });

  it('failures throttle that login from that origin only: another origin and another login still get in', async () => {
    const { s, key } = await vault();
    const alice = `${A}:user:alice`;
    for (let i = 0; i < 10; i++) await expect(s.authn.login(A, 'alice', 'wrong', undefined, IP1)).rejects.toEqual(refused('unauthorized'));
    await expect(s.authn.login(A, 'alice', key(alice), undefined, IP1)).rejects.toEqual(refused('too_many_requests'));
    expect(await s.authn.login(A, 'alice', key(alice), undefined, IP2)).toBe(key(alice));
    expect(await s.authn.login(A, 'bob', key(`${A}:user:bob`), undefined, IP1)).toBe(key(`${A}:user:bob`));
  });

  it('?role= may name the caller as login, kind:id or account:kind:id (ids with a colon too); another role is 401, audited', async () => {
    const { s, key, lastEvent } = await vault();
    const alice = `${A}:user:alice`;
    for (const role of ['alice', 'user:alice', 'acme:user:alice']) {
      expect(await s.authn.login(A, 'alice', key(alice), role, IP1), role).toBe(key(alice));
    }
    expect(await s.authn.login(A, 'x:', key(`${A}:user:x:`), 'x:', IP1)).toBe(key(`${A}:user:x:`));
    expect(await s.authn.login(A, ':x', key(`${A}:user::x`), ':x', IP1)).toBe(key(`${A}:user::x`));
    for (const role of ['bob', 'user:bob', 'host:alice']) {
      await expect(s.authn.login(A, 'alice', key(alice), role, IP1), role).rejects.toEqual(refused('unauthorized'));
      expect(await lastEvent('authn')).toMatchObject({ result: 'failure', reason: 'Operation attempted against foreign user' });
    }
  });
});

describe('API keys by access token', () => {
  it("rotating another role's key: login, kind:id and account:kind:id name the same role; the new key works, the old does not; audited", async () => {
    const { s, admin, key, lastEvent } = await vault();
    const bob = `${A}:user:bob`;
    let current = key(bob);
    for (const role of ['bob', 'user:bob', 'acme:user:bob']) {
      const next = await s.authn.rotateApiKeyFor(admin, role);
      expect(next, role).not.toBe(current);
      await expect(s.authn.authenticate(A, 'bob', current, IP1)).rejects.toEqual(refused('unauthorized'));
      expect(await s.authn.login(A, 'bob', next, undefined, IP1)).toBe(next);
      current = next;
    }
    const odd = await s.authn.rotateApiKeyFor(admin, 'x:');
    expect(await s.authn.login(A, 'x:', odd, undefined, IP1)).toBe(odd);
    expect(await lastEvent('api-key')).toMatchObject({
      action: 'api-key', operation: 'rotate', result: 'success', role_id: admin.roleId, resource_id: `${A}:user:x:`,
    });
  });

  it('a role reads when its own key was rotated without any privilege on itself; another role is 404 without one', async () => {
    const { s, actor } = await vault();
    const alice = actor(`${A}:user:alice`);
    expect(await s.authn.apiKeyInfoFor(alice, undefined)).toMatchObject({ role: alice.roleId });
    expect(await s.authn.apiKeyInfoFor(alice, 'alice')).toMatchObject({ role: alice.roleId });
    await expect(s.authn.apiKeyInfoFor(alice, 'bob')).rejects.toEqual(refused('not_found'));
  });
});
