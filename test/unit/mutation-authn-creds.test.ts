/**
 * Passwords, aimed at survivors of `npm run mutation -- --module authn-creds`
 * (src/authn/passwords.ts): a user without a password is refused even with
 * the text the timing dummy is hashed from, and the strength rule's counts
 * hold at exactly their minimum.
 */
import { describe, expect, it } from 'vitest';
import { checkPasswordStrength, hashPassword, verifyPassword } from '../../src/authn/passwords.js';

describe('verifyPassword', () => {
  it('refuses a user with no password, whatever is sent — the dummy hash’s own text included', async () => {
    for (const stored of [null, undefined]) {
      expect(await verifyPassword(stored, 'coffer-dummy-password-for-timing')).toBe(false);
      expect(await verifyPassword(stored, '')).toBe(false);
    }
  });

  it('accepts the right password and refuses a wrong or malformed hash', async () => {
    const hash = await hashPassword('Right-Password-12');
    expect(await verifyPassword(hash, 'Right-Password-12')).toBe(true);
    expect(await verifyPassword(hash, 'Right-Password-13')).toBe(false);
    expect(await verifyPassword('not a hash', 'Right-Password-12')).toBe(false);
  });
});

describe('checkPasswordStrength (Conjur: 12–128 characters, 2 upper, 2 lower, 1 digit, 1 special)', () => {
  it('accepts each count at exactly its minimum', () => {
    expect(() => checkPasswordStrength('ABcd1!!!!!!!')).not.toThrow();
  });

  it('refuses one fewer of each', () => {
    for (const weak of ['Abcd1!!!!!!!', 'ABcD1!!!!!!!', 'ABcd!!!!!!!!', 'ABcd12345678', 'ABcd1!!!!!!']) {
      expect(() => checkPasswordStrength(weak), weak).toThrow(/CONJ00046E/);
    }
  });
});
