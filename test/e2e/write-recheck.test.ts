/**
 * A value write checks `update` twice: before its transaction (an unauthorized
 * caller costs no lock) and again inside it, where nothing is cached. A policy
 * change that takes the privilege away and commits between the two — on this
 * node or another — wins: the write is refused and nothing is stored.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';

let srv: TestServer;
let api: Client;
let admin: string;
let writerKey = '';

beforeAll(async () => {
  srv = await startTestServer();
  api = new Client(srv.url, srv.account);
  admin = await api.login('admin', srv.adminKey);
  const r = await api.loadPolicy(admin, 'POST', 'root', '- !host writer\n- !variable v\n- !permit\n  role: !host writer\n  privileges: [read, update]\n  resource: !variable v\n');
  expect(r.status).toBe(201);
  writerKey = r.json.created_roles[`${srv.account}:host:writer`].api_key;
});
afterAll(() => srv.close());

it('a write whose privilege is taken away between the check and the transaction is refused, and stores nothing', async () => {
  const services = srv.server.vault.services;
  const writer = await api.login('host/writer', writerKey);
  const account = srv.account;
  const original = services.authorizer.canOn.bind(services.authorizer);
  let revoked = false;
  // Right after the first check says yes, a policy load (here: the same rows it would write) takes `update` away.
  services.authorizer.canOn = async (roleId, privilege, resource) => {
    const answer = await original(roleId, privilege, resource);
    if (!revoked && privilege === 'update' && roleId === `${account}:host:writer`) {
      revoked = true;
      await services.store.tx(async () => {
        await services.store.graph.deletePermission(`${account}:variable:v`, 'update', `${account}:host:writer`);
      });
      services.authorizer.invalidate();
    }
    return answer;
  };
  try {
    const r = await api.setSecret(writer, 'v', 'should-not-land');
    expect(revoked).toBe(true);
    expect(r.status).toBe(403);
  } finally {
    services.authorizer.canOn = original;
  }
  expect(await services.store.secrets.latest(`${account}:variable:v`)).toBeUndefined();
  const failures = (await api.request('GET', `/audit/${account}?action=update&result=failure`, { token: admin })).json.events;
  expect(failures[0]).toMatchObject({ role: `${account}:host:writer`, resource: `${account}:variable:v`, reason: 'Forbidden' });
});
