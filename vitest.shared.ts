/**
 * Test settings every vitest configuration shares: the normal run
 * (vitest.config.ts, both backends) and the mutation run
 * (vitest.mutation.config.ts, SQLite only).
 */
import type { ViteUserConfig } from 'vitest/config';

export const shared = {
  include: ['test/**/*.test.ts'],
  testTimeout: 30_000,
  hookTimeout: 60_000,
  pool: 'forks',
  // A TMPDIR of the run's own; the run fails if the tests leave anything in it (test/helpers/tmp.ts cleans up).
  globalSetup: ['test/helpers/global-tmp.ts'],
} satisfies ViteUserConfig['test'];
