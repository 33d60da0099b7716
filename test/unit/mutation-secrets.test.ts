/**
 * Barrier and rotation details aimed at mutants of src/secrets/barrier.ts and
 * src/secrets/rotation.ts (npm run mutation -- --module secrets-barrier):
 * master-key decoding exactly at 32 bytes and canonical base64, key states
 * through rotation (retiring keys still decrypt, retired ones are gone), a
 * ciphertext under a key another barrier added, wiping, server secrets and the
 * packed form; keyring reloads racing key changes; wrapped keys bound to their
 * version; rotateDataKey / rekeyMaster end to end on an in-process server.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { tempDir } from '../helpers/tmp.js';
import { Barrier, DataKeyMismatchError, decodeMasterKey, generateMasterKey, initSodium, packSealed, unpackSealed } from '../../src/secrets/barrier.js';
import { openStore } from '../../src/store/index.js';
import { rekeyMaster, rotateDataKey } from '../../src/secrets/rotation.js';
import { startTestServer } from '../helpers/server.js';
import { Client } from '../helpers/http.js';
import { allAuditRows } from '../helpers/audit-rows.js';

beforeAll(() => initSodium());

const fresh = () => openStore(join(tempDir('coffer-mut-barrier-'), 'c.db'));

describe('decodeMasterKey', () => {
  it('accepts exactly 32 bytes of canonical base64, with surrounding whitespace', () => {
    const key = randomBytes(32);
    const b64 = key.toString('base64');
    expect(decodeMasterKey(b64, 'K').equals(key)).toBe(true);
    expect(decodeMasterKey(`  ${b64}\n`, 'K').equals(key)).toBe(true);
    expect(Buffer.from(generateMasterKey(), 'base64')).toHaveLength(32);
  });

  it('refuses 31 or 33 bytes, non-canonical base64 and garbage, naming the source', () => {
    for (const bad of [randomBytes(31).toString('base64'), randomBytes(33).toString('base64'), `${randomBytes(32).toString('base64')}AA`,
      randomBytes(32).toString('base64').replace(/=$/, ''), randomBytes(32).toString('base64url'), '!'.repeat(44), '']) {
      expect(() => decodeMasterKey(bad, 'COFFER_DATA_KEY'), bad).toThrow(/^COFFER_DATA_KEY must be the base64 encoding of exactly 32 bytes/);
    }
  });
});

describe('data keys through rotation', () => {
  it('the previous key is retiring and still decrypts; a retired key is gone and its values are refused', async () => {
    const store = fresh();
    const b = await Barrier.open(randomBytes(32), store);
    const v1 = b.encrypt(Buffer.from('one'), 'ad');
    expect(v1.keyVersion).toBe(1);
    expect(b.activeKeyVersion).toBe(1);
    expect(await b.addDataKey()).toBe(2);
    expect(b.activeKeyVersion).toBe(2);
    expect((await store.keyring.listKeys()).map((k) => [k.version, k.state])).toEqual([[1, 'retiring'], [2, 'active']]);
    const v2 = b.encrypt(Buffer.from('two'), 'ad');
    expect(v2.keyVersion).toBe(2);
    expect((await b.decrypt(v1, 'ad')).toString()).toBe('one');
    await b.retireDataKey(1);
    await expect(b.decrypt(v1, 'ad')).rejects.toThrow(/unknown data key version 1/);
    expect((await b.decrypt(v2, 'ad')).toString()).toBe('two');
    expect(await b.addDataKey()).toBe(3);
  });

  it('a barrier learns a key another barrier added (reloads the keyring on an unknown version)', async () => {
    const store = fresh();
    const master = randomBytes(32);
    const a = await Barrier.open(master, store);
    const b = await Barrier.open(master, store);
    await a.addDataKey();
    const sealed = a.encrypt(Buffer.from('v'), 'ad');
    expect(sealed.keyVersion).toBe(2);
    expect((await b.decrypt(sealed, 'ad')).toString()).toBe('v');
    expect(b.activeKeyVersion).toBe(2);
  });

  it('a rewrap skips retired keys and the old master key no longer opens', async () => {
    const store = fresh();
    const master = randomBytes(32);
    const b = await Barrier.open(master, store);
    await b.addDataKey();
    await b.retireDataKey(1);
    const v = b.encrypt(Buffer.from('x'), 'ad');
    const next = randomBytes(32);
    await b.rewrap(next);
    expect((await (await Barrier.open(next, store)).decrypt(v, 'ad')).toString()).toBe('x');
    await expect(Barrier.open(master, store)).rejects.toThrow(DataKeyMismatchError);
  });
});

describe('values, wiping, server secrets', () => {
  it('a modified ciphertext or nonce fails authentication', async () => {
    const b = await Barrier.open(randomBytes(32), fresh());
    const s = b.encrypt(Buffer.from('secret'), 'ad');
    const ct = Buffer.from(s.ciphertext);
    ct[0]! ^= 1;
    await expect(b.decrypt({ ...s, ciphertext: ct }, 'ad')).rejects.toThrow(/failed authentication/);
    const nonce = Buffer.from(s.nonce);
    nonce[23]! ^= 1;
    await expect(b.decrypt({ ...s, nonce }, 'ad')).rejects.toThrow(/failed authentication/);
    expect(s.ciphertext.includes(Buffer.from('secret'))).toBe(false);
  });

  it('wipe zeroes a buffer and accepts undefined or empty ones', () => {
    const buf = Buffer.from('plaintext');
    Barrier.wipe(buf);
    expect(buf.equals(Buffer.alloc(9))).toBe(true);
    expect(() => Barrier.wipe(undefined)).not.toThrow();
    expect(() => Barrier.wipe(Buffer.alloc(0))).not.toThrow();
  });

  it('server secrets: one per name, of the size asked, stable, re-encrypted under the active key', async () => {
    const store = fresh();
    const master = randomBytes(32);
    const b = await Barrier.open(master, store);
    const pepper = await b.serverSecret('api-key-pepper');
    const other = await b.serverSecret('audit-checkpoint', 16);
    expect(pepper).toHaveLength(32);
    expect(other).toHaveLength(16);
    expect((await b.serverSecret('api-key-pepper')).equals(pepper)).toBe(true);
    await b.addDataKey();
    await b.reencryptServerSecrets(['api-key-pepper', 'missing']);
    expect(unpackSealed((await store.keyring.getMeta('secret:api-key-pepper'))!).keyVersion).toBe(2);
    expect(unpackSealed((await store.keyring.getMeta('secret:audit-checkpoint'))!).keyVersion).toBe(1);
    await b.retireDataKey(1);
    expect((await (await Barrier.open(master, store)).serverSecret('api-key-pepper')).equals(pepper)).toBe(true);
  });

  it('packs key version ‖ nonce ‖ ciphertext', () => {
    const s = { keyVersion: 0x01020304, nonce: randomBytes(24), ciphertext: randomBytes(40) };
    const packed = packSealed(s);
    expect(packed.subarray(0, 4)).toEqual(Buffer.from([1, 2, 3, 4]));
    expect(packed).toHaveLength(68);
    expect(unpackSealed(packed)).toEqual(s);
  });
});

/** A keyring whose next listKeys() call can be held back after it has read its rows (a slow read racing a change). */
function gatedKeyring(inner: ReturnType<typeof fresh>['keyring']) {
  let gate: Promise<void> | undefined;
  let release: () => void = () => undefined;
  const state = { listCalls: 0 };
  const keyring: typeof inner = {
    ...inner,
    listKeys: async () => {
      state.listCalls++;
      const held = gate;
      gate = undefined;
      const rows = await inner.listKeys();
      if (held) await held;
      return rows;
    },
  };
  return {
    keyring,
    state,
    holdNextList() {
      gate = new Promise<void>((r) => (release = r));
    },
    release: () => release(),
  };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('keyring reloads racing key changes (the generation counter)', () => {
  it('a reload that read the keyring before a key was added and the old one retired does not put the old keyring back', async () => {
    const store = fresh();
    const g = gatedKeyring(store.keyring);
    const b = await Barrier.open(randomBytes(32), { keyring: g.keyring, tx: (fn) => store.tx(fn) });
    g.holdNextList();
    const load = b.loadKeyring();
    await tick();
    expect(await b.addDataKey()).toBe(2);
    await b.retireDataKey(1);
    g.release();
    await load;
    expect(b.activeKeyVersion).toBe(2);
    expect(b.encrypt(Buffer.from('v'), 'ad').keyVersion).toBe(2);
  });

  it('a reload that read the keyring before a rewrap and a new key does not unwrap the old rows with the new master key', async () => {
    const store = fresh();
    const g = gatedKeyring(store.keyring);
    const b = await Barrier.open(randomBytes(32), { keyring: g.keyring, tx: (fn) => store.tx(fn) });
    const v1 = b.encrypt(Buffer.from('one'), 'ad');
    g.holdNextList();
    const load = b.loadKeyring();
    await tick();
    await b.rewrap(randomBytes(32));
    expect(await b.addDataKey()).toBe(2);
    g.release();
    await expect(load).resolves.toBeUndefined();
    expect(b.activeKeyVersion).toBe(2);
    expect((await b.decrypt(v1, 'ad')).toString()).toBe('one');
  });

  it('a reload that read the keyring before another reload and a new key reads again', async () => {
    const store = fresh();
    const g = gatedKeyring(store.keyring);
    const b = await Barrier.open(randomBytes(32), { keyring: g.keyring, tx: (fn) => store.tx(fn) });
    g.holdNextList();
    const first = b.loadKeyring();
    await tick();
    await b.loadKeyring();
    expect(await b.addDataKey()).toBe(2);
    g.release();
    await first;
    expect(b.activeKeyVersion).toBe(2);
  });

  it('decrypting under a loaded key costs no keyring read; an unknown version reads it once and is refused', async () => {
    const store = fresh();
    const g = gatedKeyring(store.keyring);
    const b = await Barrier.open(randomBytes(32), { keyring: g.keyring, tx: (fn) => store.tx(fn) });
    const sealed = b.encrypt(Buffer.from('v'), 'ad');
    const before = g.state.listCalls;
    expect((await b.decrypt(sealed, 'ad')).toString()).toBe('v');
    expect(g.state.listCalls).toBe(before);
    await expect(b.decrypt({ ...sealed, keyVersion: 9 }, 'ad')).rejects.toThrow('Stored value is encrypted under unknown data key version 9');
    expect(g.state.listCalls).toBe(before + 1);
  });
});

describe('the keyring binds each wrapped key to its version, and the master key check', () => {
  it('refuses to open a keyring whose wrapped keys were swapped between versions', async () => {
    const store = fresh();
    const master = randomBytes(32);
    const b = await Barrier.open(master, store);
    await b.addDataKey();
    const [k1, k2] = await store.keyring.listKeys();
    await store.keyring.rewrapKey(1, k2!.nonce, k2!.wrapped_key);
    await store.keyring.rewrapKey(2, k1!.nonce, k1!.wrapped_key);
    await expect(Barrier.open(master, store)).rejects.toThrow();
  });

  it('accepts a master key with whitespace inside (a wrapped line), and explains a mismatch', async () => {
    const key = randomBytes(32);
    const b64 = key.toString('base64');
    expect(decodeMasterKey(`${b64.slice(0, 20)}\n${b64.slice(20)}`, 'K').equals(key)).toBe(true);
    expect(decodeMasterKey(`${b64.slice(0, 20)} ${b64.slice(20)}`, 'K').equals(key)).toBe(true);
    const store = fresh();
    await Barrier.open(randomBytes(32), store);
    await expect(Barrier.open(randomBytes(32), store)).rejects.toThrow(
      new DataKeyMismatchError(
        'The data key does not match this database (key-check failed). Start Coffer with the key this ' +
          'database was created with, or rekey it with `coffer keys rekey`.',
      ),
    );
  });
});

describe('rotateDataKey and rekeyMaster (src/secrets/rotation.ts)', () => {
  it('re-encrypts every value, signing key, API key and server secret, retires the old keys, audits it, and refuses to retire a key still in use', async () => {
    const srv = await startTestServer();
    try {
      const s = srv.server.vault.services;
      const api = new Client(srv.url, srv.account);
      const admin = await api.login('admin', srv.adminKey);
      expect((await api.loadPolicy(admin, 'POST', 'root', '- !variable a\n- !variable b\n')).status).toBe(201);
      for (const [id, v] of [['a', 'a1'], ['a', 'a2'], ['b', 'b1']] as const) expect((await api.setSecret(admin, id, v)).status).toBe(201);
      const keyring = async () => (await s.store.keyring.listKeys()).map((k) => [k.version, k.state]);
      const metaVersion = async (name: string) => unpackSealed((await s.store.keyring.getMeta(`secret:${name}`))!).keyVersion;
      expect(await keyring()).toEqual([[1, 'active']]);

      const progress: Array<[number, number]> = [];
      const report = await rotateDataKey(s, (done, total) => progress.push([done, total]));
      expect(report.apiKeys).toBeGreaterThanOrEqual(1);
      expect(report).toEqual({ newKeyVersion: 2, secrets: 3, signingKeys: 1, apiKeys: report.apiKeys, hostFactoryTokens: 0, issuers: 0, retiredKeyVersions: [1] });
      expect(progress).toEqual([[3, 3]]);
      expect(await keyring()).toEqual([[1, 'retired'], [2, 'active']]);
      expect(await metaVersion('api-key-pepper')).toBe(2);
      // Everything still reads after key 1 is destroyed: values, the signing key, API keys (the pepper).
      expect((await api.getSecret(admin, 'a')).text).toBe('a2');
      expect((await api.getSecret(admin, 'a', '?version=1')).text).toBe('a1');
      expect((await api.getSecret(await api.login('admin', srv.adminKey), 'b')).text).toBe('b1');

      const second = await rotateDataKey(s);
      expect(second).toMatchObject({ newKeyVersion: 3, secrets: 3, signingKeys: 1, retiredKeyVersions: [2] });
      expect(await metaVersion('api-key-pepper')).toBe(3);

      const rows = (await allAuditRows(s.store)).filter((r) => r.action === 'keys');
      expect(rows.map((r) => [r.operation, r.result, r.account])).toEqual([
        ['rotate', 'success', null],
        ['rotate', 'success', null],
      ]);
      expect(rows[0]!.message).toBe(
        `coffer keys rotate: data key version 2 is active; re-encrypted 3 secret versions, 1 signing keys, ${report.apiKeys} API keys, ` +
          '0 host-factory tokens, 0 issuers; retired data key versions 1',
      );

      // A value left under the old key (its re-encryption skipped): refused, rolled back, nothing retired.
      const notUnderKey = s.store.secrets.notUnderKey;
      s.store.secrets.notUnderKey = async () => [];
      try {
        await expect(rotateDataKey(s)).rejects.toThrow('key rotation stopped: 3 stored values still use data key version 3; nothing was changed');
      } finally {
        s.store.secrets.notUnderKey = notUnderKey;
      }
      await s.barrier.loadKeyring();
      expect(await keyring()).toEqual([[1, 'retired'], [2, 'retired'], [3, 'active']]);
      expect((await api.getSecret(admin, 'a')).text).toBe('a2');
      // Likewise the signing key.
      const resealSigningKey = s.store.secrets.resealSigningKey;
      s.store.secrets.resealSigningKey = async () => undefined;
      try {
        await expect(rotateDataKey(s)).rejects.toThrow('key rotation stopped: 1 stored values still use data key version 3; nothing was changed');
      } finally {
        s.store.secrets.resealSigningKey = resealSigningKey;
      }
      await s.barrier.loadKeyring();
      expect(await keyring()).toEqual([[1, 'retired'], [2, 'retired'], [3, 'active']]);

      // rekey: the keyring is wrapped by the new master key, values untouched, audited.
      const next = randomBytes(32);
      await rekeyMaster(s, next);
      await expect(Barrier.open(next, s.store)).resolves.toBeInstanceOf(Barrier);
      await expect(Barrier.open(Buffer.from(srv.dataKey, 'base64'), s.store)).rejects.toThrow(DataKeyMismatchError);
      const rekey = (await allAuditRows(s.store)).filter((r) => r.action === 'keys' && r.operation === 'rekey');
      expect(rekey.map((r) => [r.result, r.message])).toEqual([['success', 'coffer keys rekey: the keyring is now wrapped by a new master key']]);
      expect((await api.getSecret(admin, 'b')).text).toBe('b1');
    } finally {
      await srv.close();
    }
  });
});
