import { describe, it, expect, beforeAll } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { randomBytes } from 'node:crypto';
import { Barrier, DataKeyMismatchError, decodeMasterKey, initSodium } from '../../src/secrets/barrier.js';
import { openStore } from '../../src/store/index.js';

beforeAll(() => initSodium());

const fresh = () => openStore(join(tempDir('coffer-barrier-'), 'c.db'));

describe('barrier (envelope encryption)', () => {
  it('round-trips values and binds them to their associated data', () => {
    const store = fresh();
    const b = Barrier.open(randomBytes(32), store.keyring);
    const sealed = b.encrypt(Buffer.from('s3cr3t'), 'secret:a:variable:x:1');
    expect(sealed.nonce).toHaveLength(24);
    expect(b.decrypt(sealed, 'secret:a:variable:x:1').toString()).toBe('s3cr3t');
    expect(() => b.decrypt(sealed, 'secret:a:variable:y:1')).toThrow(/failed authentication/);
    expect(() => b.decrypt(sealed, 'secret:a:variable:x:2')).toThrow(/failed authentication/);
  });

  it('never reuses a nonce', () => {
    const b = Barrier.open(randomBytes(32), fresh().keyring);
    const nonces = new Set(Array.from({ length: 1000 }, () => b.encrypt(Buffer.from('v'), 'ad').nonce.toString('hex')));
    expect(nonces.size).toBe(1000);
  });

  it('refuses a master key that does not match the key-check value', () => {
    const store = fresh();
    Barrier.open(randomBytes(32), store.keyring);
    expect(() => Barrier.open(randomBytes(32), store.keyring)).toThrow(DataKeyMismatchError);
  });

  it('keeps values readable across DEK rotation and master rekey', () => {
    const store = fresh();
    const master = randomBytes(32);
    const b = Barrier.open(master, store.keyring);
    const old = b.encrypt(Buffer.from('v1'), 'ad');
    const v2 = b.addDataKey();
    expect(v2).toBe(2);
    expect(b.decrypt(old, 'ad').toString()).toBe('v1');
    const newMaster = randomBytes(32);
    b.rewrap(newMaster);
    const reopened = Barrier.open(newMaster, store.keyring);
    expect(reopened.decrypt(old, 'ad').toString()).toBe('v1');
    expect(() => Barrier.open(master, store.keyring)).toThrow(DataKeyMismatchError);
  });

  it('keeps server secrets stable across opens', () => {
    const store = fresh();
    const master = randomBytes(32);
    const pepper = Barrier.open(master, store.keyring).serverSecret('api-key-pepper');
    expect(Barrier.open(master, store.keyring).serverSecret('api-key-pepper').equals(pepper)).toBe(true);
  });

  it('decodes master keys strictly', () => {
    expect(() => decodeMasterKey('short', 'K')).toThrow(/exactly 32 bytes/);
    expect(decodeMasterKey(randomBytes(32).toString('base64'), 'K')).toHaveLength(32);
  });
});
