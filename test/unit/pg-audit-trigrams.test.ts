import { describe, expect, it } from 'vitest';
import { samplePercent, wordTrigrams } from '../../src/store/postgres/audit.js';

describe("q's trigrams as the PostgreSQL trigram index takes a LIKE pattern's", () => {
  it('are three ASCII letters or digits in a row, lower case, each once, words split by anything else', () => {
    expect(wordTrigrams('Seeded event 500000')).toEqual(['see', 'eed', 'ede', 'ded', 'eve', 'ven', 'ent', '500', '000']);
    expect(wordTrigrams('a:variable:app7/S1')).toEqual(['var', 'ari', 'ria', 'iab', 'abl', 'ble', 'app', 'pp7']);
    // Shorter words, LIKE's wildcards and letters outside ASCII give none (the whole pattern is used then).
    expect(wordTrigrams('ab_cd%ef é1 ü')).toEqual([]);
    expect(wordTrigrams('übung')).toEqual(['bun', 'ung']);
    // Unicode lower-cases the Kelvin sign to 'k' and 'İ' to 'i' + U+0307; ILIKE on a "C" column folds ASCII only,
    // so neither is part of a trigram ('kel', 'abi' would be in no match of q).
    expect(wordTrigrams('\u212Aelvin')).toEqual(['elv', 'lvi', 'vin']);
    expect(wordTrigrams('\u212Aey\u0130abc')).toEqual(['abc']);
    expect(wordTrigrams('xyzab\u0130')).toEqual(['xyz', 'yza', 'zab']);
  });
  it('are at most twelve, spread over q', () => {
    const t = wordTrigrams('abcdefghijklmnopqrstuvwxyz');
    expect(t).toHaveLength(12);
    expect(t[0]).toBe('abc');
    expect(new Set(t).size).toBe(12);
    expect(t.at(-1)! > 'u').toBe(true);
  });
  it('are counted in a sample of about 600 messages, whatever the size of the log', () => {
    expect(samplePercent(1_000_000)).toBeCloseTo(0.06, 10);
    expect(samplePercent(100_000)).toBeCloseTo(0.6, 10);
    expect(samplePercent(600)).toBe(100);
    expect(samplePercent(300)).toBe(100);
    expect(samplePercent(0)).toBe(100);
  });
});
