/**
 * `npm test`: every test on the embedded default (SQLite), and the
 * end-to-end suite again with every test server on PostgreSQL
 * (COFFER_TEST_BACKEND=postgres: test/helpers/server.ts starts a throwaway
 * cluster per file) — parametrized, not copied.
 *
 * Left out of the PostgreSQL pass: files that are PostgreSQL-native already
 * (multi-node, failover, the admin CLI on --database, store copy, the HA
 * docs), files whose subject is the SQLite file itself or that start no
 * in-process test server (full disk under the data directory, the admin CLI
 * on --data-dir, audit sinks reading the file), and files whose subject is a
 * client or the transport — the CLI and `coffer run`, the console in a
 * browser, the docs' CI walk-throughs, slow clients — whose server calls the
 * other files already make on PostgreSQL: a second pass would test the same
 * client against the same HTTP answers and keep the suite well over 10 minutes.
 *
 * Without PostgreSQL's binaries the second pass is skipped with a notice,
 * unless CI=true or COFFER_TEST_POSTGRES=required make that a failure.
 */
import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';
import { shared } from './vitest.shared.js';
import { postgresMissing, postgresRequired } from './test/helpers/postgres-binaries.js';

export const NOT_ON_POSTGRES = [
  'test/e2e/multi-node.test.ts',
  'test/e2e/multi-node-processes.test.ts',
  'test/e2e/failover.test.ts',
  'test/e2e/postgres-admin-cli.test.ts',
  'test/e2e/store-copy.test.ts',
  'test/e2e/docs-high-availability.test.ts',
  'test/e2e/full-disk.test.ts',
  'test/e2e/admin-cli.test.ts',
  'test/e2e/audit-sinks.test.ts',
  'test/e2e/cli-audit.test.ts',
  'test/e2e/cli-auth.test.ts',
  'test/e2e/cli-binary.test.ts',
  'test/e2e/cli-inspect.test.ts',
  'test/e2e/cli-policy-variable.test.ts',
  'test/e2e/cli-run.test.ts',
  'test/e2e/cli-session.test.ts',
  'test/e2e/console-browser.test.ts',
  'test/e2e/docs-commands.test.ts',
  'test/e2e/slow-clients.test.ts',
];

const missing = postgresMissing();
const onPostgres = missing === undefined || postgresRequired();
if (!onPostgres) console.warn(`\n*** The end-to-end suite runs on SQLite only: ${missing}\n`);

// Each project names its own files (with `extends`, a root `include` would be added to the project's).
const { include, ...common } = shared;

export default defineConfig({
  test: {
    ...common,
    // vitest's default is one worker fewer than the cores: one worker on this 2-core machine, where the suite took
    // 13.3 minutes; much of a test file's time is waiting on fsync, PostgreSQL and child processes, so two workers
    // take 8.7 minutes (the mutation config keeps Stryker's own settings).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    projects: [
      { extends: true, test: { name: 'sqlite', include } },
      ...(onPostgres
        ? [
            {
              extends: true,
              test: {
                name: 'postgres',
                include: ['test/e2e/**/*.test.ts'],
                exclude: ['**/node_modules/**', ...NOT_ON_POSTGRES],
                env: { COFFER_TEST_BACKEND: 'postgres' },
              },
            },
          ]
        : []),
    ],
  },
});
