/** Fetches and failures per bucket, drawn as an SVG bar chart (GET /audit/{account}/histogram). */
import { getJson, qs } from '../api';
import { ErrorBox, useAsync } from './common';

export interface Bucket {
  start: string;
  fetches: number;
  fetch_failures: number;
  failures: number;
  total: number;
}

interface Histogram {
  bucket: 'minute' | 'hour' | 'day';
  since: string;
  until: string;
  buckets: Bucket[];
}

export type BucketSize = 'minute' | 'hour' | 'day';
const SIZE_MS: Record<BucketSize, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/** The finest bucket giving at most ~240 bars over the range. */
export function bucketFor(sinceMs: number, untilMs: number): BucketSize {
  const span = Math.max(0, untilMs - sinceMs);
  if (span / SIZE_MS.minute <= 240) return 'minute';
  if (span / SIZE_MS.hour <= 240) return 'hour';
  return 'day';
}

export interface TimelineProps {
  account: string;
  /** The audit filters besides time (resource, role, action, result, q). */
  filters: Record<string, string | undefined>;
  since: string;
  until: string;
  /** Changing it reloads the chart (live mode). */
  refresh?: number;
  onPick?: (since: string, until: string) => void;
}

const W = 720;
const H = 140;
const PAD = { l: 36, r: 8, t: 8, b: 22 };

export function Timeline({ account, filters, since, until, refresh, onPick }: TimelineProps) {
  const bucket = bucketFor(Date.parse(since), Date.parse(until));
  const state = useAsync(
    (signal) => getJson<Histogram>(`/audit/${encodeURIComponent(account)}/histogram${qs({ ...filters, bucket, since, until })}`, { signal }),
    [account, JSON.stringify(filters), since, until, bucket, refresh],
  );
  const h = state.data;
  if (state.error && !h) {
    return (
      <figure class="timeline">
        <figcaption>Timeline</figcaption>
        <ErrorBox error={state.error} />
      </figure>
    );
  }
  if (!h) return <figure class="timeline" aria-busy="true"><figcaption>Timeline (loading…)</figcaption></figure>;
  const n = h.buckets.length;
  const max = Math.max(1, ...h.buckets.map((b) => Math.max(b.fetches, b.failures)));
  const plotW = W - PAD.l - PAD.r;
  const plotH = H - PAD.t - PAD.b;
  const bw = n > 0 ? plotW / n : plotW;
  const y = (v: number) => PAD.t + plotH - (v / max) * plotH;
  const totals = h.buckets.reduce((a, b) => ({ fetches: a.fetches + b.fetches, failures: a.failures + b.failures }), { fetches: 0, failures: 0 });
  const label = (iso: string) => {
    const d = new Date(iso);
    return h.bucket === 'day' ? d.toLocaleDateString() : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  };
  const ticks = n > 0 ? [0, Math.floor(n / 2), n - 1] : [];
  return (
    <figure class="timeline">
      <figcaption>
        Fetches and failures per {h.bucket}: <strong>{totals.fetches}</strong> fetches, <strong>{totals.failures}</strong> failures
        <span class="legend">
          <span class="swatch fetch" aria-hidden="true" /> fetches <span class="swatch fail" aria-hidden="true" /> failures
        </span>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`Bar chart: ${totals.fetches} fetches and ${totals.failures} failures per ${h.bucket} from ${h.since} to ${h.until}`} preserveAspectRatio="none">
        <line class="axis" x1={PAD.l} x2={W - PAD.r} y1={PAD.t + plotH} y2={PAD.t + plotH} />
        <text class="tick" x={PAD.l - 4} y={PAD.t + 8} text-anchor="end">
          {max}
        </text>
        <text class="tick" x={PAD.l - 4} y={PAD.t + plotH} text-anchor="end">
          0
        </text>
        {h.buckets.map((b, i) => {
          const x = PAD.l + i * bw;
          const w = Math.max(1, bw * 0.8);
          const pick = () => onPick?.(b.start, new Date(Date.parse(b.start) + SIZE_MS[h.bucket]).toISOString());
          return (
            <g key={b.start} class="bar" onClick={pick}>
              <title>{`${b.start}: ${b.fetches} fetches (${b.fetch_failures} failed), ${b.failures} failures, ${b.total} events`}</title>
              <rect class="fetch" x={x} width={w / 2} y={y(b.fetches)} height={PAD.t + plotH - y(b.fetches)} />
              <rect class="fail" x={x + w / 2} width={w / 2} y={y(b.failures)} height={PAD.t + plotH - y(b.failures)} />
            </g>
          );
        })}
        {ticks.map((i, k) => (
          <text class="tick" x={PAD.l + i * bw + (k === 0 ? 0 : k === ticks.length - 1 ? bw : bw / 2)} y={H - 6} text-anchor={k === 0 ? 'start' : k === ticks.length - 1 ? 'end' : 'middle'}>
            {label(h.buckets[i]!.start)}
          </text>
        ))}
      </svg>
    </figure>
  );
}
