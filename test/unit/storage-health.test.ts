/**
 * The write probe behind GET /health (src/store/health.ts) on real SQLite
 * files: a database that cannot take a commit is reported not writable with
 * SQLite's reason, a write lock held by another connection is inconclusive
 * (the last answer stands, nothing waits), answers are kept for a second,
 * and a storage failure seen by a write drops the kept answer.
 */
import { describe, it, expect, afterEach } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Db } from '../../src/store/db.js';
import { createStorageHealth } from '../../src/store/health.js';

const dirs: string[] = [];
const dbs: Db[] = [];
function freshDb(): { path: string; db: Db } {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-health-'));
  dirs.push(dir);
  const path = join(dir, 'coffer.db');
  const db = openDatabase(path);
  dbs.push(db);
  return { path, db };
}
afterEach(() => {
  for (const db of dbs.splice(0)) if (db.open) db.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('storage health probe', () => {
  it('a writable database with room is writable; the probe rewrites only its one health_probe row', () => {
    const { db } = freshDb();
    const before = db.prepare('SELECT * FROM schema_migrations ORDER BY version').all();
    expect(createStorageHealth(db).check(0, 0)).toEqual({ writable: true });
    expect(db.prepare('SELECT * FROM schema_migrations ORDER BY version').all()).toEqual(before);
    expect(db.prepare('SELECT id, probed_at FROM health_probe').all()).toEqual([{ id: 1, probed_at: '1970-01-01T00:00:00.000Z 1' }]);
  });

  it('a database that refuses commits (opened read-only) is not writable, with SQLite\'s reason', () => {
    const { path } = freshDb();
    const ro = new Database(path, { readonly: true });
    dbs.push(ro);
    const r = createStorageHealth(ro).check(0, 0);
    expect(r.writable).toBe(false);
    expect(r.reason).toMatch(/^the database cannot be written: .*\(SQLITE_READONLY\w*\)$/);
  });

  it('less free space than required is not writable, naming both figures', () => {
    const { db } = freshDb();
    const r = createStorageHealth(db).check(0, Number.MAX_SAFE_INTEGER);
    expect(r.writable).toBe(false);
    expect(r.reason).toMatch(new RegExp(`^no space left for writes: \\d+ bytes free on the data directory's file system, at least ${Number.MAX_SAFE_INTEGER} needed$`));
  });

  it('a write lock held by another connection is inconclusive: the last answer stands and busy_timeout is restored', () => {
    const { path, db } = freshDb();
    const health = createStorageHealth(db);
    expect(health.check(0, 0).writable).toBe(true);
    const other = new Database(path);
    dbs.push(other);
    other.exec('BEGIN IMMEDIATE');
    try {
      const timeout = db.pragma('busy_timeout', { simple: true });
      expect(health.check(5_000, 0)).toEqual({ writable: true });
      expect(db.pragma('busy_timeout', { simple: true })).toBe(timeout);
    } finally {
      other.exec('ROLLBACK');
    }
  });

  it('the probe is a real commit (another connection sees the database change), made at most once a second per threshold', () => {
    const { path, db } = freshDb();
    const health = createStorageHealth(db);
    const other = new Database(path, { readonly: true });
    dbs.push(other);
    // data_version, read on another connection, changes when this one commits.
    const version = () => other.pragma('data_version', { simple: true }) as number;
    const v0 = version();
    expect(health.check(1_000, 0).writable).toBe(true);
    const v1 = version();
    expect(v1).not.toBe(v0);
    expect(health.check(1_999, 0).writable).toBe(true);
    expect(version()).toBe(v1);
    // Another threshold is another question (free space is enough to answer it here).
    expect(health.check(1_999, Number.MAX_SAFE_INTEGER).writable).toBe(false);
    expect(health.check(3_000, 0).writable).toBe(true);
    expect(version()).not.toBe(v1);
  });

  it('a storage failure noted by a write drops the kept answer (the next check commits again); other errors do not', () => {
    const { path, db } = freshDb();
    const health = createStorageHealth(db);
    const other = new Database(path, { readonly: true });
    dbs.push(other);
    const version = () => other.pragma('data_version', { simple: true }) as number;
    expect(health.check(0, 0).writable).toBe(true);
    const v1 = version();
    health.noteFailure(Object.assign(new Error('UNIQUE constraint failed'), { code: 'SQLITE_CONSTRAINT_UNIQUE' }));
    expect(health.check(100, 0).writable).toBe(true);
    expect(version()).toBe(v1);
    health.noteFailure(new Error('wrapped', { cause: Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }) }));
    expect(health.check(200, 0).writable).toBe(true);
    expect(version()).not.toBe(v1);
  });

  it('probes do not grow the database: 1,500 of them leave the file as it was and the WAL within its checkpoint size', () => {
    const { path, db } = freshDb();
    // Sizes do not depend on fsync; skipping it keeps 1,500 commits quick.
    db.pragma('synchronous = OFF');
    const health = createStorageHealth(db);
    health.check(0, 0);
    db.pragma('wal_checkpoint(TRUNCATE)');
    const dbBytes = statSync(path).size;
    let walMax = 0;
    for (let i = 1; i <= 1500; i++) {
      expect(health.check(i * 1000, 0).writable).toBe(true);
      walMax = Math.max(walMax, statSync(`${path}-wal`).size);
    }
    expect(statSync(path).size).toBe(dbBytes);
    // SQLite checkpoints at 1,000 WAL pages and then reuses the WAL from its start.
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    expect(walMax).toBeLessThanOrEqual(32 + 1001 * (24 + pageSize));
    expect(db.prepare('SELECT count(*) AS n FROM health_probe').get()).toEqual({ n: 1 });
  });
});

describe('storage failures are recognised by their codes', () => {
  it("SQLite's primary and extended codes and the errno codes of a full or failing disk, also as a cause; nothing else", async () => {
    const { storageFailureOf } = await import('../../src/errors.js');
    const err = (code: string) => Object.assign(new Error(`failed: ${code}`), { code });
    for (const code of ['SQLITE_FULL', 'SQLITE_IOERR', 'SQLITE_IOERR_WRITE', 'SQLITE_IOERR_FSYNC', 'SQLITE_READONLY', 'SQLITE_READONLY_DBMOVED', 'SQLITE_CANTOPEN', 'SQLITE_CANTOPEN_ISDIR', 'ENOSPC', 'EDQUOT', 'EIO', 'EROFS']) {
      expect(storageFailureOf(err(code))?.code, code).toBe(code);
      expect(storageFailureOf(new Error('wrapped', { cause: err(code) }))?.code, `wrapped ${code}`).toBe(code);
    }
    for (const code of ['SQLITE_CONSTRAINT', 'SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_BUSY', 'SQLITE_FULLX', 'ENOENT', 'EIOX', 'sqlite_full']) {
      expect(storageFailureOf(err(code)), code).toBeUndefined();
    }
  });
});

describe('audit reasons of failed requests', () => {
  it('a CofferError gives its reason, a storage failure its code, anything else only "internal error"', async () => {
    const { auditReasonOf, forbidden, unprocessable } = await import('../../src/errors.js');
    expect(auditReasonOf(forbidden('no execute privilege'))).toBe('no execute privilege');
    expect(auditReasonOf(unprocessable('bad input'))).toBe('bad input');
    expect(auditReasonOf(new Error('x', { cause: Object.assign(new Error('disk'), { code: 'SQLITE_IOERR_WRITE' }) }))).toBe('storage unavailable (SQLITE_IOERR_WRITE)');
    expect(auditReasonOf(new Error('secret-looking detail'))).toBe('internal error');
  });
});
