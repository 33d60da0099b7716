/**
 * The parser worker pool answers exactly as `parsePolicy` on the calling
 * thread: the same documents (objects shared through aliases still shared)
 * and the same errors with the same line and column; it runs in a real
 * worker thread (from the TypeScript sources here, from dist/ in production).
 */
import { describe, it, expect, afterAll } from 'vitest';
import { PolicyError } from '../../src/errors.js';
import { DEFAULT_POLICY_LIMITS, type PolicyLimits } from '../../src/policy/limits.js';
import { parsePolicy, type ParsedGrant, type ParsedRecord } from '../../src/policy/parse.js';
import { PolicyParsePool } from '../../src/policy/parse-pool.js';

const pool = new PolicyParsePool({ memoryMb: 256, maxQueue: 2 });
afterAll(() => pool.close());

const SMALL: PolicyLimits = { maxNodes: 200, maxDepth: 6, maxAliases: 3 };

async function both(text: string, limits: PolicyLimits = DEFAULT_POLICY_LIMITS) {
  let local: unknown;
  try {
    local = parsePolicy(text, limits);
  } catch (err) {
    local = err;
  }
  let remote: unknown;
  try {
    remote = await pool.parse(text, limits);
  } catch (err) {
    remote = err;
  }
  return { local, remote };
}

describe('PolicyParsePool', () => {
  it.each([
    ['a valid policy', '- !user alice\n- !group g\n- !grant {role: !group g, member: !user alice}\n- !variable\n  id: db\n  annotations: {team: x}\n', DEFAULT_POLICY_LIMITS],
    ['a YAML syntax error', "- !user 'alice\n", DEFAULT_POLICY_LIMITS],
    ['an unknown tag', '- !!set {a, b}\n', DEFAULT_POLICY_LIMITS],
    ['too many nodes', '- a\n'.repeat(300), SMALL],
    ['too deep', '['.repeat(50) + ']'.repeat(50), SMALL],
    ['too many aliases', '- &a !user a\n- *a\n- *a\n- *a\n- *a\n', SMALL],
    ['an attribute error', '- !user\n  id: a\n  nope: 1\n', DEFAULT_POLICY_LIMITS],
  ])('answers %s exactly as parsePolicy does', async (_name, text, limits) => {
    const { local, remote } = await both(text, limits);
    if (local instanceof PolicyError) {
      expect(remote).toBeInstanceOf(PolicyError);
      const r = remote as PolicyError;
      expect({ code: r.code, message: r.message, line: r.line, column: r.column }).toEqual({ code: local.code, message: local.message, line: local.line, column: local.column });
    } else {
      expect(remote).toEqual(local);
    }
    expect(pool.workersStarted).toBe(1); // one worker, reused, never crashed by any of these
  });

  it('keeps objects shared through aliases shared', async () => {
    const doc = await pool.parse('- &g !group g\n- !grant {role: *g, member: !user a}\n', DEFAULT_POLICY_LIMITS);
    const group = doc.statements[0] as ParsedRecord;
    expect((doc.statements[1] as ParsedGrant).roles[0]).toBe(group);
  });

  it('refuses an over-limit policy on the calling thread, before it reaches the worker', async () => {
    const before = pool.parsing;
    const pending = pool.parse('- a\n'.repeat(300), SMALL);
    expect(pool.parsing).toBe(before); // nothing was handed to the worker
    await expect(pending).rejects.toThrow('Policy has more than 200 YAML nodes (limit: 200)');
  });

  it('refuses parses beyond the queue bound with 503, and answers the others', async () => {
    const text = '- !user a\n';
    const results = await Promise.allSettled([pool.parse(text, DEFAULT_POLICY_LIMITS), pool.parse(text, DEFAULT_POLICY_LIMITS), pool.parse(text, DEFAULT_POLICY_LIMITS), pool.parse(text, DEFAULT_POLICY_LIMITS)]);
    const refused = results.filter((r) => r.status === 'rejected');
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const r of refused) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'service_unavailable', retryAfter: 1 });
    for (const r of results.filter((x) => x.status === 'fulfilled')) expect((r as PromiseFulfilledResult<{ statements: unknown[] }>).value.statements).toHaveLength(1);
  });
});
