/**
 * IP address and CIDR helpers for `restricted_to` (users, hosts) and
 * host-factory token CIDRs.
 *
 * Parsing is done by hand on top of `node:net`'s `isIP` (which rejects
 * zero-padded IPv4 octets and other ambiguous forms) so that matching is
 * exact and IPv4-mapped IPv6 clients (`::ffff:1.2.3.4`, what a dual-stack
 * socket reports) match IPv4 ranges.
 */
import { isIP } from 'node:net';
import { CofferError } from './errors.js';

interface Address {
  family: 4 | 6;
  value: bigint;
}

interface Cidr {
  family: 4 | 6;
  network: bigint;
  prefix: number;
}

const BITS = { 4: 32, 6: 128 } as const;
const IPV4_MAPPED_PREFIX = 0xffffn << 32n;
const IPV4_MAPPED_MASK = ~0xffffffffn & ((1n << 128n) - 1n);

/**
 * Validates and normalizes an IP address or CIDR range the way Conjur's
 * `Conjur::CIDR` does: a bare address gets the full-length prefix
 * (`1.2.3.7` → `1.2.3.7/32`, `::1` → `::1/128`); a range whose address has
 * host bits set is rejected with Conjur's "Did you mean" message.
 *
 * Conjur only accepts IPv4 in policy; Coffer also accepts IPv6 (a superset,
 * so every policy Conjur accepts is accepted here too).
 *
 * @throws CofferError `validation_failed` with Conjur's message
 *   (`Invalid IP address or CIDR range '<input>'[: …]`).
 */
export function normalizeCidr(input: string): string {
  const slash = input.indexOf('/');
  const addressText = slash < 0 ? input : input.slice(0, slash);
  const prefixText = slash < 0 ? undefined : input.slice(slash + 1);
  const address = parseAddress(addressText);
  if (!address) throw invalidCidr(input);
  const bits = BITS[address.family];
  if (prefixText === undefined) return `${formatAddress(address)}/${bits}`;

  // Digits only: Ruby's IPAddr rejects signs, spaces and dotted masks here too.
  if (!/^\d{1,3}$/.test(prefixText)) throw invalidCidr(input);
  const prefix = Number(prefixText);
  if (prefix > bits) throw invalidCidr(input);

  const network = address.value & prefixMask(address.family, prefix);
  const canonical = `${formatAddress({ family: address.family, value: network })}/${prefix}`;
  // Conjur compares the input with IPAddr#to_s, so `10.0.0.0/08` is refused
  // with the same "did you mean" hint as a range with host bits set. IPv6
  // spelling is not compared (Conjur has no IPv6 rules to mirror).
  const hostBitsSet = network !== address.value;
  const nonCanonicalV4 = address.family === 4 && input !== canonical;
  if (hostBitsSet || nonCanonicalV4) {
    throw invalidCidr(input, `Value has bits set to right of mask. Did you mean '${canonical}'?`);
  }
  return canonical;
}

/**
 * True when `ip` lies inside `cidr` (a range or a bare address). IPv4-mapped
 * IPv6 addresses are compared as IPv4 in both directions. Invalid input never
 * matches: this guards authentication, so it fails closed.
 */
export function cidrContains(cidr: string, ip: string): boolean {
  const range = parseCidrLoose(cidr);
  const address = parseAddress(ip);
  if (!range || !address) return false;
  const a = unmapIPv4(address);
  const r = unmapRange(range);
  if (a.family !== r.family) return false;
  return (a.value & prefixMask(r.family, r.prefix)) === r.network;
}

function invalidCidr(input: string, detail?: string): CofferError {
  const base = `Invalid IP address or CIDR range '${input}'`;
  return new CofferError('validation_failed', detail ? `${base}: ${detail}` : base);
}

/** Parses a range for matching; host bits are ignored (already validated on the way in). */
function parseCidrLoose(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  const address = parseAddress(slash < 0 ? text : text.slice(0, slash));
  if (!address) return undefined;
  const bits = BITS[address.family];
  const prefixText = slash < 0 ? String(bits) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) return undefined;
  const prefix = Number(prefixText);
  return { family: address.family, prefix, network: address.value & prefixMask(address.family, prefix) };
}

function prefixMask(family: 4 | 6, prefix: number): bigint {
  const bits = BITS[family];
  const all = (1n << BigInt(bits)) - 1n;
  return (all >> BigInt(bits - prefix)) << BigInt(bits - prefix);
}

function unmapIPv4(address: Address): Address {
  if (address.family === 6 && (address.value & IPV4_MAPPED_MASK) === IPV4_MAPPED_PREFIX) {
    return { family: 4, value: address.value & 0xffffffffn };
  }
  return address;
}

/** `::ffff:1.2.3.0/120` is the IPv4 range `1.2.3.0/24`. */
function unmapRange(range: Cidr): Cidr {
  if (range.family === 6 && range.prefix >= 96 && (range.network & IPV4_MAPPED_MASK) === IPV4_MAPPED_PREFIX) {
    return { family: 4, network: range.network & 0xffffffffn, prefix: range.prefix - 96 };
  }
  return range;
}

function parseAddress(text: string): Address | undefined {
  // Zone ids (`fe80::1%eth0`) identify an interface, not an address.
  if (text.includes('%')) return undefined;
  const family = isIP(text);
  if (family === 4) return { family: 4, value: parseIPv4(text) };
  if (family === 6) return parseIPv6(text);
  return undefined;
}

function parseIPv4(text: string): bigint {
  return text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function parseIPv6(text: string): Address | undefined {
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const expand = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const v4 = Number(parseIPv4(piece));
        out.push(v4 >>> 16, v4 & 0xffff);
      } else {
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const head = expand(halves[0] ?? '');
  const tail = halves.length === 2 ? expand(halves[1] ?? '') : [];
  if (!head || !tail) return undefined;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? fill !== 0 : fill < 0) return undefined;
  const groups = [...head, ...new Array<number>(fill).fill(0), ...tail];
  const value = groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
  return { family: 6, value };
}

function formatAddress(address: Address): string {
  return address.family === 4 ? formatIPv4(address.value) : formatIPv6(address.value);
}

function formatIPv4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

/** RFC 5952 text form; IPv4-mapped addresses keep the dotted tail. */
function formatIPv6(value: bigint): string {
  if ((value & IPV4_MAPPED_MASK) === IPV4_MAPPED_PREFIX) {
    return `::ffff:${formatIPv4(value & 0xffffffffn)}`;
  }
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  const run = longestZeroRun(groups);
  const hex = groups.map((g) => g.toString(16));
  if (!run) return hex.join(':');
  const left = hex.slice(0, run.start).join(':');
  const right = hex.slice(run.start + run.length).join(':');
  return `${left}::${right}`;
}

/** The first longest run of at least two zero groups (RFC 5952 §4.2). */
function longestZeroRun(groups: number[]): { start: number; length: number } | undefined {
  let best: { start: number; length: number } | undefined;
  let start = -1;
  for (let i = 0; i <= groups.length; i++) {
    if (i < groups.length && groups[i] === 0) {
      if (start < 0) start = i;
      continue;
    }
    if (start >= 0) {
      const length = i - start;
      if (length >= 2 && (!best || length > best.length)) best = { start, length };
      start = -1;
    }
  }
  return best;
}
