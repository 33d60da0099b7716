/**
 * The test set Stryker runs (`npm run mutation`, stryker.config.mjs): the
 * whole suite minus the tests that exercise the built binary (bin/ → dist/)
 * in child processes. Those cannot see a mutant (it lives in Stryker's
 * instrumented copy of src/, not in dist/), so they would only cost time.
 * SQLite only: vitest.config.ts's PostgreSQL pass runs the same end-to-end
 * tests against the other store, which holds no mutated decision.
 */
import { defineConfig } from 'vitest/config';
import { shared } from './vitest.shared.js';

export default defineConfig({
  test: {
      ...shared,
      // Instrumented code under a shared CPU: the thundering-herd enrolment test needs more than 30 s.
      testTimeout: 120_000,
      hookTimeout: 120_000,
      exclude: [
        '**/node_modules/**',
        // Spawn bin/coffer.js or bin/coffer-provider.js (dist/).
        'test/e2e/cli-binary.test.ts',
        'test/e2e/cli-run.test.ts',
        'test/e2e/admin-cli.test.ts',
        'test/e2e/audit-sinks.test.ts',
        'test/e2e/docs-commands.test.ts',
        // Child-process runners for `coffer run`; nothing under the mutated modules.
        'test/unit/run-runner.test.ts',
        'test/unit/run-runner-signals.test.ts',
        // Transport and resource-limit tests (slow clients, full disk, hostile
        // sizes, numeric parameters, audit query engine, Unicode at the edge):
        // slow, and about the HTTP layer and store rather than the security
        // decisions under mutation. Leaving them out can only understate a score.
        'test/e2e/slow-clients.test.ts',
        'test/e2e/full-disk.test.ts',
        'test/e2e/policy-bounds.test.ts',
        'test/e2e/request-target-bounds.test.ts',
        'test/e2e/numeric-params.test.ts',
        'test/e2e/audit-query.test.ts',
        'test/e2e/unicode-boundary.test.ts',
        // Stryker refuses to start when a test fails without mutants; a test
        // that fails for reasons unrelated to the mutated module can be left
        // out for one run: MUTATION_EXCLUDE=test/e2e/x.test.ts,test/unit/y.test.ts
        ...(process.env.MUTATION_EXCLUDE ?? '').split(',').map((f) => f.trim()).filter(Boolean),
      ],
  },
});
