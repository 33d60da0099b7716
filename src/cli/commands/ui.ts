/**
 * Human output: aligned tables, colours (only when the context allows), a
 * progress line for slow operations, and reading secrets from stdin or a
 * terminal without echo.
 */
import { CliError } from '../io.js';
import { EXIT } from '../client/exit-codes.js';
import { sanitize } from '../client/errors.js';
import type { Ctx } from './context.js';

const CODES = { bold: 1, dim: 2, red: 31, green: 32, yellow: 33, cyan: 36 } as const;
export type Colour = keyof typeof CODES;

export function paint(ctx: Ctx, colour: Colour, text: string): string {
  return ctx.color ? `\x1b[${CODES[colour]}m${text}\x1b[0m` : text;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const visible = (s: string) => s.replace(ANSI, '').length;

/** Column widths that fit `rows` (and at least `min`). */
export function columnWidths(rows: string[][], min: number[] = []): number[] {
  const n = Math.max(min.length, ...rows.map((r) => r.length));
  return Array.from({ length: n }, (_, i) => Math.max(min[i] ?? 0, ...rows.map((r) => visible(r[i] ?? ''))));
}

/** One row padded to `widths`, columns separated by two spaces; the last column is not padded. */
export function formatRow(cells: string[], widths: number[]): string {
  return cells
    .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(Math.max(0, (widths[i] ?? 0) - visible(c)))))
    .join('  ')
    .trimEnd();
}

/**
 * Rows aligned in columns under a header. Cells come from the server, so they
 * are sanitised (no control characters reach the terminal).
 */
export function table(ctx: Ctx, headers: string[], rows: string[][]): string[] {
  const clean = rows.map((r) => r.map((c) => sanitize(c, 10_000)));
  const widths = columnWidths([headers, ...clean]);
  return [paint(ctx, 'bold', formatRow(headers, widths)), ...clean.map((r) => formatRow(r, widths))];
}

export interface Progress {
  stop(): void;
}

/**
 * A spinner line on stderr that appears only if the operation takes longer
 * than `delayMs`, and only on a terminal (never in CI logs or pipes).
 */
export function startProgress(ctx: Ctx, label: string, delayMs = 1000): Progress {
  if (!ctx.tty.stderr) return { stop: () => undefined };
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  const started = Date.now();
  let frame = 0;
  let shown = false;
  let ticker: NodeJS.Timeout | undefined;
  const draw = () => {
    shown = true;
    const secs = Math.floor((Date.now() - started) / 1000);
    ctx.writeErr(`\r\x1b[K${frames[frame++ % frames.length]} ${label} (${secs}s)`);
  };
  const delay = setTimeout(() => {
    draw();
    ticker = setInterval(draw, 100);
    ticker.unref();
  }, delayMs);
  delay.unref();
  return {
    stop() {
      clearTimeout(delay);
      if (ticker) clearInterval(ticker);
      if (shown) ctx.writeErr('\r\x1b[K');
    },
  };
}

/** All of stdin as bytes. */
export async function readStdin(ctx: Ctx): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of ctx.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

/**
 * A secret from stdin: typed at a prompt without echo on a terminal, else the
 * whole of stdin with one trailing newline removed (`echo KEY | coffer …`).
 */
export async function readSecret(ctx: Ctx, prompt: string): Promise<string> {
  if (!ctx.tty.stdin || typeof ctx.stdin.setRawMode !== 'function') {
    return (await readStdin(ctx)).toString('utf8').replace(/\r?\n$/, '');
  }
  return promptHidden(ctx, prompt);
}

function promptHidden(ctx: Ctx, prompt: string): Promise<string> {
  const input = ctx.stdin;
  ctx.writeErr(prompt);
  return new Promise<string>((resolvePromise, reject) => {
    let value = '';
    const finish = (err?: Error) => {
      input.removeListener('data', onData);
      input.setRawMode!(false);
      input.pause();
      ctx.writeErr('\n');
      if (err) reject(err);
      else resolvePromise(value);
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish();
        if (ch === '\u0003') return finish(new CliError('interrupted', 130));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else if (ch >= ' ') value += ch;
      }
    };
    input.setRawMode!(true);
    input.resume();
    input.on('data', onData);
  });
}

/** A value shown once (API keys of new roles): marked so nobody mistakes it for routine output. */
export function shownOnce(ctx: Ctx, what: string, plural = false): string {
  return paint(ctx, 'yellow', `${what} — shown only once, store ${plural ? 'them' : 'it'} now:`);
}

export function fail(message: string, code: number = EXIT.FAILURE): CliError {
  return new CliError(message, code);
}

/** `key   value` lines with the keys aligned (and bold on a colour terminal). */
export function keyValues(ctx: Ctx, rows: [string, string][]): string[] {
  const width = Math.max(0, ...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${paint(ctx, 'bold', k.padEnd(width))}  ${sanitize(v, 10_000)}`);
}
