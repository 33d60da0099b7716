/**
 * Key rotation. `rotateDataKey` creates a new data-encryption key and
 * re-encrypts every stored secret under it in one transaction, then destroys
 * the old keys: a crash at any point leaves either the old state or the new
 * one, never a value that cannot be read (SQLite rolls the unfinished
 * transaction back on the next open, so a rerun starts from scratch).
 * `rekeyMaster` only re-wraps the keyring under a new master key.
 *
 * Every kind of sealed value must be re-encrypted here before the old keys
 * are destroyed: variable values, token signing keys, sealed API keys,
 * host-factory tokens and the server secrets. A new kind of sealed value
 * needs a line here too.
 */
import type { Services } from '../services.js';
import { SERVER_SECRET_NAMES } from './barrier.js';
import { HOST_FACTORY_PEPPER } from '../hostfactory/service.js';
import { secretAd } from './service.js';

const BATCH = 1000;

/** Called after each batch of re-encrypted secret versions (the CLI prints it for long rotations). */
export type RotationProgress = (done: number, total: number) => void;

export interface RotationReport {
  newKeyVersion: number;
  secrets: number;
  signingKeys: number;
  apiKeys: number;
  hostFactoryTokens: number;
  /** Dynamic-secret issuers whose sealed target credentials were re-encrypted. */
  issuers: number;
  retiredKeyVersions: number[];
}

export async function rotateDataKey(s: Services, onProgress?: RotationProgress): Promise<RotationReport> {
  const { store, barrier } = s;
  // Decrypting and re-encrypting inside the transaction is unavoidable here:
  // the new key only exists in it. The CLI runs this with the data directory
  // claimed (no server), so holding the write lock throughout blocks no one.
  const report = await store.tx(async () => {
    const before = (await store.keyring.listKeys()).filter((k) => k.state !== 'retired').map((k) => k.version);
    let total = 0;
    for (const v of before) total += await store.secrets.countUnderKey(v);
    const newKeyVersion = await barrier.addDataKey();
    let secrets = 0;
    for (;;) {
      const rows = await store.secrets.notUnderKey(newKeyVersion, BATCH);
      if (rows.length === 0) break;
      for (const row of rows) {
        const ad = secretAd(row.resource_id, row.version);
        const value = await barrier.decrypt({ keyVersion: row.key_version, nonce: row.nonce, ciphertext: row.ciphertext }, ad);
        const sealed = barrier.encrypt(value, ad);
        value.fill(0);
        await store.secrets.reseal(row.resource_id, row.version, sealed.keyVersion, sealed.nonce, sealed.ciphertext);
        secrets++;
      }
      onProgress?.(secrets, total);
    }
    let signingKeys = 0;
    for (const key of await store.secrets.allSigningKeys()) {
      const ad = `signing-key:${key.account}`;
      const der = await barrier.decrypt({ keyVersion: key.key_version, nonce: key.nonce, ciphertext: key.ciphertext }, ad);
      const sealed = barrier.encrypt(der, ad);
      der.fill(0);
      await store.secrets.resealSigningKey(key.account, sealed.keyVersion, sealed.nonce, sealed.ciphertext);
      signingKeys++;
    }
    const apiKeys = await s.credentials.reencryptAll();
    const hostFactoryTokens = await s.hostFactories.reencryptAll();
    const issuers = await s.issuers.reencryptAll();
    await barrier.reencryptServerSecrets([...SERVER_SECRET_NAMES, HOST_FACTORY_PEPPER]);
    // Destroying a key that a stored value still uses would lose that value: refuse (and roll back) instead.
    for (const version of before) {
      const left =
        (await store.secrets.countUnderKey(version)) + (await store.secrets.allSigningKeys()).filter((k) => k.key_version === version).length;
      if (left > 0) throw new Error(`key rotation stopped: ${left} stored values still use data key version ${version}; nothing was changed`);
    }
    for (const version of before) await barrier.retireDataKey(version);
    const result = { newKeyVersion, secrets, signingKeys, apiKeys, hostFactoryTokens, issuers, retiredKeyVersions: before };
    const rows = await s.audit.recordInTransaction([
      {
        account: null,
        action: 'keys',
        operation: 'rotate',
        result: 'success',
        message:
          `coffer keys rotate: data key version ${newKeyVersion} is active; re-encrypted ${secrets} secret versions, ` +
          `${signingKeys} signing keys, ${apiKeys} API keys, ${hostFactoryTokens} host-factory tokens, ${issuers} issuers; ` +
          `retired data key versions ${before.join(', ') || 'none'}`,
        details: result,
      },
    ]);
    return { result, rows };
  });
  s.audit.publish(report.rows);
  return report.result;
}

/** Re-wraps the keyring under a new master key; values are not touched. */
export async function rekeyMaster(s: Services, newMasterKey: Buffer): Promise<void> {
  const rows = await s.store.tx(async () => {
    await s.barrier.rewrap(newMasterKey);
    return s.audit.recordInTransaction([
      {
        account: null,
        action: 'keys',
        operation: 'rekey',
        result: 'success',
        message: 'coffer keys rekey: the keyring is now wrapped by a new master key',
      },
    ]);
  });
  s.audit.publish(rows);
}
