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
  maxNodes: 750_000,
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
/** Stands for a CR not followed by LF: a character without a case of its own. */
const LONE_CR = -1;

const fmt = (n: number): string => n.toLocaleString('en-US');

/**
 * Counts (an upper bound of) the nodes, the lines and the aliases of a
 * policy, refusing it as soon as one exceeds its limit.
 *
 * Node weights: `[` 4 (the sequence, its first item, and what error
 * recovery makes of a `-` or `:` right after it), `{` 3 (the mapping, its
 * first key and value), `,` 2 (a flow map's next key and value), `:` 2 (a
 * key and its value), `?` + blank 3 (a key, its null value, and the mapping
 * a compact `- ? - ?` opens), `-` + blank 1 (a block item) — each 2 more
 * after a `:` on the same line (`a: - b`: error recovery makes the item a key
 * with a null value) —, a `-` inside a flow collection at least 2 and a `?`
 * there at least 1 (`[-,-,…` builds 4 nodes an item), `---`/`...` at a line
 * start 1 (a document), plus 1 for the first document. Characters that start
 * other tokens the parser must handle weigh too, wherever they are, so the
 * parser's work (tokens) is bounded by nodes plus lines, not only the nodes
 * it builds: `]`, `}`, `!`, `&`, `|`, `>` 1, quotes 2 and `*` 3 (a quoted
 * scalar or an alias after a block scalar header is recovered as a key with
 * null values). Every `:` and `,` counts, quoted or not: over-counting prose
 * is harmless, under-counting never happens. Every line that is not blank
 * weighs 1 (error recovery at a line start: `a: b` then `- c` at the same
 * indent), and 2 instead if it has none of the indicators that make items and
 * pairs (`[ { , : - ? ---`) and is not a comment: YAML may read it as a key
 * without a value. Lines end at LF and CRLF, as YAML's do: a lone CR is text.
 * The property tests check the count against what `yaml` builds; random
 * token soup and repeated fragments found each of the recovery cases above.
 */
export function prescanPolicy(text: string, limits: PolicyLimits): PrescanCounts {
  // One tight loop over local variables (no closures: captured variables would live in a context object).
  const maxNodes = limits.maxNodes;
  const maxAliases = limits.maxAliases;
  const maxLines = maxNodes * LINES_PER_NODE;
  const n = text.length;
  let nodes = 1;
  let lines = 1;
  let aliases = 0;
  let lineStart = 0;
  /** Whether the current line has an item or pair indicator (or is a comment), and whether it has anything but blanks. */
  let counted = false;
  let content = false;
  /** Whether a `:` came earlier on this line; whether the last character other than a blank was `[`, `{` or `,`. */
  let afterColon = false;
  let afterFlowIndicator = false;
  /** Open `[` and `{` (quoted ones too: an over-count is harmless). */
  let flowDepth = 0;
  for (let i = 0; i <= n; i++) {
    let c = i < n ? text.charCodeAt(i) : NL;
    // YAML breaks lines at LF and CRLF only: a lone CR is text (lines of it are keys without values).
    if (c === CR && text.charCodeAt(i + 1) !== NL) c = LONE_CR;
    let add = 0;
    const flowBefore = afterFlowIndicator;
    if (c !== SPACE && c !== TAB && c !== NL && c !== CR) afterFlowIndicator = c === LBRACKET || c === LBRACE || c === COMMA;
    if (c === LBRACKET || c === LBRACE) flowDepth++;
    else if ((c === RBRACKET || c === RBRACE) && flowDepth > 0) flowDepth--;
    switch (c) {
      case NL:
      case CR:
        if (content) {
          nodes += counted ? 1 : 2; // see the weights above: a line, or a bare line YAML may read as a key without a value
          if (nodes > maxNodes) throw nodesError(maxNodes, lines, i - lineStart + 1);
        }
        content = false;
        counted = false;
        afterColon = false;
        if (i === n) continue;
        if (c === CR && text.charCodeAt(i + 1) === NL) i++;
        if (++lines > maxLines) throw limitError(`Policy has more than ${fmt(maxLines)} lines (limit: ${LINES_PER_NODE} per allowed node)`, lines, 1);
        lineStart = i + 1;
        continue;
      case SPACE:
      case TAB:
        continue;
      case HASH:
        if (!content) content = counted = true; // a comment line: no node
        continue;
      case LBRACKET:
        // The sequence, an implicit first item, and what error recovery makes of a bare `-` or `:` after it
        // (`[-[-[-…` builds 3.3 nodes per `[`: the property tests found it).
        add = 4;
        counted = true;
        break;
      case LBRACE:
        add = 3;
        counted = true;
        break;
      case COMMA:
        add = 2;
        counted = true;
        break;
      case COLON:
        add = 2;
        counted = true;
        afterColon = true;
        break;
      case RBRACKET:
      case RBRACE:
      case DQUOTE:
      case SQUOTE:
        add = 2; // after a block scalar header (`a: > "x"`) a quoted scalar is recovered as a key with a null value
        break;
      case BANG:
      case AMP:
      case PIPE:
      case GT:
        add = 1;
        break;
      case STAR: {
        const prev = i === 0 ? SPACE : text.charCodeAt(i - 1);
        if (prev === SPACE || prev === TAB || prev === NL || prev === CR || prev === LBRACKET || prev === LBRACE || prev === COMMA) {
          if (++aliases > maxAliases) throw limitError(`Policy has more than ${fmt(maxAliases)} aliases (limit: ${fmt(maxAliases)})`, lines, i - lineStart + 1);
        }
        add = 3;
        break;
      }
      case DASH:
      case QUESTION:
      case DOT: {
        if (i === lineStart && c !== QUESTION && text.charCodeAt(i + 1) === c && text.charCodeAt(i + 2) === c) {
          add = 1; // a document marker (--- or ...)
          counted = true;
          i += 2;
          break;
        }
        content = true;
        if (c === DOT) continue;
        // After an indicator even a lone CR separates (it does not end the line).
        const next = i + 1 < n ? text.charCodeAt(i + 1) : SPACE;
        if (next === SPACE || next === TAB || next === NL || next === CR) {
          // After a `:` on its line (`a: - b`, `a: ? b`), error recovery makes the item a key with a null value.
          add = (c === DASH ? 1 : 3) + (afterColon ? 2 : 0);
          counted = true;
        }
        // Inside a flow collection, error recovery makes a `-` a pair of its own (`[-,-,…` builds 4 nodes an item).
        if (flowBefore || flowDepth > 0) add = Math.max(add, c === DASH ? 2 : 1);
        break;
      }
      default:
        content = true;
        continue;
    }
    content = true;
    nodes += add;
    if (nodes > maxNodes) throw nodesError(maxNodes, lines, i - lineStart + 1);
  }
  return { nodes, lines, aliases };
}

function limitError(message: string, line: number, column: number): PolicyError {
  return new PolicyError('policy_invalid', message, { line, column });
}

function nodesError(maxNodes: number, line: number, column: number): PolicyError {
  return limitError(`Policy has more than ${fmt(maxNodes)} YAML nodes (limit: ${fmt(maxNodes)})`, line, column);
}

export function depthError(maxDepth: number, position: { line: number; column: number }): PolicyError {
  return new PolicyError('policy_invalid', `Policy is nested too deeply: more than ${maxDepth} levels (limit: ${maxDepth})`, position);
}
