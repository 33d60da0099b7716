/**
 * `coffer store copy` names the tables it moves: a table added by a migration
 * must be copied or left out on purpose, never forgotten (issuers and leases
 * once were, which would have stranded every issued database login).
 */
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { COPIED_TABLES, NOT_COPIED_TABLES } from '../../src/store/copy.js';
import { openDatabase } from '../../src/store/db.js';
import { tempDir } from '../helpers/tmp.js';

it('copies or deliberately leaves out every table of the SQLite schema', () => {
  const db = openDatabase(join(tempDir('coffer-copy-tables-'), 'c.db'));
  try {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as { name: string }[])
      .map((t) => t.name)
      // FTS5's shadow tables belong to audit_fts.
      .filter((name) => !/^audit_fts_(data|idx|content|docsize|config)$/.test(name));
    const accounted = new Set<string>([...COPIED_TABLES, ...NOT_COPIED_TABLES]);
    expect(tables.filter((t) => !accounted.has(t))).toEqual([]);
    expect([...accounted].filter((t) => !tables.includes(t))).toEqual([]);
    expect(COPIED_TABLES.filter((t) => (NOT_COPIED_TABLES as readonly string[]).includes(t))).toEqual([]);
  } finally {
    db.close();
  }
});
