import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // A TMPDIR of the run's own; the run fails if the tests leave anything in it (test/helpers/tmp.ts cleans up).
    globalSetup: ['test/helpers/global-tmp.ts'],
  },
});
