/** Output and errors of the CLI. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

/**
 * A closed pipe (`coffer … | head -1`, a CI agent gone during an abort) must
 * not crash the CLI half-way: `coffer run` still has files to remove and a
 * token to revoke. Output that cannot be written is dropped.
 */
let pipesGuarded = false;
export function guardPipes(): void {
  if (pipesGuarded) return;
  pipesGuarded = true;
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
}

function writeLine(stream: NodeJS.WriteStream, line: string): void {
  guardPipes();
  try {
    stream.write(`${line}\n`);
  } catch {
    // Dropped: see guardPipes.
  }
}

export const processIo: Io = {
  out: (line) => writeLine(process.stdout, line),
  err: (line) => writeLine(process.stderr, line),
};

/** A failure the CLI reports as one line and an exit code. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}
