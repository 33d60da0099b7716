import { describe, expect, it } from 'vitest';
import { wordTrigrams } from '../../src/store/postgres/audit.js';

describe("q's trigrams as the PostgreSQL trigram index takes a LIKE pattern's", () => {
  it('are three ASCII letters or digits in a row, lower case, each once, words split by anything else', () => {
    expect(wordTrigrams('Seeded event 500000')).toEqual(['see', 'eed', 'ede', 'ded', 'eve', 'ven', 'ent', '500', '000']);
    expect(wordTrigrams('a:variable:app7/S1')).toEqual(['var', 'ari', 'ria', 'iab', 'abl', 'ble', 'app', 'pp7']);
    // Shorter words, LIKE's wildcards and letters outside ASCII give none (the whole pattern is used then).
    expect(wordTrigrams('ab_cd%ef é1 ü')).toEqual([]);
    expect(wordTrigrams('übung')).toEqual(['bun', 'ung']);
  });
  it('are at most twelve, spread over q', () => {
    const t = wordTrigrams('abcdefghijklmnopqrstuvwxyz');
    expect(t).toHaveLength(12);
    expect(t[0]).toBe('abc');
    expect(new Set(t).size).toBe(12);
    expect(t.at(-1)! > 'u').toBe(true);
  });
});
