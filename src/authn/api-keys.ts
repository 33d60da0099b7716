/**
 * API keys: 32 random bytes in Conjur's form (8 big-endian uint32s, each
 * Crockford base32, concatenated, lowercase). Stored only as HMAC-SHA-256
 * under a server pepper kept encrypted by the barrier: API keys carry 256
 * bits of entropy, so a slow KDF would buy nothing but latency.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const CROCKFORD = '0123456789abcdefghjkmnpqrstvwxyz';

function crockford(n: number): string {
  if (n === 0) return '0';
  let out = '';
  while (n > 0) {
    out = CROCKFORD[n % 32]! + out;
    n = Math.floor(n / 32);
  }
  return out;
}

export function generateApiKey(): string {
  const bytes = randomBytes(32);
  let key = '';
  for (let i = 0; i < 32; i += 4) key += crockford(bytes.readUInt32BE(i));
  bytes.fill(0);
  return key;
}

export class ApiKeyHasher {
  /** A hash no real key produces; compared against on unknown logins so they cost the same. */
  readonly dummyHash: Buffer;

  constructor(private readonly pepper: Buffer) {
    this.dummyHash = this.hash(generateApiKey());
  }

  hash(apiKey: string): Buffer {
    return createHmac('sha256', this.pepper).update(apiKey, 'utf8').digest();
  }

  /** Constant-time comparison of a presented key with a stored hash. */
  verify(apiKey: string, stored: Buffer | null | undefined): boolean {
    const presented = this.hash(apiKey);
    const target = stored && stored.length === presented.length ? stored : this.dummyHash;
    const equal = timingSafeEqual(presented, target);
    return equal && target !== this.dummyHash;
  }
}
