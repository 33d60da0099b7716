import { describe, it, expect } from 'vitest';
import { cidrContains, normalizeCidr } from '../../src/cidr.js';
import { CofferError } from '../../src/errors.js';

function errorOf(fn: () => unknown): CofferError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CofferError);
    return err as CofferError;
  }
  throw new Error('expected an error');
}

describe('normalizeCidr', () => {
  it('gives a bare IPv4 address a /32 prefix (cucumber cidr_restrictions)', () => {
    expect(normalizeCidr('1.2.3.7')).toBe('1.2.3.7/32');
    expect(normalizeCidr('192.168.101.1')).toBe('192.168.101.1/32');
  });

  it('keeps a valid IPv4 range unchanged', () => {
    expect(normalizeCidr('192.168.0.0/16')).toBe('192.168.0.0/16');
    expect(normalizeCidr('192.168.1.10/32')).toBe('192.168.1.10/32');
    expect(normalizeCidr('0.0.0.0/0')).toBe('0.0.0.0/0');
  });

  it('refuses host bits right of the mask with the Conjur hint', () => {
    const err = errorOf(() => normalizeCidr('10.0.0.1/24'));
    expect(err.code).toBe('validation_failed');
    expect(err.message).toBe(
      "Invalid IP address or CIDR range '10.0.0.1/24': Value has bits set to right of mask. Did you mean '10.0.0.0/24'?",
    );
  });

  it('refuses a zero-padded prefix like Conjur (input differs from IPAddr#to_s)', () => {
    expect(errorOf(() => normalizeCidr('10.0.0.0/08')).message).toBe(
      "Invalid IP address or CIDR range '10.0.0.0/08': Value has bits set to right of mask. Did you mean '10.0.0.0/8'?",
    );
  });

  it.each([
    'dap.my-company.net',
    'an_invalid_cidr_string',
    '1.895.abc.0/32',
    '10.0.0.0/33',
    '10.0.0.0/',
    '10.0.0.0/-1',
    '10.0.0.0/255.255.255.0',
    '01.2.3.4',
    '1.2.3',
    '',
    ' 1.2.3.4',
    'fe80::1%eth0',
    '::1/129',
  ])('refuses %j as an invalid address', (input) => {
    const err = errorOf(() => normalizeCidr(input));
    expect(err.code).toBe('validation_failed');
    expect(err.message).toBe(`Invalid IP address or CIDR range '${input}'`);
  });

  it('gives a bare IPv6 address a /128 prefix, in canonical form', () => {
    expect(normalizeCidr('::1')).toBe('::1/128');
    expect(normalizeCidr('2001:DB8:0:0:0:0:0:1')).toBe('2001:db8::1/128');
    expect(normalizeCidr('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1/128');
    expect(normalizeCidr('::ffff:1.2.3.4')).toBe('::ffff:1.2.3.4/128');
  });

  it('accepts IPv6 ranges and refuses host bits in them', () => {
    expect(normalizeCidr('2001:db8::/32')).toBe('2001:db8::/32');
    expect(normalizeCidr('::/0')).toBe('::/0');
    expect(errorOf(() => normalizeCidr('2001:db8::1/32')).message).toBe(
      "Invalid IP address or CIDR range '2001:db8::1/32': Value has bits set to right of mask. Did you mean '2001:db8::/32'?",
    );
  });
});

describe('cidrContains', () => {
  it('matches IPv4 addresses inside and outside a range', () => {
    expect(cidrContains('1.2.3.0/24', '1.2.3.4')).toBe(true);
    expect(cidrContains('1.2.3.0/24', '1.2.3.255')).toBe(true);
    expect(cidrContains('1.2.3.0/24', '1.2.4.1')).toBe(false);
    expect(cidrContains('10.0.0.0/8', '10.255.0.1')).toBe(true);
    expect(cidrContains('10.0.0.0/8', '11.0.0.1')).toBe(false);
  });

  it('treats /32 and a bare address as a single host', () => {
    expect(cidrContains('1.2.3.4/32', '1.2.3.4')).toBe(true);
    expect(cidrContains('1.2.3.4/32', '1.2.3.5')).toBe(false);
    expect(cidrContains('1.2.3.4', '1.2.3.4')).toBe(true);
  });

  it('matches everything of the same family with /0', () => {
    expect(cidrContains('0.0.0.0/0', '203.0.113.9')).toBe(true);
    expect(cidrContains('0.0.0.0/0', '2001:db8::1')).toBe(false);
    expect(cidrContains('::/0', '2001:db8::1')).toBe(true);
  });

  it('matches an IPv4-mapped IPv6 client against an IPv4 range', () => {
    expect(cidrContains('1.2.3.0/24', '::ffff:1.2.3.4')).toBe(true);
    expect(cidrContains('1.2.3.0/24', '::ffff:1.2.4.4')).toBe(false);
    expect(cidrContains('1.2.3.4/32', '::FFFF:1.2.3.4')).toBe(true);
  });

  it('matches an IPv4 client against an IPv4-mapped IPv6 range', () => {
    expect(cidrContains('::ffff:1.2.3.0/120', '1.2.3.9')).toBe(true);
    expect(cidrContains('::ffff:1.2.3.0/120', '1.2.4.9')).toBe(false);
  });

  it('matches IPv6 ranges', () => {
    expect(cidrContains('2001:db8::/32', '2001:db8:1::5')).toBe(true);
    expect(cidrContains('2001:db8::/32', '2001:db9::1')).toBe(false);
    expect(cidrContains('::1/128', '::1')).toBe(true);
    expect(cidrContains('::1/128', '1.2.3.4')).toBe(false);
  });

  it('fails closed on invalid input', () => {
    expect(cidrContains('garbage', '1.2.3.4')).toBe(false);
    expect(cidrContains('1.2.3.0/24', 'garbage')).toBe(false);
    expect(cidrContains('1.2.3.0/40', '1.2.3.4')).toBe(false);
    expect(cidrContains('1.2.3.0/24', '')).toBe(false);
  });
});
