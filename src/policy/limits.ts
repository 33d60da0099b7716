/**
 * Bounds on the work one policy may cause, checked before any YAML is built
 * (issue 9 item 4). A body under the 10 MiB limit could otherwise make the
 * `yaml` package build millions of nodes (12–16 s, 1.5 GB).
 *
 * Two stages, both linear in the body:
 * 1. `prescanPolicy` (here, on the calling thread, one pass over the
 *    characters, no regular expression, no allocation per character): an
 *    upper bound on the YAML nodes the text can make, its line count and its
 *    aliases. It interprets nothing (quotes, comments and block scalars are
 *    counted like the rest), so it can only over-count: every YAML node needs
 *    one of the indicators it counts.
 * 2. Nesting depth, exactly, while the `yaml` parser tokenizes (see
 *    `parse.ts`): the parser's own stack of open collections is checked after
 *    every token, so a deep document is refused after at most `maxDepth`
 *    levels, before anything recursive (composer, visitors, the walker) runs.
 *
 * Every refusal is a `policy_invalid` 422 naming the limit, its value and the
 * line/column where it was exceeded: the body itself was accepted (it is
 * under the byte limit, which answers 413); what it says is refused, like
 * any other invalid policy.
 */
import { PolicyError } from '../errors.js';

export { isStackOverflow } from '../errors.js';

export interface PolicyLimits {
  /** Upper bound on YAML nodes (collections, items, keys, values). */
  maxNodes: number;
  /** Deepest nesting of collections (block and flow together). */
  maxDepth: number;
  /** Most aliases (`*name`). */
  maxAliases: number;
}

export const DEFAULT_POLICY_LIMITS: Readonly<PolicyLimits> = {
  maxNodes: 500_000,
  maxDepth: 64,
  maxAliases: 10_000,
};

/** Lines allowed per node of the limit: blank lines and comments cost parser work too. */
export const LINES_PER_NODE = 2;

export interface PrescanCounts {
  nodes: number;
  lines: number;
  aliases: number;
}

const NL = 10;
const CR = 13;
const SPACE = 32;
const TAB = 9;
const COMMA = 44;
const COLON = 58;
const DASH = 45;
const DOT = 46;
const QUESTION = 63;
const STAR = 42;
const LBRACKET = 91;
const LBRACE = 123;
const RBRACKET = 93;
const RBRACE = 125;
const BANG = 33;
const AMP = 38;
const DQUOTE = 34;
const SQUOTE = 39;
const PIPE = 124;
const GT = 62;
const HASH = 35;

const fmt = (n: number): string => n.toLocaleString('en-US');

/**
 * Counts (an upper bound of) the nodes, the lines and the aliases of a
 * policy, refusing it as soon as one exceeds its limit.
 *
 * Node weights: `[` 2 (the sequence and its first item), `{` 3 (the mapping,
 * its first key and value), `,` 2 (a flow map's next key and value), `:` 2
 * (a key and its value), `?` + blank 2, `-` + blank 1 (a block item),
 * `---`/`...` at a line start 1 (a document), plus 1 for the first document.
 * Characters that start other tokens the parser must handle — `]`, `}`,
 * `*`, `!`, `&`, quotes, `|`, `>` — weigh 1 each, wherever they are, so the
 * parser's work (tokens) is bounded by nodes plus lines, not only the nodes
 * it builds. Every `:` and `,` counts, quoted or not: over-counting prose is
 * harmless, under-counting never happens. A line with none of the
 * indicators that make items and pairs (`[ { , : - ? ---`), other than a
 * comment or blank line, weighs 2 more: YAML may read it as a key without a
 * value. The property tests check the count against what `yaml` builds.
 */
export function prescanPolicy(text: string, limits: PolicyLimits): PrescanCounts {
  const maxLines = limits.maxNodes * LINES_PER_NODE;
  const n = text.length;
  let nodes = 1;
  let lines = 1;
  let aliases = 0;
  let lineStart = 0;
  /** Whether the current line has a counted indicator, or anything but blanks and a comment. */
  let counted = false;
  let content = false;
  const bareLine = (i: number): void => {
    if (content && !counted) {
      nodes += 2;
      if (nodes > limits.maxNodes) fail(`Policy has more than ${fmt(limits.maxNodes)} YAML nodes (limit: ${fmt(limits.maxNodes)})`, i);
    }
    content = false;
    counted = false;
  };
  const fail = (what: string, i: number): never => {
    throw new PolicyError('policy_invalid', what, { line: lines, column: i - lineStart + 1 });
  };
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    let add = 0;
    switch (c) {
      case NL:
      case CR:
        bareLine(i);
        if (c === CR && text.charCodeAt(i + 1) === NL) i++;
        if (++lines > maxLines) {
          fail(`Policy has more than ${fmt(maxLines)} lines (limit: ${LINES_PER_NODE} per allowed node)`, i);
        }
        lineStart = i + 1;
        continue;
      case LBRACKET:
        add = 2;
        break;
      case LBRACE:
        add = 3;
        break;
      case RBRACKET:
      case RBRACE:
      case BANG:
      case AMP:
      case DQUOTE:
      case SQUOTE:
      case PIPE:
      case GT:
        add = 1;
        break;
      case COMMA:
      case COLON:
        add = 2;
        break;
      case DASH:
      case QUESTION:
      case DOT: {
        if (i === lineStart && c !== QUESTION) {
          const c1 = text.charCodeAt(i + 1);
          const c2 = text.charCodeAt(i + 2);
          if (c1 === c && c2 === c) {
            add = 1; // a document marker (--- or ...)
            i += 2;
            break;
          }
        }
        if (c === DOT) {
          content = true;
          continue;
        }
        const next = i + 1 < n ? text.charCodeAt(i + 1) : SPACE;
        if (next === SPACE || next === TAB || next === NL || next === CR) add = c === DASH ? 1 : 2;
        break;
      }
      case STAR: {
        const prev = i === 0 ? SPACE : text.charCodeAt(i - 1);
        if (prev === SPACE || prev === TAB || prev === NL || prev === CR || prev === LBRACKET || prev === LBRACE || prev === COMMA) {
          if (++aliases > limits.maxAliases) {
            fail(`Policy has more than ${fmt(limits.maxAliases)} aliases (limit: ${fmt(limits.maxAliases)})`, i);
          }
        }
        add = 1;
        break;
      }
      case SPACE:
      case TAB:
        continue;
      case HASH:
        if (!content) content = counted = true; // a comment line: no node
        continue;
      default:
        content = true;
        continue;
    }
    content = true;
    if (add === 0) continue;
    // Only the indicators that make items and pairs account for the line's own node.
    if (c !== RBRACKET && c !== RBRACE && c !== BANG && c !== AMP && c !== DQUOTE && c !== SQUOTE && c !== PIPE && c !== GT && c !== STAR) counted = true;
    nodes += add;
    if (nodes > limits.maxNodes) {
      fail(`Policy has more than ${fmt(limits.maxNodes)} YAML nodes (limit: ${fmt(limits.maxNodes)})`, i);
    }
  }
  bareLine(n);
  return { nodes, lines, aliases };
}

export function depthError(maxDepth: number, position: { line: number; column: number }): PolicyError {
  return new PolicyError('policy_invalid', `Policy is nested too deeply: more than ${maxDepth} levels (limit: ${maxDepth})`, position);
}
