/**
 * Barrier details aimed at mutants of src/secrets/barrier.ts
 * (npm run mutation -- --module secrets): master-key decoding exactly at
 * 32 bytes and canonical base64, key states through rotation (retiring keys
 * still decrypt, retired ones are gone), a ciphertext under a key another
 * barrier added, wiping, server secrets and the packed form.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { tempDir } from '../helpers/tmp.js';
import { Barrier, DataKeyMismatchError, decodeMasterKey, generateMasterKey, initSodium, packSealed, unpackSealed } from '../../src/secrets/barrier.js';
import { openStore } from '../../src/store/index.js';

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
    const b = await Barrier.open(randomBytes(32), store.keyring);
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
    const a = await Barrier.open(master, store.keyring);
    const b = await Barrier.open(master, store.keyring);
    await a.addDataKey();
    const sealed = a.encrypt(Buffer.from('v'), 'ad');
    expect(sealed.keyVersion).toBe(2);
    expect((await b.decrypt(sealed, 'ad')).toString()).toBe('v');
    expect(b.activeKeyVersion).toBe(2);
  });

  it('a rewrap skips retired keys and the old master key no longer opens', async () => {
    const store = fresh();
    const master = randomBytes(32);
    const b = await Barrier.open(master, store.keyring);
    await b.addDataKey();
    await b.retireDataKey(1);
    const v = b.encrypt(Buffer.from('x'), 'ad');
    const next = randomBytes(32);
    await b.rewrap(next);
    expect((await (await Barrier.open(next, store.keyring)).decrypt(v, 'ad')).toString()).toBe('x');
    await expect(Barrier.open(master, store.keyring)).rejects.toThrow(DataKeyMismatchError);
  });
});

describe('values, wiping, server secrets', () => {
  it('a modified ciphertext or nonce fails authentication', async () => {
    const b = await Barrier.open(randomBytes(32), fresh().keyring);
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
    const b = await Barrier.open(master, store.keyring);
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
    expect((await (await Barrier.open(master, store.keyring)).serverSecret('api-key-pepper')).equals(pepper)).toBe(true);
  });

  it('packs key version ‖ nonce ‖ ciphertext', () => {
    const s = { keyVersion: 0x01020304, nonce: randomBytes(24), ciphertext: randomBytes(40) };
    const packed = packSealed(s);
    expect(packed.subarray(0, 4)).toEqual(Buffer.from([1, 2, 3, 4]));
    expect(packed).toHaveLength(68);
    expect(unpackSealed(packed)).toEqual(s);
  });
});
