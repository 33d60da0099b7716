/**
 * The barrier: the one place where plaintext meets ciphertext.
 *
 * Envelope encryption with libsodium's XChaCha20-Poly1305-IETF. The master
 * data key (COFFER_DATA_KEY) only wraps data-encryption keys (DEKs) kept in
 * the keyring table; every stored secret — variable values, the API-key
 * pepper, token signing keys, host-factory tokens — is encrypted under the
 * active DEK with associated data naming what it is, so a ciphertext moved to
 * another row fails authentication instead of decrypting as the wrong value.
 */
import sodium from 'libsodium-wrappers';
import { randomBytes } from 'node:crypto';
import { CofferError } from '../errors.js';
import type { KeyringStore, Store } from '../store/index.js';

export const KEY_BYTES = 32;
const NONCE_BYTES = 24;
const KEY_CHECK_NAME = 'key_check';
const KEY_CHECK_PLAINTEXT = Buffer.from('coffer key-check v1');

/** A value as stored: which DEK, the nonce, and ciphertext+tag. */
export interface Sealed {
  keyVersion: number;
  nonce: Buffer;
  ciphertext: Buffer;
}

export class DataKeyMismatchError extends Error {}

let sodiumReady: Promise<void> | undefined;
/** libsodium-wrappers loads its wasm asynchronously; call once before using the barrier. */
export function initSodium(): Promise<void> {
  sodiumReady ??= sodium.ready;
  return sodiumReady;
}

/** Decodes a master key given as base64 of exactly 32 bytes. */
export function decodeMasterKey(base64: string, source: string): Buffer {
  const trimmed = base64.trim();
  const key = Buffer.from(trimmed, 'base64');
  if (key.length !== KEY_BYTES || key.toString('base64') !== trimmed.replace(/\s/g, '')) {
    throw new Error(`${source} must be the base64 encoding of exactly ${KEY_BYTES} bytes (generate one with 'coffer keygen')`);
  }
  return key;
}

export function generateMasterKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

// Nonces come from node:crypto: libsodium-wrappers' randombytes_buf costs
// ~130 µs per call in its wasm build versus ~5 µs here (performance.md).
function seal(key: Uint8Array, plaintext: Uint8Array, ad: string): { nonce: Buffer; ciphertext: Buffer } {
  const nonce = randomBytes(NONCE_BYTES);
  const ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, null, nonce, key);
  return { nonce, ciphertext: Buffer.from(ct.buffer, ct.byteOffset, ct.byteLength) };
}

function open(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, ad: string): Uint8Array {
  return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(null, ciphertext, ad, nonce, key);
}

const keyringAd = (version: number) => `coffer:keyring:${version}`;

export class Barrier {
  private deks = new Map<number, Uint8Array>();
  private activeVersion = 0;
  /**
   * Bumped by every change to `deks`/`activeVersion`. The keyring is read
   * with an await between the read and its use, so a reload whose read
   * predates a newer change (a key added, retired or reloaded meanwhile)
   * reads again rather than put an older keyring back: an active version
   * reverting in the middle of a rotation would re-encrypt values under a key
   * about to be destroyed.
   */
  private generation = 0;

  private constructor(
    private masterKey: Buffer,
    private readonly keyring: KeyringStore,
    private readonly tx: Store['tx'],
  ) {}

  /**
   * Opens the barrier over a database: verifies the master key against the
   * stored key-check value (creating it and the first DEK on a new database)
   * and unwraps the keyring.
   *
   * Several nodes may start at once on a new PostgreSQL database: each would
   * find no key check and no DEK and write its own (a duplicate keyring
   * version refused one node's start; two different master keys would both
   * have been accepted). So a database that needs setting up is set up in a
   * transaction, under the store's write lock, and checked again there: the
   * first node writes, the others find its key check and DEK.
   */
  static async open(masterKey: Buffer, store: Pick<Store, 'keyring' | 'tx'>): Promise<Barrier> {
    const barrier = new Barrier(masterKey, store.keyring, (fn) => store.tx(fn));
    if (await barrier.checkAndLoad(false)) return barrier;
    await store.tx(() => barrier.checkAndLoad(true));
    return barrier;
  }

  /** Verifies the key check and loads the keyring; with `setUp`, writes what a new database lacks. Answers whether nothing was missing. */
  private async checkAndLoad(setUp: boolean): Promise<boolean> {
    const check = await this.keyring.getMeta(KEY_CHECK_NAME);
    if (!check) {
      if (!setUp) return false;
      const sealed = seal(this.masterKey, KEY_CHECK_PLAINTEXT, 'coffer:key-check');
      await this.keyring.putMeta(KEY_CHECK_NAME, Buffer.concat([sealed.nonce, sealed.ciphertext]));
    } else {
      try {
        open(this.masterKey, check.subarray(0, NONCE_BYTES), check.subarray(NONCE_BYTES), 'coffer:key-check');
      } catch {
        throw new DataKeyMismatchError(
          'The data key does not match this database (key-check failed). Start Coffer with the key this ' +
            'database was created with, or rekey it with `coffer keys rekey`.',
        );
      }
    }
    await this.loadKeyring();
    if (this.activeVersion !== 0) return true;
    if (!setUp) return false;
    await this.addDataKey();
    return true;
  }

  /** (Re)reads the keyring; called on open and when a ciphertext names an unknown DEK. */
  async loadKeyring(): Promise<void> {
    for (;;) {
      const generation = this.generation;
      const rows = await this.keyring.listKeys();
      // A change since the read began: that read may be older than it, so read again.
      if (generation !== this.generation) continue;
      // From here on synchronous, as before: no request sees a half-loaded
      // keyring. A row that fails to unwrap leaves what was loaded before it.
      for (const dek of this.deks.values()) sodium.memzero(dek);
      this.deks.clear();
      this.activeVersion = 0;
      this.generation++;
      for (const row of rows) {
        if (row.state === 'retired') continue;
        const dek = open(this.masterKey, row.nonce, row.wrapped_key, keyringAd(row.version));
        this.deks.set(row.version, dek);
        if (row.state === 'active') this.activeVersion = row.version;
      }
      return;
    }
  }

  get activeKeyVersion(): number {
    return this.activeVersion;
  }

  /** Creates a new DEK and makes it the active one; the previous active key becomes `retiring`. */
  async addDataKey(): Promise<number> {
    const version = Math.max(0, ...(await this.keyring.listKeys()).map((k) => k.version)) + 1;
    const dek = randomBytes(KEY_BYTES);
    const wrapped = seal(this.masterKey, dek, keyringAd(version));
    if (this.activeVersion) await this.keyring.setKeyState(this.activeVersion, 'retiring');
    await this.keyring.insertKey(version, wrapped.nonce, wrapped.ciphertext, 'active');
    this.deks.set(version, new Uint8Array(dek));
    sodium.memzero(dek);
    this.activeVersion = version;
    this.generation++;
    return version;
  }

  /** Destroys a DEK that no stored value uses any more. */
  async retireDataKey(version: number): Promise<void> {
    const dek = this.deks.get(version);
    if (dek) sodium.memzero(dek);
    this.deks.delete(version);
    this.generation++;
    await this.keyring.retireKey(version);
  }

  /** Re-wraps every DEK under a new master key and replaces the key-check value. */
  async rewrap(newMasterKey: Buffer): Promise<void> {
    for (const row of await this.keyring.listKeys()) {
      if (row.state === 'retired') continue;
      const dek = this.deks.get(row.version);
      if (!dek) throw new Error(`keyring version ${row.version} is not loaded`);
      const wrapped = seal(newMasterKey, dek, keyringAd(row.version));
      await this.keyring.rewrapKey(row.version, wrapped.nonce, wrapped.ciphertext);
    }
    const sealed = seal(newMasterKey, KEY_CHECK_PLAINTEXT, 'coffer:key-check');
    await this.keyring.putMeta(KEY_CHECK_NAME, Buffer.concat([sealed.nonce, sealed.ciphertext]));
    this.masterKey = newMasterKey;
    // A reload that read the keyring before the rewrap must not unwrap it with the new key.
    this.generation++;
  }

  /** Encrypts under the active DEK; `ad` must name what the value is (e.g. `secret:acct:variable:x:3`). */
  encrypt(plaintext: Uint8Array, ad: string): Sealed {
    const dek = this.deks.get(this.activeVersion);
    if (!dek) throw new Error('no active data-encryption key');
    const { nonce, ciphertext } = seal(dek, plaintext, ad);
    return { keyVersion: this.activeVersion, nonce, ciphertext };
  }

  /**
   * Decrypts a sealed value. A failed authentication (tampered row, row moved
   * between variables or versions, wrong key) is an internal error; the
   * message never includes any part of the value. Async because a value
   * under a DEK this process has not loaded (another process added it)
   * rereads the keyring; a loaded DEK costs no store call.
   */
  async decrypt(sealed: Sealed, ad: string): Promise<Buffer> {
    let dek = this.deks.get(sealed.keyVersion);
    if (!dek) {
      await this.loadKeyring();
      dek = this.deks.get(sealed.keyVersion);
    }
    if (!dek) {
      throw new CofferError('internal_error', `Stored value is encrypted under unknown data key version ${sealed.keyVersion}`);
    }
    try {
      const pt = open(dek, sealed.nonce, sealed.ciphertext, ad);
      return Buffer.from(pt.buffer, pt.byteOffset, pt.byteLength);
    } catch {
      throw new CofferError('internal_error', 'Stored value failed authentication: it was modified or moved (integrity check failed)');
    }
  }

  /** Zeroes a plaintext buffer once it is no longer needed. */
  static wipe(buf: Uint8Array | undefined): void {
    if (buf && buf.byteLength > 0) sodium.memzero(buf);
  }

  /**
   * Returns a named server secret, creating it (random bytes) on first use. Created under the store's write lock and
   * looked for again there, as open() sets up a new database: nodes starting at once would each have made their own
   * (an API-key pepper that differs between nodes, and the database keeping only the last one written), so a key
   * hashed on one node would not match on another, nor on any node after a restart.
   */
  async serverSecret(name: string, bytes = 32): Promise<Buffer> {
    const ad = `server-secret:${name}`;
    const stored = await this.keyring.getMeta(`secret:${name}`);
    if (stored) return this.decrypt(unpackSealed(stored), ad);
    return this.tx(async () => {
      const written = await this.keyring.getMeta(`secret:${name}`);
      if (written) return this.decrypt(unpackSealed(written), ad);
      const value = randomBytes(bytes);
      await this.keyring.putMeta(`secret:${name}`, packSealed(this.encrypt(value, ad)));
      return value;
    });
  }

  /** Re-encrypts every server secret under the active DEK (part of `keys rotate`). */
  async reencryptServerSecrets(names: string[]): Promise<void> {
    for (const name of names) {
      const stored = await this.keyring.getMeta(`secret:${name}`);
      if (!stored) continue;
      const ad = `server-secret:${name}`;
      const value = await this.decrypt(unpackSealed(stored), ad);
      await this.keyring.putMeta(`secret:${name}`, packSealed(this.encrypt(value, ad)));
      Barrier.wipe(value);
    }
  }
}

/** Server secrets are kept as one blob: 4-byte key version ‖ nonce ‖ ciphertext. */
export function packSealed(s: Sealed): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(s.keyVersion);
  return Buffer.concat([head, s.nonce, s.ciphertext]);
}

export function unpackSealed(blob: Buffer): Sealed {
  return {
    keyVersion: blob.readUInt32BE(0),
    nonce: blob.subarray(4, 4 + NONCE_BYTES),
    ciphertext: blob.subarray(4 + NONCE_BYTES),
  };
}

export const SERVER_SECRET_NAMES = ['api-key-pepper', 'audit-checkpoint'] as const;
