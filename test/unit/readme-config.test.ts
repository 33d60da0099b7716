/** README's configuration table is the operator's reference: it must list every option exactly as the code defines it. */
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_OPTIONS } from '../../src/config.js';

describe('README configuration table', () => {
  it('has one row per CONFIG_OPTIONS entry, with its flag, variable, default and meaning', () => {
    const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    const missing = Object.entries(CONFIG_OPTIONS)
      .map(([key, o]) => [key, `| ${o.flag ? `\`${o.flag}\`` : '—'} | ${o.env ? `\`${o.env}\`` : '—'} | ${o.default} | ${o.meaning} |`] as const)
      .filter(([, row]) => !readme.includes(row))
      .map(([key, row]) => `${key}: ${row}`);
    expect(missing).toEqual([]);
  });
});
