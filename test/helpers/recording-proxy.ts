/**
 * A loopback HTTP proxy in front of the test server that records every
 * request (method, path, Authorization header) and can hold a response back.
 * It lets e2e tests count the requests a CLI makes and capture the access
 * token it sends, without any test hook in src/.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  /** Path and query as sent. */
  path: string;
  authorization?: string;
  status?: number;
}

export interface RecordingProxy {
  url: string;
  requests: RecordedRequest[];
  /** Delay the upstream response of requests whose path matches, in ms. */
  delay: { pattern: RegExp; ms: number } | undefined;
  /** Resolves when a request whose path matches `pattern` is among `requests[since…]`. */
  waitFor(pattern: RegExp, since: number, timeoutMs?: number): Promise<RecordedRequest>;
  close(): Promise<void>;
}

export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const upstream = new URL(target);
  const requests: RecordedRequest[] = [];
  const waiters: { pattern: RegExp; resolve: (r: RecordedRequest) => void }[] = [];
  const state: { delay: RecordingProxy['delay'] } = { delay: undefined };

  const server = http.createServer((req, res) => {
    const record: RecordedRequest = { method: req.method ?? '', path: req.url ?? '' };
    if (typeof req.headers.authorization === 'string') record.authorization = req.headers.authorization;
    requests.push(record);
    for (const w of [...waiters]) {
      if (w.pattern.test(record.path)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(record);
      }
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const forward = () => {
        const out = http.request(
          { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
          (up) => {
            record.status = up.statusCode;
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        out.on('error', () => {
          res.writeHead(502);
          res.end();
        });
        out.end(Buffer.concat(chunks));
      };
      const delay = state.delay;
      if (delay && delay.pattern.test(record.path)) setTimeout(forward, delay.ms);
      else forward();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    get delay() {
      return state.delay;
    },
    set delay(d) {
      state.delay = d;
    },
    waitFor(pattern, since, timeoutMs = 10_000) {
      const seen = requests.slice(since).find((r) => pattern.test(r.path));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no request matching ${pattern} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          pattern,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
        });
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
