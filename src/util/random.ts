/**
 * Seedable randomness for synthetic weights (towers, projectors, LLMs): deterministic across runs and
 * platforms so synthesised files are byte-identical for a given seed.
 */

/** mulberry32: tiny and good enough for test weights. Returns uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a of a tensor name mixed with a seed: each tensor gets its own stream, independent of order. */
export function hashName(name: string, seed: number): number {
  let h = 2166136261 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** n normal samples (Box–Muller, pairs) with the given mean and std. */
export function gaussianArray(n: number, mean: number, std: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const m = Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12)));
    const a = 2 * Math.PI * r();
    out[i] = mean + std * m * Math.cos(a);
    if (i + 1 < n) out[i + 1] = mean + std * m * Math.sin(a);
  }
  return out;
}
