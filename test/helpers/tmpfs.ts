/**
 * A real small file system for full-disk tests: a tmpfs of a given size
 * mounted on a fresh directory (needs root, as in CI's container), which a
 * test can fill to the last page, give space back to, or remount read-only.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, fstatSync, ftruncateSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  dir: string;
  /** Fills the file system, then gives `leaveBytes` back (rounded to pages by tmpfs). */
  fill(leaveBytes?: number): void;
  /** Removes the filler. */
  free(): void;
  freeBytes(): number;
  remount(mode: 'ro' | 'rw'): void;
  unmount(): void;
}

/** Whether this process may mount a tmpfs (root in a container that allows it). */
export function tmpfsAvailable(): boolean {
  if (process.getuid?.() !== 0) return false;
  let probe: Tmpfs | undefined;
  try {
    probe = mountTmpfs(64 * 1024);
    return true;
  } catch {
    return false;
  } finally {
    probe?.unmount();
  }
}

export function mountTmpfs(sizeBytes: number): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const filler = join(dir, 'filler');
  let mounted = true;
  return {
    dir,
    fill(leaveBytes = 0) {
      const fd = openSync(filler, 'a');
      const chunk = Buffer.alloc(64 * 1024, 0x5a);
      try {
        // A write that does not fit is written in part (to the last page), and the next one fails.
        for (;;) {
          try {
            writeSync(fd, chunk);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
            break;
          }
        }
        if (leaveBytes > 0) ftruncateSync(fd, Math.max(0, fstatSync(fd).size - leaveBytes));
      } finally {
        closeSync(fd);
      }
    },
    free() {
      rmSync(filler, { force: true });
    },
    freeBytes() {
      const s = statfsSync(dir);
      return Number(s.bavail) * Number(s.bsize);
    },
    remount(mode) {
      execFileSync('mount', ['-o', `remount,${mode}`, dir], { stdio: 'pipe' });
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
