/**
 * Passwords and the sealed API key, aimed at survivors of `npm run mutation --
 * --module authn-creds` (src/authn/passwords.ts, src/authn/credentials.ts): a
 * user without a password is refused even with the text the timing dummy is
 * hashed from, the strength rule's counts hold at exactly their minimum, and
 * a sealed API key is bound to its role — one role's sealed key moved into
 * another role's credentials row is refused, not revealed as the other key.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { removeTempDirs, tempDir } from '../helpers/tmp.js';
import { checkPasswordStrength, hashPassword, verifyPassword } from '../../src/authn/passwords.js';
import { createAccountIn, openVault, type Vault } from '../../src/server.js';
import type { SqliteStore } from '../../src/store/index.js';
import type { RequestInfo } from '../../src/audit/log.js';

const open: Vault[] = [];
afterEach(async () => {
  for (const v of open.splice(0)) await v.close();
  removeTempDirs();
});

describe('verifyPassword', () => {
  it('refuses a user with no password, whatever is sent — the dummy hash’s own text included', async () => {
    for (const stored of [null, undefined]) {
      expect(await verifyPassword(stored, 'coffer-dummy-password-for-timing')).toBe(false);
      expect(await verifyPassword(stored, '')).toBe(false);
    }
  });

  it('accepts the right password and refuses a wrong or malformed hash', async () => {
    const hash = await hashPassword('Right-Password-12');
    expect(await verifyPassword(hash, 'Right-Password-12')).toBe(true);
    expect(await verifyPassword(hash, 'Right-Password-13')).toBe(false);
    expect(await verifyPassword('not a hash', 'Right-Password-12')).toBe(false);
  });
});

describe('checkPasswordStrength (Conjur: 12–128 characters, 2 upper, 2 lower, 1 digit, 1 special)', () => {
  it('accepts each count at exactly its minimum', () => {
    expect(() => checkPasswordStrength('ABcd1!!!!!!!')).not.toThrow();
  });

  it('refuses one fewer of each', () => {
    for (const weak of ['Abcd1!!!!!!!', 'ABcD1!!!!!!!', 'ABcd!!!!!!!!', 'ABcd12345678', 'ABcd1!!!!!!']) {
      expect(() => checkPasswordStrength(weak), weak).toThrow(/CONJ00046E/);
    }
  });
});

describe('the sealed API key is bound to its role (associated data api-key:<role id>)', () => {
  const A = 'acme';
  const IP: RequestInfo = { clientIp: '192.168.1.1' };
  const ALICE = `${A}:user:alice`;
  const BOB = `${A}:user:bob`;
  const BOB_PASSWORD = 'Bob-Password-123';
  const MOVED = { code: 'internal_error', message: expect.stringMatching(/integrity check failed/) };

  it("another role's sealed key moved into a role's row is refused, not revealed as that role's key; its own back, it works again", async () => {
    const v = await openVault({ dataDir: tempDir('coffer-mut-authn-creds-'), masterKey: randomBytes(32) });
    open.push(v);
    await createAccountIn(v, A);
    const s = v.services;
    const admin = { account: A, roleId: `${A}:user:admin`, login: 'admin', request: IP };
    const loaded = (await s.policies.load(admin, 'root', 'add', '- !user alice\n- !user bob\n', false)) as {
      created_roles: Record<string, { api_key: string }>;
    };
    const aliceKey = loaded.created_roles[ALICE]!.api_key;
    const bobKey = loaded.created_roles[BOB]!.api_key;
    expect(aliceKey).not.toBe(bobKey);
    await s.authn.changePassword(A, 'bob', bobKey, BOB_PASSWORD, undefined, IP);
    expect(await s.credentials.reveal(BOB)).toBe(bobKey);

    const db = (s.store as SqliteStore).db;
    const sealedOf = (roleId: string) =>
      (db.prepare('SELECT api_key_sealed FROM credentials WHERE role_id = ?').get(roleId) as { api_key_sealed: Buffer }).api_key_sealed;
    const setSealed = (roleId: string, sealed: Buffer) =>
      db.prepare('UPDATE credentials SET api_key_sealed = ? WHERE role_id = ?').run(sealed, roleId);
    const bobSealed = sealedOf(BOB);
    setSealed(BOB, sealedOf(ALICE));
    expect(sealedOf(BOB).equals(sealedOf(ALICE))).toBe(true);

    // Alice's key does not authenticate as bob (the hash is bob's), and opening bob's sealed key fails loudly.
    await expect(s.authn.authenticate(A, 'bob', aliceKey, IP)).rejects.toEqual(expect.objectContaining({ code: 'unauthorized' }));
    await expect(s.credentials.reveal(BOB)).rejects.toMatchObject(MOVED);
    // Password login (and Basic login with bob's own key) answers with the sealed copy: an error, never alice's key.
    for (const secret of [BOB_PASSWORD, bobKey]) {
      await expect(s.authn.login(A, 'bob', secret, undefined, IP), secret).rejects.toMatchObject(MOVED);
    }
    // Alice is not affected.
    expect(await s.credentials.reveal(ALICE)).toBe(aliceKey);
    expect(await s.authn.login(A, 'alice', aliceKey, undefined, IP)).toBe(aliceKey);

    // Bob's own sealed value back in place: he logs in and gets his key again.
    setSealed(BOB, bobSealed);
    expect(await s.credentials.reveal(BOB)).toBe(bobKey);
    expect(await s.authn.login(A, 'bob', BOB_PASSWORD, undefined, IP)).toBe(bobKey);
    expect(await s.tokens.verify(await s.authn.authenticate(A, 'bob', bobKey, IP))).toMatchObject({ roleId: BOB });
  });
});
