/** Token lifetimes from the `authn/token-ttl` annotation: seconds, or an ISO 8601 duration. */

const ISO_DURATION = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/i;

/** Returns seconds, or undefined when the text is neither form (the default TTL then applies). */
export function parseTokenTtl(text: string): number | undefined {
  const t = text.trim();
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    return n > 0 ? n : undefined;
  }
  const m = ISO_DURATION.exec(t);
  if (!m || t === 'P' || /T$/i.test(t)) return undefined;
  const [, d, h, min, s] = m;
  const seconds = Number(d ?? 0) * 86400 + Number(h ?? 0) * 3600 + Number(min ?? 0) * 60 + Math.floor(Number(s ?? 0));
  return seconds > 0 ? seconds : undefined;
}
