/**
 * Worker-thread entry of the policy parser pool (`parse-pool.ts`): parses
 * each posted policy text and posts back the `ParsedDocument` (structured
 * clone keeps the objects aliases share shared) or the error.
 */
import { parentPort } from 'node:worker_threads';
import { PolicyError } from '../errors.js';
import type { PolicyLimits } from './limits.js';
import { parsePolicy } from './parse.js';

export interface ParseJob {
  id: number;
  text: string;
  limits: PolicyLimits;
}

export type PolicyErrorCode = ConstructorParameters<typeof PolicyError>[0];

export type ParseReply =
  | { id: number; ok: true; doc: ReturnType<typeof parsePolicy> }
  | { id: number; ok: false; policyError: { code: PolicyErrorCode; message: string; line?: number; column?: number } }
  | { id: number; ok: false; internal: string };

const port = parentPort;
if (port) {
  port.on('message', (job: ParseJob) => {
    let reply: ParseReply;
    try {
      reply = { id: job.id, ok: true, doc: parsePolicy(job.text, job.limits) };
    } catch (err) {
      if (err instanceof PolicyError) {
        const policyError = { code: err.code as PolicyErrorCode, message: err.message, line: err.line, column: err.column };
        reply = { id: job.id, ok: false, policyError };
      } else {
        reply = { id: job.id, ok: false, internal: err instanceof Error ? (err.stack ?? err.message) : String(err) };
      }
    }
    port.postMessage(reply);
  });
  port.postMessage({ ready: true });
}
