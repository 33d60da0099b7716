/** Durations (`90s`, `15m`, `1h30m`, `2d`) and times as users type them. */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Milliseconds, or undefined when `text` is not a duration like 30s, 15m, 1h30m, 2d. */
export function parseDuration(text: string): number | undefined {
  if (!/^(\d+(ms|s|m|h|d|w))+$/.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(/(\d+)(ms|s|m|h|d|w)/g)) total += Number(m[1]) * UNIT_MS[m[2]!]!;
  return total;
}

/** A duration ago (`1h`) or an absolute time (anything Date.parse accepts) as ISO 8601, or undefined. */
export function parseTime(text: string, now = Date.now()): string | undefined {
  const d = parseDuration(text);
  if (d !== undefined) return new Date(now - d).toISOString();
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}
