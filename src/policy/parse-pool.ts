/**
 * Policy parsing off the event loop (issue 9 item 4): a pool of one worker
 * thread parses policy texts one at a time, so a large legitimate policy
 * (20,000 variables: seconds of YAML work) never stalls other requests, and
 * a hostile one is bounded three ways:
 * - `prescanPolicy` runs here first (linear, no allocation per character),
 *   so a body over the node, line or alias limit never reaches the worker;
 * - the worker refuses nesting past `maxDepth` while tokenizing;
 * - the worker's heap is capped (`resourceLimits`): a policy that still
 *   needs more memory kills only the worker, which is answered as a 413
 *   and replaced; the server process is never at risk.
 * Waiting parses are bounded too (503 with Retry-After beyond `maxQueue`).
 *
 * The worker file is `parse-worker.js` next to this module (dist/ in
 * production). When this module runs from its TypeScript source (vitest
 * imports src/), there is no .js file beside it: the worker then starts from
 * a small bootstrap that registers module hooks transpiling the .ts sources
 * with the `typescript` dev dependency, so tests exercise the same worker
 * code, in a real thread, as production.
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CofferError, PolicyError } from '../errors.js';
import { prescanPolicy, type PolicyLimits } from './limits.js';
import type { ParsedDocument } from './parse.js';
import type { ParseJob, ParseReply } from './parse-worker.js';

export interface ParsePoolOptions {
  /** Heap cap of the parser worker (old generation), in MB. */
  memoryMb: number;
  /** Parses allowed to wait for the worker; more are refused with 503. */
  maxQueue: number;
}

export const DEFAULT_PARSE_POOL_OPTIONS: Readonly<ParsePoolOptions> = { memoryMb: 512, maxQueue: 16 };

interface Pending {
  job: ParseJob;
  resolve: (doc: ParsedDocument) => void;
  reject: (err: unknown) => void;
}

/** Module hooks for running the worker from TypeScript sources (tests); see the module comment. */
const TS_HOOKS = `
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
let ts;
export function initialize(data) { ts = createRequire(data.root)('typescript'); }
export async function resolve(specifier, context, next) {
  const parent = context.parentURL;
  if (parent && parent.startsWith('file:') && parent.endsWith('.ts') && specifier.startsWith('.') && specifier.endsWith('.js')) {
    const js = new URL(specifier, parent);
    const tsUrl = new URL(js.href.slice(0, -3) + '.ts');
    if (!existsSync(fileURLToPath(js)) && existsSync(fileURLToPath(tsUrl))) return { url: tsUrl.href, shortCircuit: true };
  }
  return next(specifier, context);
}
export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  const out = ts.transpileModule(readFileSync(fileURLToPath(url), 'utf8'), {
    fileName: fileURLToPath(url),
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true },
  });
  return { format: 'module', source: out.outputText, shortCircuit: true };
}
`;

const TS_BOOTSTRAP = `
import { register } from 'node:module';
import { workerData } from 'node:worker_threads';
register(workerData.hooks, { data: { root: workerData.root } });
await import(workerData.entry);
`;

const dataUrl = (code: string): URL => new URL(`data:text/javascript,${encodeURIComponent(code)}`);

function spawnWorker(memoryMb: number): Worker {
  const resourceLimits = { maxOldGenerationSizeMb: memoryMb, maxYoungGenerationSizeMb: Math.min(64, Math.max(8, memoryMb >> 4)) };
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./parse-worker.js', here), { resourceLimits });
  const root = dirname(fileURLToPath(here));
  return new Worker(dataUrl(TS_BOOTSTRAP), {
    resourceLimits,
    workerData: { hooks: dataUrl(TS_HOOKS).href, root: `${root}/`, entry: new URL('./parse-worker.ts', here).href },
  });
}

export class PolicyParsePool {
  private worker?: Worker;
  private ready = false;
  private current?: Pending;
  private readonly queue: Pending[] = [];
  private nextId = 1;
  /** Workers started so far (a replaced worker counts again); for tests. */
  workersStarted = 0;

  constructor(readonly options: ParsePoolOptions = DEFAULT_PARSE_POOL_OPTIONS) {}

  /** Whether the worker has a policy in hand right now. */
  get parsing(): boolean {
    return this.current !== undefined;
  }

  /**
   * Parses `text` in the worker. Throws `PolicyError` (422) for invalid or
   * over-limit policies, exactly as `parsePolicy` would; `payload_too_large`
   * (413) when the worker runs out of memory; `service_unavailable` (503)
   * when too many parses are waiting.
   */
  parse(text: string, limits: PolicyLimits): Promise<ParsedDocument> {
    try {
      prescanPolicy(text, limits);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.queue.length >= this.options.maxQueue) {
      return Promise.reject(
        new CofferError('service_unavailable', `The policy parser is busy (${this.options.maxQueue} policies waiting); retry later`, { retryAfter: 1 }),
      );
    }
    return new Promise<ParsedDocument>((resolve, reject) => {
      this.queue.push({ job: { id: this.nextId++, text, limits }, resolve, reject });
      this.pump();
    });
  }

  /** Stops the worker; waiting parses fail. */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.ready = false;
    const gone = new CofferError('service_unavailable', 'The policy parser was stopped', { retryAfter: 1 });
    for (const p of this.queue.splice(0)) p.reject(gone);
    this.current?.reject(gone);
    this.current = undefined;
    if (w) await w.terminate();
  }

  private pump(): void {
    if (this.current) return;
    if (this.queue.length === 0) {
      this.worker?.unref(); // idle: the worker does not keep the process alive
      return;
    }
    const w = this.worker ?? this.start();
    w.ref();
    if (!this.ready) return; // `ready` pumps again
    this.current = this.queue.shift()!;
    w.postMessage(this.current.job);
  }

  private start(): Worker {
    const w = spawnWorker(this.options.memoryMb);
    this.workersStarted++;
    this.worker = w;
    this.ready = false;
    w.on('message', (msg: ParseReply | { ready: true }) => {
      if (w !== this.worker) return;
      if ('ready' in msg) {
        this.ready = true;
        this.pump();
        return;
      }
      const p = this.current;
      if (!p || p.job.id !== msg.id) return;
      this.current = undefined;
      if (msg.ok) p.resolve(msg.doc);
      else if ('policyError' in msg) {
        const e = msg.policyError;
        p.reject(new PolicyError(e.code, e.message, e.line === undefined ? undefined : { line: e.line, column: e.column }));
      } else p.reject(new Error(`policy parser worker failed: ${msg.internal}`));
      this.pump();
    });
    w.on('error', (err) => this.died(w, err));
    w.on('exit', (code) => this.died(w, new Error(`policy parser worker exited with code ${code}`)));
    return w;
  }

  /** The worker died (out of memory, or crashed): fail its parse clearly, start afresh for the next. */
  private died(w: Worker, err: unknown): void {
    if (w !== this.worker) return;
    this.worker = undefined;
    this.ready = false;
    const p = this.current;
    this.current = undefined;
    void w.terminate();
    const oom = (err as { code?: string }).code === 'ERR_WORKER_OUT_OF_MEMORY';
    const failure = oom
      ? new CofferError(
          'payload_too_large',
          `Policy is too large to parse within the parser's memory limit of ${this.options.memoryMb} MB (COFFER_POLICY_PARSE_MEMORY_MB)`,
          { cause: err },
        )
      : new Error('policy parser worker died', { cause: err });
    if (p) p.reject(failure);
    else for (const q of this.queue.splice(0)) q.reject(failure); // could not even start
    this.pump();
  }
}

const shared = new Map<string, PolicyParsePool>();

/** One pool per process and option set (servers in one process share it; the idle worker does not keep the process alive). */
export function sharedParsePool(options: ParsePoolOptions = DEFAULT_PARSE_POOL_OPTIONS): PolicyParsePool {
  const key = `${options.memoryMb}/${options.maxQueue}`;
  let pool = shared.get(key);
  if (!pool) {
    pool = new PolicyParsePool(options);
    shared.set(key, pool);
  }
  return pool;
}
