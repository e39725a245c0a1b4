/**
 * Small Python semantics the official scoring scripts rely on, reproduced exactly: `str.strip()` /
 * `str.split()` whitespace, `round(x, n)` and `str.rstrip(chars)`, `unicode.lower()`. vqaEval.py master is
 * Python 2 code (the `py2*` helpers); LLaVA's scripts are Python 3.
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

/** Python 2.7 `unicode.isspace()` (Unicode 5.2): Python 3's set plus U+180E MONGOLIAN VOWEL SEPARATOR. */
const PY2_WS = `${PY_WS}\\u180e`;
const PY2_WS_RUN = new RegExp(`[${PY2_WS}]+`);
const PY2_STRIP = new RegExp(`^[${PY2_WS}]+|[${PY2_WS}]+$`, 'g');

/** Python 2.7 `u.strip()`. */
export function py2Strip(s: string): string {
  return s.replace(PY2_STRIP, '');
}

/** Python 2.7 `u.split()`. */
export function py2Split(s: string): string[] {
  return s.split(PY2_WS_RUN).filter((w) => w.length > 0);
}

/**
 * Python 2.7 `u.lower()`: each code point's simple lowercase mapping, with no context. JS toLowerCase
 * differs in two places: U+0130 İ becomes "i̇" (two code points; Python 2: "i"), and a capital sigma at
 * the end of a word becomes final ς (Python 2: σ). Case mappings added after Unicode 5.2 still follow JS.
 */
export function py2Lower(s: string): string {
  let out = '';
  for (const ch of s) out += ch === '\u0130' ? 'i' : ch.toLowerCase();
  return out;
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

/**
 * Python 3's `round(x, n)` and `'{:.nf}'.format(x)` (LLaVA's scripts): the exact binary value rounded to n
 * decimals, exact halves to even (3.125 → 3.12; 2.675 is stored as 2.67499999999999982236… → 2.67).
 */
export function py3Round(x: number, n = 2): number {
  if (!Number.isFinite(x)) return x;
  if (x < 0) return -py3Round(-x, n);
  if (x >= 1e20) return x;
  const exact = x.toFixed(100); // the exact decimal expansion of the double (≤ 100 digits needed here)
  const point = exact.indexOf('.');
  const rest = exact.slice(point + 1 + n);
  const tie = rest[0] === '5' && /^0*$/.test(rest.slice(1));
  if (!tie) return Number(x.toFixed(n));
  const kept = exact.slice(0, n === 0 ? point : point + 1 + n);
  const last = Number(kept[kept.length - 1]);
  return last % 2 === 0 ? Number(kept) : Number(x.toFixed(n));
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
