/**
 * Temporary directories that are removed again: `tempDir('coffer-store-')`
 * creates one under the OS temp directory and remembers it; every directory
 * still remembered is removed after the test file (an afterAll hook that
 * importing this module registers on the file's root suite). Call
 * `removeTempDirs()` sooner to free space mid-file.
 *
 * The suite's globalSetup (test/helpers/global-tmp.ts) points TMPDIR at a
 * directory of its own for the run and fails the run if anything is left in it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const created = new Set<string>();

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.add(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of created) {
    rmSync(dir, { recursive: true, force: true });
    created.delete(dir);
  }
}

afterAll(() => removeTempDirs());
