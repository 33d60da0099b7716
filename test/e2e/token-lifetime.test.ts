/**
 * End to end: access-token lifetime and death (executor-identity issue §3):
 * per-role TTL annotation and the server cap, revocation that survives a
 * restart, and invalidation by key rotation or role deletion.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { rmSync } from 'node:fs';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';

let srv: TestServer;
let api: Client;
let admin: string;
const keys: Record<string, string> = {};
const A = () => srv.account;

const ttlOf = (token: string) => {
  const claims = JSON.parse(Buffer.from(JSON.parse(token).payload, 'base64').toString());
  return claims.exp - claims.iat;
};
const whoamiStatus = async (token: string) => (await api.request('GET', '/whoami', { token })).status;

async function restart(): Promise<void> {
  await srv.close();
  srv = await startTestServer({ dataDir: srv.dataDir, dataKey: srv.dataKey, flags: { 'max-token-ttl': '3600' } });
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', keys.admin!);
}

beforeAll(async () => {
  srv = await startTestServer({ keepDataDir: true, flags: { 'max-token-ttl': '3600' } });
  api = new Client(srv.url, srv.account);
  keys.admin = srv.adminKey;
  admin = await api.login('admin', srv.adminKey);
  const r = await api.loadPolicy(admin, 'POST', 'root', `
- !host
  id: seconds
  annotations:
    authn/token-ttl: "300"
- !host
  id: iso
  annotations:
    authn/token-ttl: PT2M
- !host
  id: greedy
  annotations:
    authn/token-ttl: PT10H
- !host
  id: garbled
  annotations:
    authn/token-ttl: soon
- !host executor
- !host doomed
`);
  expect(r.status).toBe(201);
  for (const [id, v] of Object.entries(r.json.created_roles as Record<string, { api_key: string }>)) keys[id.split(':host:')[1]!] = v.api_key;
});
afterAll(async () => {
  await srv?.close();
  if (srv) rmSync(srv.dataDir, { recursive: true, force: true });
});

describe('token TTL', () => {
  it('follows authn/token-ttl in seconds or ISO 8601, capped by the server maximum; a garbled value falls back to the default', async () => {
    expect(ttlOf(await api.login('host/seconds', keys.seconds!))).toBe(300);
    expect(ttlOf(await api.login('host/iso', keys.iso!))).toBe(120);
    expect(ttlOf(await api.login('host/greedy', keys.greedy!))).toBe(3600);
    expect(ttlOf(await api.login('host/garbled', keys.garbled!))).toBe(480);
    expect(ttlOf(await api.login('host/executor', keys.executor!))).toBe(480);
  });
});

describe('revocation', () => {
  it('DELETE /authn/{account}/token kills the token at once, is audited by jti, and survives a restart', async () => {
    const revoked = await api.login('host/executor', keys.executor!);
    const kept = await api.login('host/executor', keys.executor!);
    expect((await api.request('DELETE', `/authn/${A()}/token`, { token: revoked })).status).toBe(204);
    expect(await whoamiStatus(revoked)).toBe(401);
    expect(await whoamiStatus(kept)).toBe(200);

    const jti = JSON.parse(Buffer.from(JSON.parse(revoked).payload, 'base64').toString()).jti;
    const events = await api.request('GET', `/audit/${A()}?action=authn&role=${encodeURIComponent(`${A()}:host:executor`)}&limit=20`, { token: admin });
    const event = events.json.events.find((e: { operation: string }) => e.operation === 'revoke-token');
    expect(event).toMatchObject({ result: 'success', details: { jti } });
    expect(JSON.stringify(events.json)).not.toContain(JSON.parse(revoked).signature);

    await restart();
    expect(await whoamiStatus(revoked)).toBe(401);
    expect(await whoamiStatus(kept)).toBe(200);
    // Revoking twice is harmless; a revoked token cannot revoke again (it is already dead).
    expect((await api.request('DELETE', `/authn/${A()}/token`, { token: revoked })).status).toBe(401);
  });

  it('rotating a role\'s API key kills its outstanding tokens, also after a restart', async () => {
    const before = await api.login('host/executor', keys.executor!);
    const rotated = await api.request('PUT', `/authn/${A()}/api_key?role=host:executor`, { token: admin });
    expect(rotated.status).toBe(200);
    keys.executor = rotated.text;
    expect(await whoamiStatus(before)).toBe(401);
    const after = await api.login('host/executor', keys.executor!);
    expect(await whoamiStatus(after)).toBe(200);
    await restart();
    expect(await whoamiStatus(before)).toBe(401);
    expect(await whoamiStatus(after)).toBe(200);
  });

  it('deleting a role kills its tokens, and re-creating a role of the same name does not revive them', async () => {
    const token = await api.login('host/doomed', keys.doomed!);
    expect(await whoamiStatus(token)).toBe(200);
    expect((await api.loadPolicy(admin, 'PATCH', 'root', '- !delete\n  record: !host doomed\n')).status).toBe(201);
    // Conjur answers a token whose role is gone with an empty 403.
    expect(await whoamiStatus(token)).toBe(403);
    srv.clock.advance(1);
    const again = await api.loadPolicy(admin, 'POST', 'root', '- !host doomed\n');
    expect(again.status).toBe(201);
    expect(await whoamiStatus(token)).toBe(401);
    const fresh = await api.login('host/doomed', again.json.created_roles[`${A()}:host:doomed`].api_key);
    expect(await whoamiStatus(fresh)).toBe(200);
    await restart();
    expect(await whoamiStatus(token)).toBe(401);
    expect(await whoamiStatus(fresh)).toBe(200);
  });
});
