/**
 * The audit chain badge: GET /audit/{account}/verify. The API answers once
 * the whole chain is walked (it reports no intermediate progress), so while
 * it runs the badge shows an indeterminate progress bar and the time spent.
 */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, request } from '../api';

interface Verify {
  ok: boolean;
  events: number;
  last_seq: number | null;
  first_bad_seq?: number;
  reason?: string;
  bad_count?: number;
}

type State = { kind: 'running'; started: number } | { kind: 'done'; v: Verify; at: number } | { kind: 'error'; message: string };

export function ChainBadge({ account }: { account: string }) {
  const [state, setState] = useState<State>({ kind: 'running', started: Date.now() });
  const [now, setNow] = useState(Date.now());
  const [run, setRun] = useState(0);

  useEffect(() => {
    const ctl = new AbortController();
    setState({ kind: 'running', started: Date.now() });
    request(`/audit/${encodeURIComponent(account)}/verify`, { allow: [409], signal: ctl.signal })
      .then(async (res) => setState({ kind: 'done', v: (await res.json()) as Verify, at: Date.now() }))
      .catch((err) => {
        if (ctl.signal.aborted) return;
        const message = err instanceof ApiError && (err.status === 403 || err.status === 404) ? 'not permitted to verify' : 'could not be verified';
        setState({ kind: 'error', message });
      });
    return () => ctl.abort();
  }, [account, run]);

  useEffect(() => {
    if (state.kind !== 'running') return;
    const t = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(t);
  }, [state.kind]);

  const again = (
    <button type="button" class="icon small" onClick={() => setRun((r) => r + 1)} aria-label="Verify the chain again" title="Verify again">
      ↻
    </button>
  );
  if (state.kind === 'running') {
    return (
      <div class="badge running" role="status" aria-live="polite">
        Verifying chain… {((now - state.started) / 1000).toFixed(1)} s <progress aria-label="Verifying the audit chain" />
      </div>
    );
  }
  if (state.kind === 'error') {
    return (
      <div class="badge unknown" role="status">
        Chain {state.message} {again}
      </div>
    );
  }
  const v = state.v;
  if (v.ok) {
    return (
      <div class="badge ok" role="status" data-chain="ok" title={`Verified at ${new Date(state.at).toLocaleTimeString()}`}>
        ✓ Chain intact · {v.events} events{v.last_seq !== null ? ` · last #${v.last_seq}` : ''} {again}
      </div>
    );
  }
  return (
    <div class="badge broken" role="alert" data-chain="broken" data-first-bad-seq={v.first_bad_seq}>
      ✗ Chain broken at #{v.first_bad_seq}
      {v.reason ? ` (${v.reason})` : ''}
      {v.bad_count && v.bad_count > 1 ? ` · ${v.bad_count} bad events` : ''} {again}
    </div>
  );
}
