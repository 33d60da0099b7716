// A Coffer server in a process of its own (`coffer server` of the build in `root`), for the benchmarks.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Starts `root`'s `coffer server` on a free loopback port with `dataKey`: on PostgreSQL at `database`, else on the
 * SQLite installation in `dataDir`. Resolves with its URL, pid and stop(), which ends it and — when `ownsDataDir` —
 * removes `dataDir` (also when it fails to start). A server not listening within 60 s is killed.
 */
export function startNodeProcess({ root, dataDir, database, dataKey, ownsDataDir = false }) {
  const removeDataDir = () => ownsDataDir && rmSync(dataDir, { recursive: true, force: true });
  // The backend is the one given here, not a COFFER_DATABASE_URL of the caller's environment.
  const { COFFER_DATABASE_URL: _ignored, ...env } = process.env;
  const child = spawn(process.execPath, [join(root, 'bin/coffer.js'), 'server', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir, ...(database ? ['--database', database] : [])], {
    env: { ...env, COFFER_DATA_KEY: dataKey },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise((resolve) => child.on('close', resolve));
  return new Promise((resolve, reject) => {
    let stderr = '';
    const tooLong = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stderr.setEncoding('utf8').on('data', (chunk) => {
      stderr += chunk;
      const m = /listening on (\S+)/.exec(stderr);
      if (m) {
        clearTimeout(tooLong);
        resolve({ url: m[1], pid: child.pid, stop: async () => (child.kill('SIGTERM'), await exited, removeDataDir()) });
      }
    });
    void exited.then((code) => {
      clearTimeout(tooLong);
      removeDataDir();
      reject(new Error(`coffer server exited (${code ?? 'killed after 60 s'}) before listening:\n${stderr}`));
    });
  });
}
