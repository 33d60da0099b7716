/**
 * Whether this machine can start PostgreSQL clusters for tests — without
 * importing vitest, so the vitest configuration itself can ask
 * (vitest.config.ts decides whether the PostgreSQL pass runs).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const PG_BIN = process.env.COFFER_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export const isRoot = process.getuid?.() === 0;

/** Why PostgreSQL clusters cannot be started here, or undefined when they can. */
export function postgresMissing(binDir = PG_BIN): string | undefined {
  for (const bin of ['initdb', 'pg_ctl', 'postgres', 'pg_basebackup', 'psql', 'pg_config']) {
    if (!existsSync(join(binDir, bin))) {
      return `PostgreSQL server binaries not found (${join(binDir, bin)} is missing): install Debian's postgresql package (apt-get install -y postgresql)`;
    }
  }
  if (isRoot && pgUser() === undefined) return 'running as root but there is no `postgres` OS user to run PostgreSQL as';
  try {
    const share = execFileSync(join(binDir, 'pg_config'), ['--sharedir'], { encoding: 'utf8' }).trim();
    if (!existsSync(join(share, 'extension', 'pg_trgm.control'))) {
      return `the pg_trgm extension is not installed (${share}/extension/pg_trgm.control is missing): install postgresql-contrib`;
    }
  } catch (err) {
    return `pg_config failed: ${(err as Error).message}`;
  }
  return undefined;
}

/** CI (CI=true) and COFFER_TEST_POSTGRES=required make missing PostgreSQL a failure instead of a skip. */
export function postgresRequired(): boolean {
  return process.env.COFFER_TEST_POSTGRES === 'required' || process.env.CI === 'true';
}

let pgIds: { uid: number; gid: number } | null | undefined;

export function pgUser(): { uid: number; gid: number } | undefined {
  if (pgIds === undefined) {
    try {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      pgIds = { uid, gid };
    } catch {
      pgIds = null;
    }
  }
  return pgIds ?? undefined;
}
