/**
 * Can the database still take writes? `GET /health` asks, so that a load
 * balancer drains a node whose disk is full or failing instead of sending it
 * writes that all fail. A `SELECT 1` cannot tell: reads keep working on a
 * full disk. Two cheap checks can:
 *
 *  1. Free space on the data directory's file system (statfs) is at least
 *     `minFreeBytes` — a write must fit in the WAL and then in the database
 *     file. This catches a full disk even while small writes still fit in
 *     WAL space that SQLite reuses.
 *  2. A real commit: the one row of `health_probe` (migration 0007) gets
 *     the current time, in an IMMEDIATE transaction that does not wait for
 *     the write lock; the page goes through the WAL and is fsynced (a no-op
 *     UPDATE would write nothing and prove nothing). This catches a
 *     read-only or failing disk, a file SQLite may no longer write, or any
 *     storage error. Nothing grows: one fixed row, and WAL frames are
 *     checkpointed and reused like every other write's.
 *
 * The answer is kept for `CACHE_MS`, so `/health` under load costs at most
 * one commit a second; a storage failure seen by any write (noted through
 * `noteFailure`) drops the cached answer, so the next check looks again.
 */
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { storageFailureOf } from '../errors.js';
import type { Db } from './db.js';

export const HEALTH_CACHE_MS = 1000;

export interface WritableReport {
  writable: boolean;
  /** Why not, for operators (never a secret): free space, or the storage error. */
  reason?: string;
}

export interface StorageHealth {
  /** Whether the database can take writes now (cached for HEALTH_CACHE_MS of `nowMs`). */
  check(nowMs: number, minFreeBytes: number): WritableReport;
  /** Called with the error of any failed write; a storage failure forgets the cached answer. */
  noteFailure(err: unknown): void;
}

export function createStorageHealth(db: Db): StorageHealth {
  const dir = dirname(db.name);
  let probe: { run(at: string): unknown } | undefined;
  let probes = 0;
  let cached: { at: number; minFree: number; report: WritableReport } | undefined;

  const freeSpace = (minFreeBytes: number): WritableReport | undefined => {
    let free: number;
    try {
      const s = statfsSync(dir);
      free = Number(s.bavail) * Number(s.bsize);
    } catch (err) {
      // The code only: the message names the data directory's path, and /health answers anyone.
      return { writable: false, reason: `cannot inspect the data directory's file system (${String((err as { code?: unknown }).code ?? 'error')})` };
    }
    if (free >= minFreeBytes) return undefined;
    return { writable: false, reason: `no space left for writes: ${free} bytes free on the data directory's file system, at least ${minFreeBytes} needed` };
  };

  const commit = (nowMs: number): WritableReport | 'busy' => {
    if (db.inTransaction) return 'busy';
    probe ??= db.prepare<[string]>('UPDATE health_probe SET probed_at = ? WHERE id = 1');
    const busyTimeout = db.pragma('busy_timeout', { simple: true }) as number;
    db.pragma('busy_timeout = 0');
    try {
      // The time changes every probe (cached answers are at least a second apart), so the row really changes.
      db.transaction(() => probe!.run(`${new Date(nowMs).toISOString()} ${++probes}`)).immediate();
      return { writable: true };
    } catch (err) {
      if ((err as { code?: unknown }).code === 'SQLITE_BUSY') return 'busy';
      const failure = storageFailureOf(err);
      return { writable: false, reason: failure ? `the database cannot be written: ${failure.message} (${failure.code})` : 'the database cannot be written' };
    } finally {
      db.pragma(`busy_timeout = ${busyTimeout}`);
    }
  };

  return {
    check(nowMs, minFreeBytes) {
      if (cached && cached.minFree === minFreeBytes && nowMs >= cached.at && nowMs - cached.at < HEALTH_CACHE_MS) return cached.report;
      let report = freeSpace(minFreeBytes);
      if (!report) {
        const written = commit(nowMs);
        // Another process holds the write lock: inconclusive, so the last answer stands (writable if none).
        report = written === 'busy' ? cached?.report ?? { writable: true } : written;
      }
      cached = { at: nowMs, minFree: minFreeBytes, report };
      return report;
    },
    noteFailure(err) {
      if (storageFailureOf(err)) cached = undefined;
    },
  };
}
