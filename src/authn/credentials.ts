/** Creating and rotating API keys: the hash for verification, the sealed copy for password login. */
import type { Barrier } from '../secrets/barrier.js';
import { packSealed, unpackSealed } from '../secrets/barrier.js';
import type { CredentialsStore } from '../store/index.js';
import { ApiKeyHasher, generateApiKey } from './api-keys.js';
import type { TokenService } from './tokens.js';
import type { Clock } from '../context.js';

const sealAd = (roleId: string) => `api-key:${roleId}`;

export class Credentials {
  constructor(
    private readonly store: CredentialsStore,
    private readonly barrier: Barrier,
    readonly hasher: ApiKeyHasher,
    private readonly tokens: TokenService,
    private readonly clock: Clock,
  ) {}

  /**
   * Gives a new role (user or host) credentials; returns its API key, shown
   * once. Tokens issued before now under the same role id (a deleted role of
   * that name) stay dead: deletion must not be undone by re-creation.
   */
  async create(roleId: string, restrictedTo: string[]): Promise<string> {
    const apiKey = generateApiKey();
    const notBefore = this.tokens.nextNotBefore(roleId, this.clock.nowMs());
    await this.store.insert(roleId, this.hasher.hash(apiKey), this.seal(roleId, apiKey), restrictedTo, notBefore);
    this.tokens.setNotBefore(roleId, notBefore);
    return apiKey;
  }

  /** Replaces the role's API key at once; tokens issued before now stop working. */
  async rotate(roleId: string): Promise<string> {
    const apiKey = generateApiKey();
    const notBefore = this.tokens.nextNotBefore(roleId, this.clock.nowMs());
    await this.store.setApiKey(roleId, this.hasher.hash(apiKey), this.seal(roleId, apiKey), notBefore);
    this.tokens.setNotBefore(roleId, notBefore);
    return apiKey;
  }

  /** The current API key (password login answers with it). */
  async reveal(roleId: string): Promise<string | undefined> {
    const sealed = (await this.store.get(roleId))?.api_key_sealed;
    if (!sealed) return undefined;
    return (await this.barrier.decrypt(unpackSealed(sealed), sealAd(roleId))).toString('utf8');
  }

  /** Re-encrypts every sealed API key under the active data key (key rotation). */
  async reencryptAll(): Promise<number> {
    let n = 0;
    for (const row of await this.store.sealedApiKeys()) {
      const key = await this.barrier.decrypt(unpackSealed(row.api_key_sealed), sealAd(row.role_id));
      await this.store.resealApiKey(row.role_id, packSealed(this.barrier.encrypt(key, sealAd(row.role_id))));
      key.fill(0);
      n++;
    }
    return n;
  }

  private seal(roleId: string, apiKey: string): Buffer {
    return packSealed(this.barrier.encrypt(Buffer.from(apiKey, 'utf8'), sealAd(roleId)));
  }
}
