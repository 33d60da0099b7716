/**
 * vitest globalSetup: gives the run a temporary directory of its own and fails
 * the run if the tests leave anything in it.
 *
 * TMPDIR points at `<os tmp>/coffer-vitest-run-XXXXXX` before the test workers
 * start, so everything the tests create with `os.tmpdir()` (directly or via
 * test/helpers/tmp.ts) lands there. Because the directory belongs to this run
 * alone, what remains at the end was left by this run's tests — other test
 * runs on the same machine cannot make it fail, and it cannot blame them.
 * The directory is removed either way.
 *
 * Under Stryker (STRYKER_MUTATOR_WORKER set) it does nothing: Stryker keeps
 * one vitest instance per worker process for many runs, and a mutant may
 * legitimately break a test before its clean-up.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): (() => void) | undefined {
  if (process.env.STRYKER_MUTATOR_WORKER !== undefined) return undefined;
  // With vitest projects this runs once for the root and once per project: the first call owns the directory.
  if (process.env.COFFER_TEST_RUN_TMPDIR !== undefined) return undefined;
  const outer = tmpdir();
  const runDir = mkdtempSync(join(outer, 'coffer-vitest-run-'));
  // Shared between concurrent runs on purpose (e.g. the lock that serializes building dist/).
  process.env.COFFER_TEST_SHARED_TMPDIR ??= outer;
  process.env.TMPDIR = runDir;
  process.env.COFFER_TEST_RUN_TMPDIR = runDir;
  return () => {
    let left: string[] = [];
    try {
      left = readdirSync(runDir);
    } finally {
      rmSync(runDir, { recursive: true, force: true });
    }
    if (left.length > 0) {
      const shown = left.slice(0, 20).join(', ') + (left.length > 20 ? ', …' : '');
      // vitest reports an error thrown here but still exits 0: set the exit code as well.
      process.exitCode = 1;
      throw new Error(
        `The tests left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in their temporary directory (${shown}). ` +
          'Create temporary directories with tempDir() from test/helpers/tmp.ts (removed after each file) or remove them in an afterAll/finally.',
      );
    }
  };
}
