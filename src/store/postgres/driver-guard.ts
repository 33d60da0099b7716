/**
 * A known race in the `postgres` driver (3.4.9, src/connection.js): when a
 * connection closes, `closed()` sets its socket to null, but a write queued
 * for the next turn (`setImmediate(nextWrite)`) can still run and throw
 * "Cannot read properties of null (reading 'write')" from a timer — an
 * uncaught exception that would end the whole process. Seen when a primary
 * dies mid-load (test/e2e/failover.test.ts, about one run in six). The
 * connection is already gone and its queries fail or time out through their
 * own paths (the store's deadline answers 503), so this one error is
 * reported and survived; every other uncaught exception still ends the
 * process with its stack, as Node does by default.
 */
let installed = false;

export function isDriverWriteRace(err: unknown): boolean {
  return (
    err instanceof TypeError &&
    err.message.includes("reading 'write'") &&
    (err.stack ?? '').split('\n').some((line) => line.includes('nextWrite') && /postgres[/\\](src|cjs[/\\]src)[/\\]connection\.js/.test(line))
  );
}

export function guardDriverWriteRace(report: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): void {
  if (installed || process.hasUncaughtExceptionCaptureCallback()) return;
  installed = true;
  process.setUncaughtExceptionCaptureCallback((err) => {
    if (isDriverWriteRace(err)) {
      report('coffer: a PostgreSQL connection closed while a write was queued on it (driver race); the connection is gone, its requests fail or time out');
      return;
    }
    process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  });
}
