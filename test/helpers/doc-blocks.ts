/**
 * Reads the runnable parts of a Markdown document: every fenced block must be
 * preceded by `<!-- docs-test: KIND NAME -->`, so no command can be shown
 * without a test running it; tests take blocks by kind and name, and
 * {@link DocBlocks.unused} lists the blocks no test took. A block indented
 * inside a list item counts too: its marker carries the same indentation,
 * and its text is read without it.
 *
 * Also: a minimal reader of the declarative-pipeline subset the docs use
 * (environment, stages, withCredentials bindings, sh steps) and a bash runner.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface DocBlock {
  kind: string;
  name: string;
  lang: string;
  text: string;
  line: number;
}

const KIND_LANG: Record<string, string> = {
  file: 'yaml',
  run: 'sh',
  output: 'text',
  'server-env': 'sh',
  jenkinsfile: 'groovy',
  workflow: 'yaml',
  /** A figure (e.g. a topology); a test checks what it names against the commands. */
  diagram: 'text',
};

export class DocBlocks {
  private readonly blocks = new Map<string, DocBlock>();
  private readonly taken = new Set<string>();

  constructor(readonly path: string) {
    const lines = readFileSync(path, 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^( *)```(\S*)\s*$/.exec(lines[i]!);
      if (!open) continue;
      const indent = open[1] ?? '';
      const marker = /^( *)<!-- docs-test: (\S+) (\S+) -->$/.exec(lines[i - 1] ?? '');
      if (!marker || marker[1] !== indent) throw new Error(`${path}:${i + 1}: fenced block without a <!-- docs-test: KIND NAME --> marker`);
      const [, , kind, name] = marker as unknown as [string, string, string, string];
      const lang = open[2] ?? '';
      if (KIND_LANG[kind] === undefined) throw new Error(`${path}:${i + 1}: unknown docs-test kind '${kind}'`);
      if (KIND_LANG[kind] !== lang) throw new Error(`${path}:${i + 1}: a '${kind}' block must be \`\`\`${KIND_LANG[kind]}, not \`\`\`${lang}`);
      const end = lines.findIndex((l, j) => j > i && l === `${indent}\`\`\``);
      if (end < 0) throw new Error(`${path}:${i + 1}: unterminated fenced block`);
      const key = `${kind} ${name}`;
      if (this.blocks.has(key)) throw new Error(`${path}:${i + 1}: duplicate block '${key}'`);
      const body = lines.slice(i + 1, end).map((l, j) => {
        if (l !== '' && !l.startsWith(indent)) throw new Error(`${path}:${i + 2 + j}: a line of an indented block must carry its indentation`);
        return l.slice(indent.length);
      });
      this.blocks.set(key, { kind, name, lang, text: `${body.join('\n')}\n`, line: i + 1 });
      i = end;
    }
  }

  /** The block `kind name`, marked as exercised. */
  take(kind: string, name: string): DocBlock {
    const key = `${kind} ${name}`;
    const block = this.blocks.get(key);
    if (!block) throw new Error(`${this.path} has no block '${key}'`);
    this.taken.add(key);
    return block;
  }

  /** Every block of a kind (marked as exercised). */
  all(kind: string): DocBlock[] {
    return [...this.blocks.values()].filter((b) => b.kind === kind).map((b) => this.take(b.kind, b.name));
  }

  unused(): string[] {
    return [...this.blocks.keys()].filter((k) => !this.taken.has(k));
  }
}

/** `KEY=VALUE` lines of a server-env block. */
export function envLines(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n').filter((l) => l.trim() !== '')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`not a KEY=VALUE line: ${line}`);
    env[m[1]!] = m[2]!;
  }
  return env;
}

export interface PipelineStage {
  name: string;
  /** withCredentials bindings: kind (file or string), credentials id, variable. */
  bindings: { kind: 'file' | 'string'; credentialsId: string; variable: string }[];
  /** `sh '…'` steps, in order. */
  sh: string[];
}

export interface Pipeline {
  environment: Record<string, string>;
  stages: PipelineStage[];
}

/**
 * The declarative-pipeline subset of the docs. Anything it does not
 * recognise inside a stage makes it throw, so the docs cannot grow a step
 * the test silently skips.
 */
export function readJenkinsfile(text: string): Pipeline {
  const envBlock = /^ {2}environment \{\n([\s\S]*?)\n {2}\}/m.exec(text);
  const environment: Record<string, string> = {};
  for (const line of (envBlock?.[1] ?? '').split('\n')) {
    const m = /^\s*(\w+)\s*=\s*'([^']*)'\s*$/.exec(line);
    if (!m) throw new Error(`unsupported environment line: ${line}`);
    environment[m[1]!] = m[2]!;
  }
  const starts = [...text.matchAll(/stage\('([^']+)'\) \{/g)];
  if (starts.length === 0) throw new Error('no stages');
  const stages = starts.map((m, i) => {
    const body = text.slice(m.index! + m[0].length, starts[i + 1]?.index ?? text.length);
    const bindings = [...body.matchAll(/(file|string)\(credentialsId: '([^']+)', variable: '([^']+)'\)/g)].map((b) => ({
      kind: b[1] as 'file' | 'string',
      credentialsId: b[2]!,
      variable: b[3]!,
    }));
    const sh = [...body.matchAll(/\bsh '([^']*)'/g)].map((s) => s[1]!);
    const rest = body
      .replace(/(file|string)\(credentialsId: '[^']+', variable: '[^']+'\)/g, '')
      .replace(/\bsh '[^']*'/g, '')
      .replace(/withCredentials\(\[(,\s*)*\]\)|steps|[{}\s]/g, '');
    if (rest !== '') throw new Error(`stage '${m[1]}' has steps the docs test does not understand: ${rest}`);
    if (sh.length === 0) throw new Error(`stage '${m[1]}' runs nothing`);
    return { name: m[1]!, bindings, sh };
  });
  return { environment, stages };
}

export interface ShellResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `script` with bash (as GitHub's `run:` does: -e -o pipefail) or sh -xe (as Jenkins' `sh` does). */
export function runShell(shell: 'bash' | 'jenkins-sh', script: string, opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<ShellResult> {
  const argv = shell === 'bash' ? ['bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', script]] : ['sh', ['-xe', '-c', script]];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv[1] as string[], { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** A table as the docs show it: times replaced by `<time>`, runs of blanks collapsed. */
export function normalizeTable(text: string): string[] {
  return text
    .replace(/\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?Z/g, '<time>')
    .split('\n')
    .map((l) => l.replace(/[ \t]+/g, ' ').trim())
    .filter((l) => l !== '');
}
