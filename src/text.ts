/**
 * Whether any string in `value` (a parsed JSON or policy document: nested
 * objects and arrays, keys included) is ill-formed UTF-16 — a lone surrogate,
 * which a JSON or YAML `\ud800` escape can make and no UTF-8 store can hold.
 * Iterative: parsed documents can nest deeper than the call stack.
 */
export function hasIllFormedString(value: unknown): boolean {
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const v = pending.pop();
    if (typeof v === 'string') {
      if (!v.isWellFormed()) return true;
    } else if (v !== null && typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) pending.push(k, item);
    }
  }
  return false;
}

/** Whether any string in `value` (keys included, walked like hasIllFormedString) holds U+0000. */
export function hasNulString(value: unknown): boolean {
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const v = pending.pop();
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return true;
    } else if (v !== null && typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) pending.push(k, item);
    }
  }
  return false;
}
