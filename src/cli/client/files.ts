/**
 * Credential files: read only when private (repairing a group/world-readable
 * file we own, refusing one we do not), written atomically with mode 0600.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { CliError } from '../io.js';
import { EXIT } from './exit-codes.js';

export type Warn = (line: string) => void;

/** Contents of a credential file, or undefined when it does not exist. */
export function readPrivateFile(path: string, warn: Warn): string | undefined {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, EXIT.FAILURE);
  }
  if (!st.isFile()) throw new CliError(`${path} is not a regular file`, EXIT.FAILURE);
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  if (uid !== undefined && st.uid !== uid && uid !== 0) {
    // Someone else's file could be swapped under us; never trust credentials from it.
    throw new CliError(`refusing to use ${path}: it belongs to another user (uid ${st.uid})`, EXIT.USAGE);
  }
  if ((st.mode & 0o077) !== 0) {
    chmodSync(path, 0o600);
    warn(
      `coffer: warning: ${path} was readable by other users (mode ${(st.mode & 0o777).toString(8)}); changed it to 0600. ` +
        'Consider rotating the API keys it holds (coffer api-key rotate).',
    );
  }
  return readFileSync(path, 'utf8');
}

/** Replaces `path` atomically with `content`, mode 0600 from the first byte on. */
export function writePrivateFile(path: string, content: string): void {
  let target = path;
  try {
    target = realpathSync(path); // keep a symlinked ~/.netrc a symlink
  } catch {
    /* does not exist yet */
  }
  const tmp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  chmodSync(tmp, 0o600); // in case the umask interfered
  renameSync(tmp, target);
}
