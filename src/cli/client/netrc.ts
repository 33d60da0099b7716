/**
 * ~/.netrc as the Conjur CLIs use it: `machine <appliance_url>/authn` (Go CLI,
 * Summon) or `machine <appliance_url>` (Python CLI), `login` = the Conjur
 * login, `password` = its API key. Edits keep every other entry byte for byte.
 */

export interface NetrcEntry {
  machine: string;
  login?: string;
  password?: string;
}

interface Token {
  text: string;
  start: number;
  end: number;
}

interface Span {
  entry: NetrcEntry;
  start: number;
  end: number;
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let inComment = false;
  let lineStart = true;
  for (let i = 0; i < text.length; ) {
    const ch = text[i]!;
    if (ch === '\n') {
      inComment = false;
      lineStart = true;
      i++;
      continue;
    }
    if (inComment || /\s/.test(ch)) {
      i++;
      continue;
    }
    if (ch === '#' && lineStart) {
      inComment = true;
      continue;
    }
    lineStart = false;
    re.lastIndex = i;
    const m = re.exec(text)!;
    const value = m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!;
    tokens.push({ text: value, start: m.index, end: m.index + m[0].length });
    i = m.index + m[0].length;
  }
  return tokens;
}

/** Every `machine` entry with where it starts and ends in the text. */
function spans(text: string): Span[] {
  const tokens = tokenize(text);
  const out: Span[] = [];
  let current: Span | undefined;
  const close = (at: number) => {
    if (current) {
      current.end = at;
      out.push(current);
      current = undefined;
    }
  };
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.text === 'machine') {
      close(t.start);
      const name = tokens[++i];
      current = { entry: { machine: name?.text ?? '' }, start: t.start, end: text.length };
    } else if (t.text === 'default') {
      close(t.start);
    } else if (t.text === 'macdef') {
      close(t.start);
      // A macro body runs to the next blank line; skip its tokens.
      const blank = text.indexOf('\n\n', t.end);
      const stop = blank < 0 ? text.length : blank;
      while (i + 1 < tokens.length && tokens[i + 1]!.start < stop) i++;
    } else if ((t.text === 'login' || t.text === 'password' || t.text === 'account') && i + 1 < tokens.length) {
      const value = tokens[++i]!.text;
      if (current && t.text !== 'account') current.entry[t.text] = value;
    }
  }
  close(text.length);
  return out;
}

export function parseNetrc(text: string): NetrcEntry[] {
  return spans(text).map((s) => s.entry);
}

export function findEntry(text: string, machine: string): NetrcEntry | undefined {
  return parseNetrc(text).find((e) => e.machine === machine);
}

function render(entry: Required<NetrcEntry>): string {
  return `machine ${entry.machine}\n  login ${entry.login}\n  password ${entry.password}\n`;
}

/**
 * Sets `machine`'s login and password, replacing its entry where it is or
 * appending one. Values with whitespace cannot be stored in a netrc.
 */
export function upsertEntry(text: string, entry: Required<NetrcEntry>): string {
  for (const v of [entry.machine, entry.login, entry.password]) {
    if (!v || /[\s"#]/.test(v)) throw new Error('netrc values may not be empty or contain whitespace, quotes or #');
  }
  const existing = spans(text).find((s) => s.entry.machine === entry.machine);
  if (existing) return text.slice(0, existing.start) + render(entry) + text.slice(existing.end).replace(/^\s*\n/, '');
  const sep = text.length === 0 || text.endsWith('\n') ? '' : '\n';
  return text + sep + render(entry);
}

/** Removes every entry for one of `machines`; returns the new text and how many were removed. */
export function removeEntries(text: string, machines: readonly string[]): { text: string; removed: number } {
  const doomed = spans(text).filter((s) => machines.includes(s.entry.machine));
  let out = text;
  for (const s of doomed.reverse()) out = out.slice(0, s.start) + out.slice(s.end);
  return { text: out, removed: doomed.length };
}
