/**
 * Writes to secrets beyond a plain value: clearing expirations (audited as
 * such, refused without update), and the value of a public_key resource (a
 * user's `public_keys` line, served by GET /public_keys), which must be one
 * public key line — anything else is refused with 422 and the stored key kept.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5 alice@laptop';
let srv: TestServer;
let api: Client;
let admin: string;

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const r = await api.loadPolicy(admin, 'POST', 'root', `- !user\n  id: alice\n  public_keys:\n    - ${KEY}\n`);
  expect(r.status, r.text).toBe(201);
});
afterAll(() => srv.close());

const keyPath = () => `/secrets/${srv.account}/public_key/${encodeURIComponent('user/alice/alice@laptop')}`;
const served = async () => (await api.request('GET', `/public_keys/${srv.account}/user/alice`)).text;

describe('clearing expirations (POST …?expirations)', () => {
  it('is audited as an expire when the caller may update, and refused (403) and audited when it may only read', async () => {
    const r = await api.loadPolicy(admin, 'POST', 'root', '- !variable token\n- !user bob\n- !permit\n  role: !user bob\n  privilege: [ read ]\n  resource: !variable token\n');
    expect(r.status, r.text).toBe(201);
    const path = `/secrets/${srv.account}/variable/token?expirations`;
    expect((await api.request('POST', path, { token: admin })).status).toBe(201);
    const bob = await api.login('bob', r.json.created_roles[`${srv.account}:user:bob`].api_key);
    expect((await api.request('POST', path, { token: bob })).status).toBe(403);
    const events = (await api.request('GET', `/audit/${srv.account}?resource=${encodeURIComponent(`${srv.account}:variable:token`)}&order=asc`, { token: admin })).json.events as {
      operation: string;
      result: string;
      message: string;
    }[];
    expect(events.map((e) => [e.operation, e.result, e.message])).toEqual([
      ['expire', 'success', `${srv.account}:user:admin cleared the expiration of ${srv.account}:variable:token`],
      // A refusal is recorded as the update it was checked as, with the reason.
      ['update', 'failure', `${srv.account}:user:bob tried to expire ${srv.account}:variable:token: Forbidden`],
    ]);
  });
});

describe('values of public_key resources', () => {
  it('are served by GET /public_keys as the policy declared them', async () => {
    expect((await served()).trim()).toBe(KEY);
  });

  it('refuse a value that is not one public key line, with 422, keeping the key', async () => {
    for (const bad of ['not a key', 'ssh-ed25519', 'ssh-ed25519 !!!notbase64', 'ssh-foo AAAA x', 'AAAA ssh-ed25519']) {
      const r = await api.request('POST', keyPath(), { token: admin, body: bad, headers: { 'Content-Type': 'text/plain' } });
      expect(r.status, bad).toBe(422);
      expect(r.json.error.message).toMatch(/^Invalid public key format: expected "<type> <base64> \[name\]"/);
      expect((await served()).trim()).toBe(KEY);
    }
  });

  it('accept a new public key line, with surrounding whitespace trimmed for the check', async () => {
    const next = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 alice@laptop';
    const r = await api.request('POST', keyPath(), { token: admin, body: `  ${next}\n`, headers: { 'Content-Type': 'text/plain' } });
    expect(r.status, r.text).toBe(201);
    expect(await served()).toContain(next);
  });
});
