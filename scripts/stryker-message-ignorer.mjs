/**
 * Stryker ignorer `error-messages`: skips mutants inside the human-readable
 * text of errors and audit events — string and template literals passed to
 * the error helpers of src/errors.ts (argumentError, forbidden, unauthorized,
 * unprocessable, notFound, badRequest, invalidToken, `new Error`, and the
 * message of `new CofferError`/`PolicyError`, not its code), and the values
 * of `message`, `auditReason` and `reason` properties. Changing that text
 * changes no security decision; the status code, the error code and every
 * condition around the throw are still mutated. Ignored mutants are listed
 * in Stryker's reports as "Ignored" with this reason.
 */
import { PluginKind, declareValuePlugin } from '@stryker-mutator/api/plugin';

const MESSAGE_CALLS = new Set([
  'argumentError', 'forbidden', 'unauthorized', 'unprocessable', 'notFound', 'badRequest', 'invalidToken', 'Error', 'TypeError', 'RangeError',
]);
/** Constructors whose first argument is a code that decides the status: only the later arguments are text. */
const CODED_CALLS = new Set(['CofferError', 'PolicyError']);
const MESSAGE_KEYS = new Set(['message', 'auditReason', 'reason']);
const REASON = 'error or audit message text (scripts/stryker-message-ignorer.mjs)';

const isText = (node) => node.type === 'StringLiteral' || node.type === 'TemplateLiteral';
const calleeName = (call) => (call.callee.type === 'Identifier' ? call.callee.name : undefined);
const keyName = (prop) => (prop.key.type === 'Identifier' ? prop.key.name : prop.key.type === 'StringLiteral' ? prop.key.value : undefined);

export const strykerPlugins = [
  declareValuePlugin(PluginKind.Ignore, 'error-messages', {
    shouldIgnore(path) {
      const { node, parent } = path;
      if (!isText(node) || !parent) return undefined;
      if (parent.type === 'CallExpression' || parent.type === 'NewExpression') {
        const name = calleeName(parent);
        const index = parent.arguments.indexOf(node);
        if (MESSAGE_CALLS.has(name) && index >= 0) return REASON;
        if (CODED_CALLS.has(name) && index >= 1) return REASON;
      }
      if (parent.type === 'ObjectProperty' && parent.value === node && MESSAGE_KEYS.has(keyName(parent))) return REASON;
      return undefined;
    },
  }),
];
