/**
 * The child of `coffer run`: starting it, relaying signals to it (or to its
 * process group), and killing it on timeout. See runner.ts for the whole run.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { constants as osConstants } from 'node:os';

/** Anything that emits signal names as events; `process` in the CLI. */
export interface SignalSource {
  on(event: string, listener: () => void): unknown;
  removeListener(event: string, listener: () => void): unknown;
}

/** Signals the runner forwards to the child, as Summon does (Summon forwards every signal). */
export const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const;
/** Between SIGTERM and SIGKILL on timeout, unless the caller says otherwise. */
export const DEFAULT_KILL_GRACE_MS = 10_000;
const GROUP_POLL_MS = 25;

/** A signal arrived before the child started: clean up and exit 128+n. */
export class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal} before the command started`);
  }
}

/**
 * Whether this process has a controlling terminal, i.e. is used
 * interactively. This, not `process.stdin.isTTY`, decides whether the child
 * may keep the terminal: `coffer run -- ssh host < script` has a piped stdin
 * but ssh still prompts on /dev/tty, and a CI agent without a terminal can
 * have a TTY-like stdin.
 */
export function hasControllingTerminal(): boolean {
  if (process.platform === 'win32') return false;
  try {
    // Opening /dev/tty fails (ENXIO) exactly when there is no controlling terminal.
    closeSync(openSync('/dev/tty', fsConstants.O_RDONLY | fsConstants.O_NOCTTY | fsConstants.O_NONBLOCK));
    return true;
  } catch {
    return false;
  }
}

export interface Started {
  target: ChildTarget;
  /** Resolves with the arguments of the child's 'exit' event. */
  exited: Promise<unknown[]>;
}

export async function startChild(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  detached: boolean,
  onSpawned: (target: ChildTarget) => void,
): Promise<Started> {
  let child: ChildProcess;
  try {
    child = spawn(file, args, { env, stdio: 'inherit', detached });
  } catch (err) {
    throw new Error(spawnErrorMessage(file, err));
  }
  // Listen before yielding so a quick exit cannot be missed.
  const exited = once(child, 'exit');
  const target = new ChildTarget(child, detached);
  // Signals that arrive from now on go to the child (spawn() has run synchronously).
  if (child.pid !== undefined) onSpawned(target);
  const failure = await Promise.race([once(child, 'spawn').then(() => undefined), once(child, 'error')]);
  if (failure !== undefined) throw new Error(spawnErrorMessage(file, failure[0]));
  // Later 'error' events (a failed kill) must not crash the runner.
  child.on('error', () => undefined);
  return { target, exited };
}

function spawnErrorMessage(file: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === 'ENOENT') return `${file}: command not found`;
  if (code === 'EACCES') return `${file}: permission denied`;
  return `${file}: ${code ?? (err instanceof Error ? err.message : String(err))}`;
}

/** Sends signals to the child's whole process group when it has one. */
export class ChildTarget {
  constructor(
    private readonly child: ChildProcess,
    private readonly group: boolean,
  ) {}

  signal(signal: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      if (this.group) process.kill(-pid, signal);
      else this.child.kill(signal);
    } catch {
      // The group may be gone already; the leader alone may still be there.
      this.child.kill(signal);
    }
  }

  /** Whether anything is left in the child's process group. */
  groupAlive(): boolean {
    const pid = this.child.pid;
    if (pid === undefined || !this.group) return false;
    try {
      process.kill(-pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * The runner's handler of INT, TERM, HUP, QUIT, USR1 and USR2 for the whole
 * run: before the child exists a signal is remembered (the run stops before
 * starting it), while it runs the signal is forwarded, after it exited the
 * signal is ignored so that cleanup completes.
 */
export class SignalRelay {
  private pending: NodeJS.Signals | undefined;
  private target: ChildTarget | undefined;
  private childGone = false;
  private readonly handlers: (readonly [NodeJS.Signals, () => void])[];

  constructor(
    private readonly source: SignalSource,
    detached: boolean,
  ) {
    // A child in our own process group gets the terminal's INT and QUIT
    // directly; forwarding them would deliver them twice (and e.g. terraform
    // takes a second Ctrl-C as "abort at once").
    const forwarded = new Set<NodeJS.Signals>(detached ? FORWARDED_SIGNALS : FORWARDED_SIGNALS.filter((s) => s !== 'SIGINT' && s !== 'SIGQUIT'));
    this.handlers = FORWARDED_SIGNALS.map((sig) => [sig, () => this.onSignal(sig, forwarded.has(sig))] as const);
    for (const [sig, handler] of this.handlers) source.on(sig, handler);
  }

  attach(target: ChildTarget): void {
    this.target = target;
  }

  detach(): void {
    this.target = undefined;
    this.childGone = true;
  }

  throwIfInterrupted(): void {
    if (this.pending !== undefined) throw new Interrupted(this.pending);
  }

  stop(): void {
    for (const [sig, handler] of this.handlers) this.source.removeListener(sig, handler);
  }

  private onSignal(sig: NodeJS.Signals, forward: boolean): void {
    if (this.target) {
      if (forward) this.target.signal(sig);
    } else if (!this.childGone) {
      this.pending ??= sig;
    }
  }
}

export interface Timeout {
  fired(): boolean;
  /** After the leader died of a timeout: wait out the grace for the rest of the group. */
  settle(): Promise<void>;
  cancel(): void;
}

/** Kills the child (its group when it has one) after `timeoutMs`: SIGTERM, then SIGKILL after `killGraceMs`. */
export function startTimeout(opts: { timeoutMs?: number; killGraceMs?: number }, target: ChildTarget): Timeout {
  const grace = opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  let fired = false;
  let killAt = Infinity;
  let killTimer: NodeJS.Timeout | undefined;
  const timer =
    opts.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          fired = true;
          killAt = Date.now() + grace;
          target.signal('SIGTERM');
          killTimer = setTimeout(() => target.signal('SIGKILL'), grace);
        }, opts.timeoutMs);
  return {
    fired: () => fired,
    settle: async () => {
      while (target.groupAlive() && Date.now() < killAt) await sleep(GROUP_POLL_MS);
      if (target.groupAlive()) target.signal('SIGKILL');
    },
    cancel: () => {
      clearTimeout(timer);
      clearTimeout(killTimer);
    },
  };
}

export function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === null ? 0 : (osConstants.signals[signal] ?? 0);
}

function once(emitter: ChildProcess, event: string): Promise<unknown[]> {
  return new Promise((resolve) => emitter.once(event, (...args: unknown[]) => resolve(args)));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

