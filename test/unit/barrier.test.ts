import { describe, it, expect, beforeAll } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { randomBytes } from 'node:crypto';
import { Barrier, DataKeyMismatchError, decodeMasterKey, initSodium } from '../../src/secrets/barrier.js';
import { openStore } from '../../src/store/index.js';

beforeAll(() => initSodium());

const fresh = () => openStore(join(tempDir('coffer-barrier-'), 'c.db'));

describe('barrier (envelope encryption)', () => {
  it('round-trips values and binds them to their associated data', async () => {
    const store = fresh();
    const b = await Barrier.open(randomBytes(32), store);
    const sealed = b.encrypt(Buffer.from('s3cr3t'), 'secret:a:variable:x:1');
    expect(sealed.nonce).toHaveLength(24);
    expect((await b.decrypt(sealed, 'secret:a:variable:x:1')).toString()).toBe('s3cr3t');
    await expect(b.decrypt(sealed, 'secret:a:variable:y:1')).rejects.toThrow(/failed authentication/);
    await expect(b.decrypt(sealed, 'secret:a:variable:x:2')).rejects.toThrow(/failed authentication/);
  });

  it('never reuses a nonce', async () => {
    const b = await Barrier.open(randomBytes(32), fresh());
    const nonces = new Set(Array.from({ length: 1000 }, () => b.encrypt(Buffer.from('v'), 'ad').nonce.toString('hex')));
    expect(nonces.size).toBe(1000);
  });

  it('refuses a master key that does not match the key-check value', async () => {
    const store = fresh();
    await Barrier.open(randomBytes(32), store);
    await expect(Barrier.open(randomBytes(32), store)).rejects.toThrow(DataKeyMismatchError);
  });

  it('keeps values readable across DEK rotation and master rekey', async () => {
    const store = fresh();
    const master = randomBytes(32);
    const b = await Barrier.open(master, store);
    const old = b.encrypt(Buffer.from('v1'), 'ad');
    const v2 = await b.addDataKey();
    expect(v2).toBe(2);
    expect((await b.decrypt(old, 'ad')).toString()).toBe('v1');
    const newMaster = randomBytes(32);
    await b.rewrap(newMaster);
    const reopened = await Barrier.open(newMaster, store);
    expect((await reopened.decrypt(old, 'ad')).toString()).toBe('v1');
    await expect(Barrier.open(master, store)).rejects.toThrow(DataKeyMismatchError);
  });

  it('keeps server secrets stable across opens', async () => {
    const store = fresh();
    const master = randomBytes(32);
    const pepper = await (await Barrier.open(master, store)).serverSecret('api-key-pepper');
    expect((await (await Barrier.open(master, store)).serverSecret('api-key-pepper')).equals(pepper)).toBe(true);
  });

  it('a server secret asked for by several callers at once is created once: every caller gets the stored one', async () => {
    // Nodes starting at once on a new database each made their own API-key pepper, and the database kept the last.
    const store = fresh();
    const master = randomBytes(32);
    const barriers = await Promise.all(Array.from({ length: 3 }, () => Barrier.open(master, store)));
    const peppers = await Promise.all([...barriers, ...barriers].map((b) => b.serverSecret('api-key-pepper')));
    const stored = await (await Barrier.open(master, store)).serverSecret('api-key-pepper');
    for (const pepper of peppers) expect(pepper.equals(stored)).toBe(true);
  });

  it('decodes master keys strictly', () => {
    expect(() => decodeMasterKey('short', 'K')).toThrow(/exactly 32 bytes/);
    expect(decodeMasterKey(randomBytes(32).toString('base64'), 'K')).toHaveLength(32);
  });
});
