/**
 * Small Python semantics the official scoring scripts rely on, reproduced exactly: `str.strip()` /
 * `str.split()` whitespace, `round(x, n)` and `str.rstrip(chars)`.
 */

/** The characters Python's str.isspace() accepts (str.strip() / str.split() with no argument). */
const PY_WS = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_WS_RUN = new RegExp(`[${PY_WS}]+`);
const PY_STRIP = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, 'g');

/** Python `s.strip()`. (JS trim() also strips U+FEFF and not U+001C–U+001F / U+0085.) */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, '');
}

/** Python `s.split()`: runs of whitespace separate, no empty fields. */
export function pySplit(s: string): string[] {
  return s.split(PY_WS_RUN).filter((w) => w.length > 0);
}

/** Python `s.rstrip(chars)`. */
export function pyRstrip(s: string, chars: string): string {
  let end = s.length;
  while (end > 0 && chars.includes(s[end - 1]!)) end--;
  return s.slice(0, end);
}

/**
 * Python 2.7's `round(x, n)`: the exact binary value rounded to n decimals, halves away from zero
 * (vqaEval.py master is Python 2 code). Number#toFixed is specified on the exact value with ties
 * going up, which is the same thing for x >= 0; negative values are mirrored.
 * (Python 3 would round exact halves to even: 3.125 → 3.12 instead of 3.13.)
 */
export function pyRound(x: number, n = 2): number {
  if (!Number.isFinite(x)) return x;
  if (x < 0) return -pyRound(-x, n);
  return Number(x.toFixed(n));
}

/** Left-to-right float sum from 0, as Python's built-in sum() before 3.12 (no compensation). */
export function pySum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

/** The first `n` code points of s (Python's `s[:n]`; JS slice counts UTF-16 units). */
export function pyPrefix(s: string, n: number): string {
  let out = '';
  let i = 0;
  for (const ch of s) {
    if (i++ >= n) break;
    out += ch;
  }
  return out;
}
