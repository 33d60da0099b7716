/**
 * Key rotation. `rotateDataKey` creates a new data-encryption key and
 * re-encrypts every stored secret under it in one transaction, then destroys
 * the old keys: a crash at any point leaves either the old state or the new
 * one, never a value that cannot be read. `rekeyMaster` only re-wraps the
 * keyring under a new master key.
 */
import type { Services } from '../services.js';
import { SERVER_SECRET_NAMES } from './barrier.js';
import { HOST_FACTORY_PEPPER } from '../hostfactory/service.js';
import { secretAd } from './service.js';

const BATCH = 1000;

export interface RotationReport {
  newKeyVersion: number;
  secrets: number;
  signingKeys: number;
  apiKeys: number;
  hostFactoryTokens: number;
  retiredKeyVersions: number[];
}

export function rotateDataKey(s: Services): RotationReport {
  const { store, barrier } = s;
  return store.tx(() => {
    const before = store.keyring.listKeys().filter((k) => k.state !== 'retired').map((k) => k.version);
    const newKeyVersion = barrier.addDataKey();
    let secrets = 0;
    for (;;) {
      const rows = store.secrets.notUnderKey(newKeyVersion, BATCH);
      if (rows.length === 0) break;
      for (const row of rows) {
        const ad = secretAd(row.resource_id, row.version);
        const value = barrier.decrypt({ keyVersion: row.key_version, nonce: row.nonce, ciphertext: row.ciphertext }, ad);
        const sealed = barrier.encrypt(value, ad);
        value.fill(0);
        store.secrets.reseal(row.resource_id, row.version, sealed.keyVersion, sealed.nonce, sealed.ciphertext);
        secrets++;
      }
    }
    let signingKeys = 0;
    for (const key of store.secrets.allSigningKeys()) {
      const ad = `signing-key:${key.account}`;
      const der = barrier.decrypt({ keyVersion: key.key_version, nonce: key.nonce, ciphertext: key.ciphertext }, ad);
      const sealed = barrier.encrypt(der, ad);
      der.fill(0);
      store.secrets.resealSigningKey(key.account, sealed.keyVersion, sealed.nonce, sealed.ciphertext);
      signingKeys++;
    }
    const apiKeys = s.credentials.reencryptAll();
    const hostFactoryTokens = s.hostFactories.reencryptAll();
    barrier.reencryptServerSecrets([...SERVER_SECRET_NAMES, HOST_FACTORY_PEPPER]);
    for (const version of before) barrier.retireDataKey(version);
    return { newKeyVersion, secrets, signingKeys, apiKeys, hostFactoryTokens, retiredKeyVersions: before };
  });
}

export function rekeyMaster(s: Services, newMasterKey: Buffer): void {
  s.store.tx(() => s.barrier.rewrap(newMasterKey));
}
