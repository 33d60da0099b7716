import { describe, it, expect } from 'vitest';
import { writeFileSync, mkdirSync, cpSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.js';
import { openDatabase, MIGRATIONS_DIR, SchemaError } from '../../src/store/db.js';

const tmp = () => tempDir('coffer-store-');

describe('store: opening the database', () => {
  it('uses WAL, foreign keys and synchronous=FULL, also after a reopen of an existing WAL database', () => {
    const file = join(tmp(), 'c.db');
    const first = openDatabase(file);
    expect(first.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(first.pragma('synchronous', { simple: true })).toBe(2);
    first.close();
    const again = openDatabase(file);
    expect(again.pragma('synchronous', { simple: true })).toBe(2);
    expect(again.pragma('foreign_keys', { simple: true })).toBe(1);
    again.close();
  });

  it('applies migrations once and records them', () => {
    const file = join(tmp(), 'c.db');
    openDatabase(file).close();
    const db = openDatabase(file);
    const rows = db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all();
    const files = readdirSync(MIGRATIONS_DIR).filter((f) => /^\d{4}_.+\.sql$/.test(f)).sort();
    expect(rows).toEqual(files.map((f) => ({ version: Number(f.slice(0, 4)), name: f.slice(5, -4) })));
    expect(rows[0]).toEqual({ version: 1, name: 'init' });
    db.close();
  });

  it('refuses a database whose schema is newer than the code', () => {
    const dir = tmp();
    const migrations = join(dir, 'migrations');
    mkdirSync(migrations);
    cpSync(MIGRATIONS_DIR, migrations, { recursive: true });
    writeFileSync(join(migrations, '0099_future.sql'), 'CREATE TABLE future (x INTEGER);');
    const file = join(dir, 'c.db');
    openDatabase(file, { migrationsDir: migrations }).close();
    expect(() => openDatabase(file)).toThrow(SchemaError);
    expect(() => openDatabase(file)).toThrow(new RegExp(`schema is at version 99 but this Coffer knows migrations up to ${readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).length}`));
  });

  it('rolls back a failing migration entirely', () => {
    const dir = tmp();
    const migrations = join(dir, 'migrations');
    mkdirSync(migrations);
    cpSync(MIGRATIONS_DIR, migrations, { recursive: true });
    writeFileSync(join(migrations, '0098_broken.sql'), 'CREATE TABLE half (x INTEGER); SELECT * FROM no_such_table;');
    const file = join(dir, 'c.db');
    expect(() => openDatabase(file, { migrationsDir: migrations })).toThrow(/no_such_table/);
    const db = openDatabase(file);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'half'").get()).toBeUndefined();
    db.close();
  });

  it('applies a migration that arrived after a later one (applied by version, not by maximum)', () => {
    const dir = tmp();
    const early = join(dir, 'early');
    mkdirSync(early);
    cpSync(MIGRATIONS_DIR, early, { recursive: true });
    writeFileSync(join(early, '0097_late_table.sql'), 'CREATE TABLE late_table (x INTEGER);');
    const file = join(dir, 'c.db');
    openDatabase(file, { migrationsDir: early }).close();
    const merged = join(dir, 'merged');
    mkdirSync(merged);
    cpSync(early, merged, { recursive: true });
    writeFileSync(join(merged, '0096_gap_table.sql'), 'CREATE TABLE gap_table (x INTEGER);');
    const db = openDatabase(file, { migrationsDir: merged });
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'gap_table'").get()).toEqual({ name: 'gap_table' });
    expect(db.prepare('SELECT version FROM schema_migrations WHERE version = 96').get()).toEqual({ version: 96 });
    db.close();
  });

  it('refuses two migrations with the same version', () => {
    const dir = tmp();
    const migrations = join(dir, 'migrations');
    mkdirSync(migrations);
    cpSync(MIGRATIONS_DIR, migrations, { recursive: true });
    writeFileSync(join(migrations, '0001_again.sql'), 'SELECT 1;');
    expect(() => openDatabase(join(dir, 'c.db'), { migrationsDir: migrations })).toThrow(/share version 1/);
  });

  it('refuses UPDATE and DELETE on audit_events', () => {
    const db = openDatabase(join(tmp(), 'c.db'));
    db.prepare(
      `INSERT INTO audit_events (seq, time, action, operation, result, message, prev_hash, hash) VALUES (1, 't', 'a', 'o', 'success', 'm', x'00', x'00')`,
    ).run();
    expect(() => db.prepare("UPDATE audit_events SET message = 'x'").run()).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_events').run()).toThrow(/append-only/);
    db.close();
  });
});
