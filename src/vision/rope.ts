/**
 * eva_clip's VisionRotaryEmbeddingFast tables in the layout its state dict stores them
 * (`rope.freqs_cos` / `rope.freqs_sin`, [G², head_dim]): per head dim j < D/2 the row angle, j ≥ D/2
 * the column angle, each frequency repeated for an adjacent pair. Used to check stored tables against
 * the config (they are the only RoPE evidence inside a checkpoint) and to write realistic synthetic ones.
 */
import type { RopeSpec } from './spec.js';

export function officialRopeTables(rope: RopeSpec, grid: number, headDim: number): { cos: Float64Array; sin: Float64Array } {
  if (headDim % 4 !== 0) throw new RangeError(`RoPE needs a head dim divisible by 4, got ${headDim}`);
  if (!rope.intpFreq && grid !== rope.ptHwSeqLen) throw new RangeError(`RoPE without intp_freq needs grid ${grid} == pt_hw_seq_len ${rope.ptHwSeqLen}`);
  const dim = headDim / 2;
  const freq = (i: number) => 1 / rope.theta ** ((2 * i) / dim);
  const pos = (i: number) => (rope.intpFreq ? (i / grid) * rope.ptHwSeqLen : i);
  const cos = new Float64Array(grid * grid * headDim);
  const sin = new Float64Array(grid * grid * headDim);
  for (let r = 0; r < grid; r++) {
    for (let c = 0; c < grid; c++) {
      const base = (r * grid + c) * headDim;
      for (let j = 0; j < headDim; j++) {
        const angle = j < dim ? pos(r) * freq(Math.floor(j / 2)) : pos(c) * freq(Math.floor((j - dim) / 2));
        cos[base + j] = Math.cos(angle);
        sin[base + j] = Math.sin(angle);
      }
    }
  }
  return { cos, sin };
}

/** Largest |stored − expected| over a table. */
export function maxAbsDiff(stored: Float32Array, expected: Float64Array): number {
  if (stored.length !== expected.length) return Infinity;
  let m = 0;
  for (let i = 0; i < stored.length; i++) m = Math.max(m, Math.abs(stored[i]! - expected[i]!));
  return m;
}
