/**
 * Human passwords: argon2id at OWASP's minimum (m=19 MiB, t=2, p=1), Conjur's
 * strength rules. argon2 runs on libuv's pool and is never on the secret-fetch
 * path; unknown users are verified against a dummy hash so they cost the same.
 */
import argon2 from 'argon2';
import { CofferError } from '../errors.js';

const OPTIONS = { type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const;

let dummy: Promise<string> | undefined;

export function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, OPTIONS);
}

export async function verifyPassword(stored: string | null | undefined, password: string): Promise<boolean> {
  dummy ??= argon2.hash('coffer-dummy-password-for-timing', OPTIONS);
  const hash = stored ?? (await dummy);
  let ok = false;
  try {
    ok = await argon2.verify(hash, password);
  } catch {
    ok = false;
  }
  return ok && stored !== null && stored !== undefined;
}

/**
 * Conjur's rules (lib/conjur/password.rb): 12–128 characters, at least two
 * upper-case, two lower-case, one digit and one special character, no newline.
 */
export function checkPasswordStrength(password: string): void {
  const count = (re: RegExp) => (password.match(re) ?? []).length;
  const ok =
    password.length >= 12 &&
    password.length <= 128 &&
    !/[\r\n]/.test(password) &&
    count(/[A-Z]/g) >= 2 &&
    count(/[a-z]/g) >= 2 &&
    count(/[0-9]/g) >= 1 &&
    count(/[^A-Za-z0-9]/g) >= 1;
  if (!ok) {
    throw new CofferError(
      'unprocessable_entity',
      'CONJ00046E User password does not match the required complexity: it must be 12 to 128 characters and ' +
        'contain at least 2 upper-case letters, 2 lower-case letters, 1 digit and 1 special character',
    );
  }
}
