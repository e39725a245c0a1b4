/**
 * EVA02 2D RoPE on a toy grid, against eva_clip's formula written out literally in float64:
 * freqs = theta^(-arange(0, D/2, 2)/(D/2)) repeated twice interleaved; dims [0, D/2) take row angles,
 * [D/2, D) column angles; out = x·cos + rotate_half(x)·sin with rotate_half pairing adjacent dims;
 * CLS (token 0) untouched.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { OnnxGraph } from '../../src/onnx/graph.js';
import { applyRope, halvesOrder, ropeTables } from '../../src/vision/graph-eva.js';
import type { RopeSpec } from '../../src/vision/spec.js';
import { cleanupTempDirs, maxAbsDiff, randn, rng, runModel, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

function ropeReference(x: Float32Array, batch: number, grid: number, heads: number, D: number, rope: RopeSpec): Float64Array {
  const T = grid * grid + 1;
  const half = D / 2;
  const freqs: number[] = [];
  for (let i = 0; i < half; i += 2) freqs.push(rope.theta ** -(i / half));
  const t = Array.from({ length: grid }, (_, i) => (rope.intpFreq ? (i / grid) * rope.ptHwSeqLen : i));
  const out = Float64Array.from(x);
  for (let b = 0; b < batch; b++) {
    for (let tok = 1; tok < T; tok++) {
      const r = Math.floor((tok - 1) / grid);
      const c = (tok - 1) % grid;
      const angle = (d: number) => (d < half ? t[r] * freqs[Math.floor(d / 2)] : t[c] * freqs[Math.floor((d - half) / 2)]);
      for (let h = 0; h < heads; h++) {
        const base = (b * T + tok) * heads * D + h * D;
        for (let d = 0; d < D; d++) {
          const rot = d % 2 === 0 ? -x[base + d + 1] : x[base + d - 1];
          out[base + d] = x[base + d] * Math.cos(angle(d)) + rot * Math.sin(angle(d));
        }
      }
    }
  }
  return out;
}

describe('2D RoPE', () => {
  const cases: { name: string; grid: number; D: number; rope: RopeSpec }[] = [
    { name: 'intp_freq, grid 3 → pt 16, head dim 8', grid: 3, D: 8, rope: { ptHwSeqLen: 16, intpFreq: true, theta: 10000 } },
    { name: 'no intp_freq, grid == pt 4, head dim 16', grid: 4, D: 16, rope: { ptHwSeqLen: 4, intpFreq: false, theta: 10000 } },
    { name: 'intp_freq, grid 5 → pt 3, theta 100, head dim 4', grid: 5, D: 4, rope: { ptHwSeqLen: 3, intpFreq: true, theta: 100 } },
  ];
  for (const c of cases) {
    test(`${c.name}: matches the formula within 2e-6`, async () => {
      const heads = 3;
      const batch = 2;
      const T = c.grid * c.grid + 1;
      const W = heads * c.D;
      const tables = ropeTables(c.grid, c.D, c.rope);
      const g = new OnnxGraph({ onnxPath: join(tempDir(), 'rope.onnx') });
      const x = g.input('x', ['n', W]);
      const cos = g.weight('cos', tables.cos, [T, 1, 2, c.D / 2]);
      const sin = g.weight('sin', tables.sin, [T, 1, 2, c.D / 2]);
      g.output(g.reshape(applyRope(g, x, T, heads, c.D, cos, sin), [-1, W]), 'y', ['n', W]);
      const { onnxFile } = await g.finish();

      const data = randn(rng(11), batch * T * W);
      // The builder feeds RoPE halves-ordered q/k; permute in, run, permute back.
      const order = halvesOrder(heads, c.D);
      const permuted = new Float32Array(data.length);
      for (let r = 0; r < batch * T; r++) for (let j = 0; j < W; j++) permuted[r * W + j] = data[r * W + order[j]];
      const { y } = await runModel(onnxFile, { x: { data: permuted, dims: [batch * T, W] } });
      const back = new Float32Array(y.data.length);
      for (let r = 0; r < batch * T; r++) for (let j = 0; j < W; j++) back[r * W + order[j]] = y.data[r * W + j];

      const ref = ropeReference(data, batch, c.grid, heads, c.D, c.rope);
      expect(maxAbsDiff(back, ref)).toBeLessThan(2e-6);
      // CLS rows come through bit-exact.
      for (let b = 0; b < batch; b++) for (let j = 0; j < W; j++) expect(back[b * T * W + j]).toBe(data[b * T * W + j]);
    });
  }

  test('rejects a grid that needs interpolation when intp_freq is off, and head dims not divisible by 4', () => {
    expect(() => ropeTables(3, 8, { ptHwSeqLen: 4, intpFreq: false, theta: 10000 })).toThrow(/pt_hw_seq_len/);
    expect(() => ropeTables(3, 6, { ptHwSeqLen: 3, intpFreq: true, theta: 10000 })).toThrow(/divisible by 4/);
  });
});
