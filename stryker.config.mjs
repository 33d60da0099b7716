// @ts-check
/**
 * Mutation testing of the security-critical modules (issue 13 item 5).
 * Run through `npm run mutation [-- --module <name>]` (scripts/mutation.mjs),
 * which sets MUTATION_MODULE for each module in scripts/mutation-modules.mjs.
 * Not part of CI: on two cores the whole run takes a long time.
 *
 * Stryker works in its sandbox (.stryker-tmp/, never in place), so a run
 * does not touch the working tree.
 */
import { MODULES, reportDir } from './scripts/mutation-modules.mjs';

const module = process.env.MUTATION_MODULE ?? 'audit';
const entry = MODULES[module];
if (!entry) throw new Error(`unknown mutation module "${module}" (known: ${Object.keys(MODULES).join(', ')})`);
const dir = reportDir(module);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts', related: true },
  plugins: ['@stryker-mutator/*', './scripts/stryker-message-ignorer.mjs'],
  ignorers: ['error-messages'],
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  mutate: entry.mutate,
  // The module's own test list (scripts/mutation-modules.mjs), unless MUTATION_ALL_TESTS=1.
  ...(process.env.MUTATION_ALL_TESTS === '1' ? {} : { testFiles: entry.tests }),
  coverageAnalysis: 'perTest',
  // Static mutants (module-level constants, e.g. a regex) run every related
  // test — with the in-process e2e suite that is minutes per mutant on two
  // cores. Skipped by default (reported as Ignored); MUTATION_STATIC=1 runs them.
  ignoreStatic: process.env.MUTATION_STATIC !== '1',
  // Per module, so running one module keeps the others' results.
  incremental: true,
  incrementalFile: `${dir}/stryker-incremental.json`,
  reporters: ['json', 'html', 'progress'],
  jsonReporter: { fileName: `${dir}/mutation.json` },
  htmlReporter: { fileName: `${dir}/mutation.html` },
  // Two shared cores.
  concurrency: 1,
  timeoutMS: 20_000,
  // The initial run of every related test, instrumented, on a busy machine.
  dryRunTimeoutMinutes: 40,
  timeoutFactor: 2,
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
  ignorePatterns: ['dist', 'reports', '.coffer-dev', 'coverage', 'bench', 'docs'],
  // dist/ is left out of the sandbox, but the security matrix asks for the console at /ui (200 only when built):
  // build it there before the initial run (esbuild, under a second).
  buildCommand: 'node scripts/build-ui.mjs',
  thresholds: { high: 90, low: 85, break: null },
};
