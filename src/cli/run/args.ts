/**
 * Command line of `coffer run`, read the way Summon reads its own (Go's flag
 * package through urfave/cli): options come first, `-x` and `--x` are the
 * same, a value follows as the next argument or after `=`, and the first
 * argument that is not an option — or everything after `--` — is the command.
 * Options after the command belong to the command (`coffer run ls -la`).
 *
 * @module
 */

/** Parsed `coffer run` options. */
export interface RunArgs {
  /** `-f`: the secrets file; Summon's default `secrets.yml`. */
  file: string;
  /** `--up`: look for `file` in the parent directories too. */
  up: boolean;
  /** `-e`/`--environment`: the section of secrets.yml to use. */
  environment?: string;
  /** `-D name=value`, in order (a later one wins). */
  defines: Record<string, string>;
  /** `--yaml`: secrets.yml text given inline (then `-f` is not read). */
  yaml?: string;
  /** `-i`/`--ignore`: env var names or variable paths whose fetch may fail. */
  ignore: string[];
  /** `-I`/`--ignore-all`: every variable's fetch may fail. */
  ignoreAll: boolean;
  /** `--timeout`: kill the command after this many milliseconds. */
  timeoutMs?: number;
  help: boolean;
  /** The command and its arguments. */
  command: string[];
}

/** A command-line mistake; the message is shown after `coffer run: `. */
export class RunUsageError extends Error {
  override readonly name = 'RunUsageError';
}

type OptionKind = 'string' | 'list' | 'bool';

interface OptionSpec {
  kind: OptionKind;
  key: 'file' | 'up' | 'environment' | 'define' | 'yaml' | 'ignore' | 'ignoreAll' | 'timeout' | 'help';
}

const OPTIONS: Record<string, OptionSpec> = {
  f: { kind: 'string', key: 'file' },
  up: { kind: 'bool', key: 'up' },
  e: { kind: 'string', key: 'environment' },
  environment: { kind: 'string', key: 'environment' },
  D: { kind: 'list', key: 'define' },
  yaml: { kind: 'string', key: 'yaml' },
  i: { kind: 'list', key: 'ignore' },
  ignore: { kind: 'list', key: 'ignore' },
  I: { kind: 'bool', key: 'ignoreAll' },
  'ignore-all': { kind: 'bool', key: 'ignoreAll' },
  timeout: { kind: 'string', key: 'timeout' },
  h: { kind: 'bool', key: 'help' },
  help: { kind: 'bool', key: 'help' },
};

/** Summon options that make no sense for Coffer, with the reason. */
const NOT_SUPPORTED: Record<string, string> = {
  p: 'coffer run always fetches from the Coffer server it is configured for (use `summon -p coffer-provider` for a Summon set-up)',
  provider: 'coffer run always fetches from the Coffer server it is configured for (use `summon -p coffer-provider` for a Summon set-up)',
  V: 'coffer run has no providers to list',
  'all-provider-versions': 'coffer run has no providers to list',
};

/**
 * Parses the arguments after `run`.
 *
 * @throws RunUsageError on unknown options, missing values or a bad duration
 * @example
 * parseRunArgs(['-e', 'prod', '-D', 'REGION=eu', '--timeout', '10m', '--', './deploy.sh', '-v']);
 * // → { environment: 'prod', defines: { REGION: 'eu' }, timeoutMs: 600000, command: ['./deploy.sh', '-v'], … }
 */
export function parseRunArgs(argv: readonly string[]): RunArgs {
  const out: RunArgs = { file: 'secrets.yml', up: false, defines: {}, ignore: [], ignoreAll: false, help: false, command: [] };
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    // `-` alone is an argument (stdin by convention), not an option.
    if (!arg.startsWith('-') || arg === '-') break;
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const inline = eq < 0 ? undefined : body.slice(eq + 1);
    const spec = OPTIONS[name];
    if (!spec) {
      const why = NOT_SUPPORTED[name];
      throw new RunUsageError(why ? `${arg.split('=')[0]} is not supported: ${why}` : `unknown option ${arg.split('=')[0]} (see coffer run --help)`);
    }
    i++;
    if (spec.kind === 'bool') {
      apply(out, spec, parseBool(name, inline));
      continue;
    }
    let value = inline;
    if (value === undefined) {
      if (i >= argv.length) throw new RunUsageError(`option -${name} needs a value`);
      value = argv[i++]!;
    }
    apply(out, spec, value);
  }
  out.command = argv.slice(i);
  return out;
}

function parseBool(name: string, inline: string | undefined): boolean {
  if (inline === undefined || inline === 'true') return true;
  if (inline === 'false') return false;
  throw new RunUsageError(`option -${name} takes no value (or =true / =false)`);
}

function apply(out: RunArgs, spec: OptionSpec, value: string | boolean): void {
  switch (spec.key) {
    case 'file':
      out.file = value as string;
      break;
    case 'up':
      out.up = value as boolean;
      break;
    case 'environment':
      out.environment = value as string;
      break;
    case 'define': {
      const text = value as string;
      const eq = text.indexOf('=');
      // Summon panics on this; a clear message is kinder. The text is not
      // quoted: whatever was typed there may be a value.
      if (eq <= 0) throw new RunUsageError('-D expects name=value (an argument of the form NAME=VALUE)');
      out.defines[text.slice(0, eq)] = text.slice(eq + 1);
      break;
    }
    case 'yaml':
      out.yaml = value as string;
      break;
    case 'ignore':
      out.ignore.push(value as string);
      break;
    case 'ignoreAll':
      out.ignoreAll = value as boolean;
      break;
    case 'timeout':
      out.timeoutMs = parseDuration(value as string);
      break;
    case 'help':
      out.help = value as boolean;
      break;
  }
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** setTimeout's limit (about 24.8 days). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * A duration as GNU `timeout` (a number, seconds unless suffixed s/m/h/d) or
 * Go (`1h30m`, `500ms`) writes it; in milliseconds.
 *
 * @throws RunUsageError for anything else, zero, or more than 24 days
 * @example
 * parseDuration('90');    // 90000
 * parseDuration('1h30m'); // 5400000
 */
export function parseDuration(text: string): number {
  const bad = () => new RunUsageError(`invalid --timeout '${text}' (examples: 90, 90s, 15m, 1h30m)`);
  const trimmed = text.trim();
  if (trimmed === '') throw bad();
  let total = 0;
  let rest = trimmed;
  let parts = 0;
  while (rest !== '') {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?/.exec(rest);
    if (!m) throw bad();
    const unit = m[2];
    // A bare number is seconds, but only on its own: `1h30` is ambiguous.
    if (unit === undefined && (parts > 0 || m[0].length !== rest.length)) throw bad();
    total += Number(m[1]) * UNIT_MS[unit ?? 's']!;
    rest = rest.slice(m[0].length);
    parts++;
  }
  const ms = Math.round(total);
  if (!(ms > 0)) throw new RunUsageError(`--timeout must be longer than zero, got '${text}'`);
  if (ms > MAX_TIMEOUT_MS) throw new RunUsageError(`--timeout may be at most 24 days, got '${text}'`);
  return ms;
}
