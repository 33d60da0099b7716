/**
 * The engine of `coffer run`: fetch secrets, hand them to a child process
 * through its environment or private memory-backed files, wait for it, and
 * remove every trace on the way out.
 *
 * Summon (cyberark/summon `pkg/summon/{summon,fetcher,subcommand,temp_factory}.go`)
 * is the model. Differences: one batch fetch instead of one provider call per
 * secret, files live in a private 0700 directory rather than loose in
 * /dev/shm, a signal death maps to 128+n instead of Summon's 127, a signal
 * during the fetch stops the run before the child starts, and without a
 * terminal the child runs in its own session/process group so a timeout can
 * kill the whole tree (child.ts).
 *
 * @module
 */
import { constants as fsConstants, readlinkSync } from 'node:fs';
import { access, chmod, lstat, mkdtemp, open, readdir, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Interrupted, SignalRelay, signalNumber, startChild, startTimeout, type SignalSource } from './child.js';
import type { SecretSpec } from './secrets-yml.js';

export type { SecretSpec } from './secrets-yml.js';
export { hasControllingTerminal, type SignalSource } from './child.js';

/** Where the runner writes its diagnostics (process.stderr in the CLI). */
export interface Writer {
  write(chunk: string): unknown;
}

/** Extra information handed to {@link FetchValues}. */
export interface FetchHints {
  /**
   * Paths whose failure the runner tolerates (every entry that uses them is
   * covered by -i/-I). A fetcher whose batch request fails naming one of these
   * may drop it, fetch the rest, and leave it out of the result.
   */
  ignorable: ReadonlySet<string>;
}

/**
 * Fetches every variable path in one go. Contract:
 * - resolves with a map path → raw value; a path missing from the map counts
 *   as "could not be fetched" (skipped when ignorable, fatal otherwise);
 * - rejects to abort the run; `err.variable` may name the failed path and
 *   `err.message` is shown to the user, so it must not contain secret values.
 */
export type FetchValues = (paths: string[], hints: FetchHints) => Promise<Map<string, Buffer>>;

/** Options of {@link runWithSecrets}. */
export interface RunOptions {
  specs: readonly SecretSpec[];
  /** argv of the child; `@SUMMONENVFILE` anywhere in an argument is replaced. */
  command: readonly string[];
  fetchValues: FetchValues;
  /** `-i`: env var names (Summon's check) or variable paths (Summon's docs) to ignore. */
  ignore?: ReadonlySet<string>;
  /** `-I`: ignore every variable that cannot be fetched. */
  ignoreAll?: boolean;
  /** `-e`: exported to the child as SUMMON_ENV. */
  environment?: string;
  /** Kill the child's process group after this long and exit 124. */
  timeoutMs?: number;
  /** Between SIGTERM and SIGKILL on timeout; 10 s by default. */
  killGraceMs?: number;
  /** Awaited on every exit path (e.g. to revoke the access token). */
  onCleanup?: () => Promise<void>;
  stderr: Writer;
  /** Environment the secrets are added to; process.env by default. */
  baseEnv?: NodeJS.ProcessEnv;
  /** Parent of the private directory; /dev/shm (or the OS temp dir) by default. */
  tmpRoot?: string;
  /** Where forwarded signals come from; process by default. */
  signalSource?: SignalSource;
  /**
   * Run the child in its own session and process group (default true) so that
   * timeouts and forwarded signals reach its whole tree. The price: the child
   * has no controlling terminal, so programs that open /dev/tty (ssh, sudo,
   * password prompts) fail. Pass false for interactive use (see
   * {@link hasControllingTerminal}); then SIGINT and SIGQUIT are not forwarded,
   * because the terminal already delivers them to the child, and a timeout
   * can only kill the child itself, not its descendants.
   */
  detached?: boolean;
}

/** The placeholder Summon replaces with the path of a KEY=VALUE file. */
export const ENV_FILE_MAGIC = '@SUMMONENVFILE';
/** Exit code for the runner's own failures, as in Summon. */
export const EXIT_RUNNER_FAILURE = 127;
/** Exit code after a timeout, as in GNU timeout. */
export const EXIT_TIMEOUT = 124;

const SHM_DIR = '/dev/shm';
// Short fetched values are not scrubbed from messages: they would mangle ordinary words.
const MIN_SCRUB_LENGTH = 4;

/** A failure of the runner itself: one `coffer run:` line and exit 127. */
class RunFailure extends Error {}

/** Files created for one run, removed together. */
interface Workspace {
  dir: string;
  files: string[];
}

interface RunState {
  workspace?: Workspace;
  /** Fetched values, to scrub from anything printed. */
  secrets: string[];
}

/**
 * Runs `command` with the secrets in `specs`; resolves with the exit code to
 * use: the child's, 128+n for a signal death, 124 on timeout, 127 when the
 * runner itself fails (after one `coffer run: …` line on stderr). Never rejects.
 *
 * @example
 * const code = await runWithSecrets({
 *   specs: parseSecretsYml(text, { defines: {} }),
 *   command: ['psql', '-h', 'db'],
 *   fetchValues: (paths) => client.batchFetch(paths),
 *   stderr: process.stderr,
 *   detached: !hasControllingTerminal(),
 * });
 * process.exitCode = code;
 */
export async function runWithSecrets(opts: RunOptions): Promise<number> {
  const state: RunState = { secrets: [] };
  // Listening from the start: a signal during the fetch must not kill the
  // runner before it has removed its files and revoked its token.
  const relay = new SignalRelay(opts.signalSource ?? process, opts.detached ?? true);
  try {
    validate(opts);
    const values = await resolveValues(opts, state);
    relay.throwIfInterrupted();
    const { env, argv } = await prepareChild(opts, values, state);
    relay.throwIfInterrupted();
    return await runChild(opts, argv, { ...(opts.baseEnv ?? process.env), ...env }, relay);
  } catch (err) {
    if (err instanceof Interrupted) {
      opts.stderr.write(`coffer run: ${err.message}\n`);
      return 128 + signalNumber(err.signal);
    }
    opts.stderr.write(`coffer run: ${scrub(oneLine(messageOf(err)), state.secrets)}\n`);
    return EXIT_RUNNER_FAILURE;
  } finally {
    await cleanUp(opts, state);
    relay.stop();
  }
}

function validate(opts: RunOptions): void {
  if (opts.command.length === 0 || opts.command[0] === '') throw new RunFailure('no command given');
  if (opts.timeoutMs !== undefined && !(Number.isFinite(opts.timeoutMs) && opts.timeoutMs > 0)) {
    throw new RunFailure(`invalid timeout ${opts.timeoutMs}`);
  }
  for (const spec of opts.specs) {
    if (spec.name === '' || /[=\0]/.test(spec.name)) {
      throw new RunFailure(`invalid environment variable name ${JSON.stringify(spec.name)}`);
    }
    if (spec.kind !== 'var' && spec.kind !== 'literal') {
      throw new RunFailure(`${spec.name}: unknown secret kind`);
    }
    if (spec.kind === 'var' && spec.value === '') throw new RunFailure(`${spec.name}: empty variable path`);
  }
}

// --- fetching -------------------------------------------------------------

/** Value of every spec that is not skipped, by env var name, in spec order. */
async function resolveValues(opts: RunOptions, state: RunState): Promise<Map<string, Buffer>> {
  const fetched = await fetchAll(opts, state);
  const values = new Map<string, Buffer>();
  for (const spec of opts.specs) {
    let value = spec.kind === 'var' ? fetched.get(spec.value) : Buffer.from(spec.value, 'utf8');
    if (value === undefined) {
      if (isIgnored(opts, spec)) continue;
      throw new RunFailure(`Error fetching variable ${spec.name}: no value was returned`);
    }
    if (spec.field !== undefined) value = fieldOf(spec, value);
    if (value.length === 0 && spec.defaultValue) value = Buffer.from(spec.defaultValue, 'utf8');
    values.set(spec.name, value);
  }
  return values;
}

/** `!var:field NAME path`: field NAME of the JSON value (never quoting the value in an error). */
function fieldOf(spec: SecretSpec, value: Buffer): Buffer {
  let json: unknown;
  try {
    json = JSON.parse(value.toString('utf8'));
  } catch {
    json = undefined;
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json) || !Object.hasOwn(json, spec.field!)) {
    throw new RunFailure(`Error fetching variable ${spec.name}: the value of ${spec.value} is not a JSON object with a field '${spec.field}'`);
  }
  const v = (json as Record<string, unknown>)[spec.field!];
  return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v), 'utf8');
}

async function fetchAll(opts: RunOptions, state: RunState): Promise<Map<string, Buffer>> {
  const varSpecs = opts.specs.filter((s) => s.kind === 'var');
  const paths = [...new Set(varSpecs.map((s) => s.value))];
  // Nothing to fetch means no need to talk to the server at all.
  if (paths.length === 0) return new Map();
  const ignorable = new Set(paths.filter((p) => varSpecs.every((s) => s.value !== p || isIgnored(opts, s))));
  let fetched: Map<string, Buffer>;
  try {
    fetched = await opts.fetchValues(paths, { ignorable });
  } catch (err) {
    throw new RunFailure(fetchErrorMessage(err, varSpecs, paths.length));
  }
  for (const value of fetched.values()) {
    const text = value.toString('utf8');
    if (text.length >= MIN_SCRUB_LENGTH) state.secrets.push(text);
  }
  return fetched;
}

function isIgnored(opts: RunOptions, spec: SecretSpec): boolean {
  return opts.ignoreAll === true || opts.ignore?.has(spec.name) === true || opts.ignore?.has(spec.value) === true;
}

/** Summon's `Error fetching variable NAME: message`, NAME being the env var. */
function fetchErrorMessage(err: unknown, varSpecs: SecretSpec[], pathCount: number): string {
  const message = messageOf(err);
  const failed = (err as { variable?: unknown } | null)?.variable;
  const named = typeof failed === 'string' ? varSpecs.find((s) => samePath(s.value, failed)) : undefined;
  // With a single path the failure can only be about that one.
  const spec = named ?? (pathCount === 1 ? varSpecs[0] : undefined);
  return spec ? `Error fetching variable ${spec.name}: ${message}` : `Error fetching secrets: ${message}`;
}

/** Accepts a bare path or a full `account:variable:path` id. */
function samePath(path: string, reported: string): boolean {
  return path === reported || reported.replace(/^[^:]*:variable:/, '') === path;
}

// --- materializing ------------------------------------------------------

async function prepareChild(
  opts: RunOptions,
  values: Map<string, Buffer>,
  state: RunState,
): Promise<{ env: Record<string, string>; argv: string[] }> {
  const env: Record<string, string> = {};
  for (const spec of opts.specs) {
    const value = values.get(spec.name);
    if (value === undefined) continue;
    env[spec.name] = spec.toFile ? await writeSecretFile(opts, state, value) : envValue(spec.name, value);
  }
  if (opts.environment) env.SUMMON_ENV = opts.environment;
  const argv = await substituteEnvFile(opts, state, env);
  return { env, argv };
}

function envValue(name: string, value: Buffer): string {
  // spawn() would reject it with a message that quotes the value.
  if (value.includes(0)) {
    throw new RunFailure(`the value of ${name} contains a NUL byte and cannot go into the environment; use !var:file`);
  }
  return value.toString('utf8');
}

async function substituteEnvFile(opts: RunOptions, state: RunState, env: Record<string, string>): Promise<string[]> {
  const argv = [...opts.command];
  if (!argv.some((a) => a.includes(ENV_FILE_MAGIC))) return argv;
  const path = await writeSecretFile(opts, state, Buffer.from(formatEnvFile(env), 'utf8'));
  return argv.map((a) => a.replaceAll(ENV_FILE_MAGIC, path));
}

/**
 * Summon's env file: sorted KEY=VALUE lines; a value with blanks, quotes or
 * backslashes is double-quoted with Go-style escapes.
 */
export function formatEnvFile(env: Readonly<Record<string, string>>): string {
  const lines = Object.entries(env).map(([k, v]) => `${k}=${/[ \t\n\r"'\\]/.test(v) ? goQuote(v) : v}`);
  return `${lines.sort().join('\n')}\n`;
}

const GO_ESCAPES: Record<string, string> = {
  '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v', '"': '\\"', '\\': '\\\\',
};

function goQuote(value: string): string {
  const body = value.replace(/[\x00-\x1f\x7f"\\]/g, (c) => GO_ESCAPES[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return `"${body}"`;
}

async function writeSecretFile(opts: RunOptions, state: RunState, data: Buffer): Promise<string> {
  state.workspace ??= await createWorkspace(opts);
  const path = join(state.workspace.dir, `secret-${state.workspace.files.length}`);
  // Recorded before writing so that a half-written file is still removed.
  state.workspace.files.push(path);
  await writeFile(path, data, { mode: 0o600, flag: 'wx' });
  return path;
}

async function createWorkspace(opts: RunOptions): Promise<Workspace> {
  const root = opts.tmpRoot ?? (await defaultTmpRoot(opts.stderr));
  const owner = runnerTag();
  if (owner) await sweepAbandoned(root, owner.namespace);
  // The pid (and its namespace) in the name let a later run recognise a workspace whose runner was SIGKILLed.
  const dir = await mkdtemp(join(root, owner ? `coffer-run-${owner.namespace}-${process.pid}-` : 'coffer-run-'));
  await chmod(dir, 0o700);
  return { dir, files: [] };
}

/**
 * This process's pid namespace (Linux). A /dev/shm shared between containers
 * (`--ipc=host`) holds workspaces of runners whose pids mean nothing here, so
 * only workspaces of our own namespace are ever judged. Elsewhere: no sweep.
 */
function runnerTag(): { namespace: string } | undefined {
  try {
    const m = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'));
    return m ? { namespace: m[1]! } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A runner killed with SIGKILL cannot clean up, and /dev/shm lives until
 * reboot. Each run therefore removes (zeroing first) the workspaces of dead
 * runners: only real directories (not symlinks) owned by this user, named
 * `coffer-run-<our pid namespace>-<pid>-…`, whose pid is not running. A
 * reused pid keeps its directory until a later run: safe, if late.
 */
async function sweepAbandoned(root: string, namespace: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    const m = /^coffer-run-(\d+)-(\d+)-[A-Za-z0-9]{6}$/.exec(name);
    if (!m || m[1] !== namespace || Number(m[2]) === process.pid || processAlive(Number(m[2]))) continue;
    const dir = join(root, name);
    try {
      const info = await lstat(dir);
      if (!info.isDirectory() || (uid !== undefined && info.uid !== uid)) continue;
      const files = (await readdir(dir)).map((f) => join(dir, f));
      await removeWorkspace({ dir, files });
    } catch {
      // Someone else's, or gone already: leave it.
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function defaultTmpRoot(stderr: Writer): Promise<string> {
  try {
    if ((await stat(SHM_DIR)).isDirectory()) {
      await access(SHM_DIR, fsConstants.W_OK | fsConstants.X_OK);
      return SHM_DIR;
    }
  } catch {
    // fall through to the disk-backed temp dir
  }
  const dir = tmpdir();
  stderr.write(`coffer run: warning: ${SHM_DIR} is not usable; secret files go to ${dir}, which may be disk-backed\n`);
  return dir;
}

// --- the child --------------------------------------------------------------

async function runChild(opts: RunOptions, argv: string[], env: NodeJS.ProcessEnv, relay: SignalRelay): Promise<number> {
  const [file = '', ...args] = argv;
  const detached = opts.detached ?? true;
  const { target, exited } = await startChild(file, args, env, detached, (started) => relay.attach(started));
  const timeout = startTimeout(opts, target);
  try {
    const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
    // The pid may be reused from now on: stop signalling it.
    relay.detach();
    if (!timeout.fired()) return code ?? 128 + signalNumber(signal);
    await timeout.settle();
    opts.stderr.write(`coffer run: command timed out after ${opts.timeoutMs} ms\n`);
    return EXIT_TIMEOUT;
  } finally {
    timeout.cancel();
    relay.detach();
  }
}

// --- cleanup ---------------------------------------------------------------

async function cleanUp(opts: RunOptions, state: RunState): Promise<void> {
  if (state.workspace) {
    try {
      await removeWorkspace(state.workspace);
    } catch (err) {
      opts.stderr.write(`coffer run: could not remove ${state.workspace.dir}: ${codeOrMessage(err)}\n`);
    }
  }
  if (opts.onCleanup) {
    try {
      await opts.onCleanup();
    } catch (err) {
      opts.stderr.write(`coffer run: ${scrub(oneLine(messageOf(err)), state.secrets)}\n`);
    }
  }
}

async function removeWorkspace(ws: Workspace): Promise<void> {
  for (const file of ws.files) await zeroFile(file);
  await rm(ws.dir, { recursive: true, force: true });
}

/** Best effort: a later reader of the freed pages finds zeros, not the secret. */
async function zeroFile(path: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    // The child may have swapped the file for a symlink (O_NOFOLLOW) or a FIFO,
    // whose open would block forever with no reader (lstat first, O_NONBLOCK).
    if (!(await lstat(path)).isFile()) return;
    handle = await open(path, fsConstants.O_WRONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    const info = await handle.stat();
    if (!info.isFile()) return;
    const chunk = Buffer.alloc(Math.min(info.size, 64 * 1024));
    for (let offset = 0; offset < info.size; offset += chunk.length) {
      await handle.write(chunk, 0, Math.min(chunk.length, info.size - offset), offset);
    }
    await handle.datasync();
  } catch {
    // Missing or replaced files are simply removed below.
  } finally {
    await handle?.close();
  }
}

// --- helpers -------------------------------------------------------------

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function codeOrMessage(err: unknown): string {
  return (err as NodeJS.ErrnoException | null)?.code ?? messageOf(err);
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/** Defence in depth: a message must never carry a fetched value. */
function scrub(text: string, secrets: readonly string[]): string {
  return secrets.reduce((out, secret) => out.split(secret).join('[redacted]'), text);
}
