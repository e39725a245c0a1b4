/** Small graphs built with OnnxGraph, run in onnxruntime-node, checked against float64 loops. */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { OnnxGraph, toFloat16Bits } from '../../src/onnx/graph.js';
import { attention, toHeads } from '../../src/vision/graph-blocks.js';
import { cleanupTempDirs, erf64, layerNorm64, maxAbs, maxAbsDiff, randn, rng, runModel, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

function graph(): OnnxGraph {
  return new OnnxGraph({ onnxPath: join(tempDir(), 'm.onnx') });
}

describe('element-wise and normalisation ops', () => {
  test('LayerNormalization (eps 1e-5 and 1e-6) matches float64 within 2e-6', async () => {
    const rand = rng(1);
    for (const eps of [1e-5, 1e-6]) {
      const g = graph();
      const n = 48;
      const gamma = randn(rand, n, 0.2, 1);
      const beta = randn(rand, n, 0.2);
      const x = g.input('x', ['rows', n]);
      g.output(g.layerNorm(x, g.weight('g', gamma, [n]), g.weight('b', beta, [n]), eps), 'y', ['rows', n]);
      const { onnxFile } = await g.finish();
      const data = randn(rand, 5 * n, 2, 0.5);
      const { y } = await runModel(onnxFile, { x: { data, dims: [5, n] } });
      expect(maxAbsDiff(y.data, layerNorm64(data, n, gamma, beta, eps))).toBeLessThan(2e-6);
    }
  });

  test('exact GELU, QuickGELU and SiLU match float64 within 1e-6 on [-4, 4]', async () => {
    const g = graph();
    const x = g.input('x', [801]);
    g.output(g.gelu(x), 'gelu', [801]);
    g.output(g.quickGelu(x), 'quick', [801]);
    g.output(g.silu(x), 'silu', [801]);
    const { onnxFile } = await g.finish();
    const data = Float32Array.from({ length: 801 }, (_, i) => -4 + i / 100);
    const out = await runModel(onnxFile, { x: { data, dims: [801] } });
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    const xs = [...data];
    expect(maxAbsDiff(out.gelu.data, xs.map((v) => 0.5 * v * (1 + erf64(v / Math.SQRT2))))).toBeLessThan(1e-6);
    expect(maxAbsDiff(out.quick.data, xs.map((v) => v * sig(1.702 * v)))).toBeLessThan(1e-6);
    expect(maxAbsDiff(out.silu.data, xs.map((v) => v * sig(v)))).toBeLessThan(1e-6);
  });
});

describe('softmax attention', () => {
  // Toy: batch 2, 5 tokens, 2 heads of dim 4, q pre-scaled as the builders fold the scale into q.
  const B = 2;
  const T = 5;
  const H = 2;
  const D = 4;
  const W = H * D;

  function reference(q: Float32Array, k: Float32Array, v: Float32Array, tq: number): Float64Array {
    const out = new Float64Array(B * tq * W);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < tq; i++) {
          const s = new Float64Array(T);
          for (let j = 0; j < T; j++) {
            for (let d = 0; d < D; d++) s[j] += q[(b * tq + i) * W + h * D + d] * k[(b * T + j) * W + h * D + d];
          }
          const m = Math.max(...s);
          let z = 0;
          for (let j = 0; j < T; j++) z += (s[j] = Math.exp(s[j] - m));
          for (let d = 0; d < D; d++) {
            let acc = 0;
            for (let j = 0; j < T; j++) acc += (s[j] / z) * v[(b * T + j) * W + h * D + d];
            out[(b * tq + i) * W + h * D + d] = acc;
          }
        }
      }
    }
    return out;
  }

  for (const tq of [T, 1]) {
    test(`${tq} quer${tq === 1 ? 'y (CLS-only block)' : 'ies per image'} over ${T} keys, 2 heads, within 1e-6`, async () => {
      const g = graph();
      const q = g.input('q', ['nq', W]);
      const k = g.input('k', ['n', W]);
      const v = g.input('v', ['n', W]);
      const ctx = attention(g, toHeads(g, q, tq, H, D), toHeads(g, k, T, H, D, true), toHeads(g, v, T, H, D), W);
      g.output(ctx, 'ctx', ['nq', W]);
      const { onnxFile } = await g.finish();
      const rand = rng(7);
      const qd = randn(rand, B * tq * W, 1.5);
      const kd = randn(rand, B * T * W, 1.5);
      const vd = randn(rand, B * T * W);
      const out = await runModel(onnxFile, {
        q: { data: qd, dims: [B * tq, W] },
        k: { data: kd, dims: [B * T, W] },
        v: { data: vd, dims: [B * T, W] },
      });
      expect(out.ctx.dims).toEqual([B * tq, W]);
      expect(maxAbsDiff(out.ctx.data, reference(qd, kd, vd, tq))).toBeLessThan(1e-6);
    });
  }
});

/** Nearest binary16 value of x computed in float64 arithmetic (ties to even), independent of toFloat16Bits. */
function roundToHalf(x: number): number {
  const a = Math.abs(x);
  if (a === 0) return x;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -14) - 10);
  const q = a / ulp;
  const f = Math.floor(q);
  const r = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f;
  const y = r * ulp;
  return Math.sign(x) * (y > 65504 ? Infinity : y);
}

describe('fp16 weight storage', () => {
  const tricky = [
    0, -0, 1, -1, 0.1, 1 / 3, 65504, -65504, 65519, 65520, 1e-5, -3e-6, 6.0e-8, 2.9e-8, 3.0e-8, 6.1e-5, 5.96e-8,
    1 + 2 ** -11, 1 + 3 * 2 ** -11, 2048 + 1, 2048 + 3, 1e-8, 12345.678, -0.000123,
  ];

  test('toFloat16Bits rounds to nearest, ties to even, with subnormals', () => {
    const decode = (h: number) => {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const m = h & 0x3ff;
      if (e === 0x1f) return m ? NaN : s * Infinity;
      return s * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
    };
    const rand = rng(3);
    const values = [...tricky, ...randn(rand, 2000, 0.05), ...randn(rand, 200, 1e-5), ...randn(rand, 200, 300)];
    for (const v of values) expect(decode(toFloat16Bits(v))).toBe(roundToHalf(Math.fround(v)));
    expect(toFloat16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(toFloat16Bits(1e6)).toBe(0x7c00);
  });

  test('a weight stored as fp16 reaches compute as exactly its rounded value; fp32 storage is exact', async () => {
    const rand = rng(4);
    const values = Float32Array.from([...tricky.filter((v) => Math.abs(v) <= 65504), ...randn(rand, 500, 0.05)]);
    const n = values.length;
    const g = graph();
    const x = g.input('x', [n]);
    g.output(g.add(x, g.weight('w16', values, [n], 'fp16')), 'y16', [n]);
    g.output(g.add(x, g.weight('w32', values, [n], 'fp32')), 'y32', [n]);
    const { onnxFile } = await g.finish();
    const out = await runModel(onnxFile, { x: { data: new Float32Array(n), dims: [n] } });
    for (let i = 0; i < n; i++) expect(out.y16.data[i]).toBe(roundToHalf(values[i]) + 0);
    expect([...out.y32.data]).toEqual([...values].map((v) => v + 0));
  });

  test('fp16-stored Gemm weights give fp32 compute on the rounded weights (within 1e-5)', async () => {
    const rand = rng(5);
    const K = 16;
    const N = 12;
    const w = randn(rand, K * N, 0.3);
    const g = graph();
    const x = g.input('x', ['rows', K]);
    g.output(g.gemm(x, g.weight('w', w, [K, N], 'fp16')), 'y', ['rows', N]);
    const { onnxFile } = await g.finish();
    const xd = randn(rand, 3 * K);
    const { y } = await runModel(onnxFile, { x: { data: xd, dims: [3, K] } });
    const ref = new Float64Array(3 * N);
    for (let r = 0; r < 3; r++) for (let c = 0; c < N; c++) for (let k = 0; k < K; k++) ref[r * N + c] += xd[r * K + k] * roundToHalf(w[k * N + c]);
    expect(maxAbsDiff(y.data, ref)).toBeLessThan(1e-5);
  });
});

describe('external data', () => {
  test('offsets are 64-aligned, 4096-aligned from 4 KiB, and ORT reads every tensor back', async () => {
    const dir = tempDir();
    const g = new OnnxGraph({ onnxPath: join(dir, 'm.onnx') });
    const a = Float32Array.from({ length: 3 }, (_, i) => i + 1);
    const big = Float32Array.from({ length: 2048 }, (_, i) => i / 7);
    const c = Float32Array.from({ length: 5 }, (_, i) => -i);
    const wa = g.weight('a', a, [3]);
    expect(g.dataBytes).toBe(12);
    const wb = g.weight('big', big, [2048]);
    expect(g.dataBytes).toBe(4096 + 8192);
    const wc = g.weight('c', c, [5]);
    expect(g.dataBytes).toBe(4096 + 8192 + 20); // 12288 is already 64-aligned
    const x = g.input('x', [1]);
    g.output(g.add(x, wa), 'ya', [3]);
    g.output(g.add(x, wb), 'yb', [2048]);
    g.output(g.add(x, wc), 'yc', [5]);
    expect(existsSync(join(dir, 'm.onnx'))).toBe(false); // only partial files until finish()
    const res = await g.finish();
    expect(readdirSync(dir).sort()).toEqual(['m.onnx', 'm.onnx.data']);
    expect(statSync(res.dataFile).size).toBe(4096 + 8192 + 20);
    expect(res.bytes).toBe(statSync(res.dataFile).size + statSync(res.onnxFile).size);
    const out = await runModel(res.onnxFile, { x: { data: new Float32Array(1), dims: [1] } });
    expect(maxAbs(out.ya.data.map((v, i) => v - a[i]))).toBe(0);
    expect(maxAbs(out.yb.data.map((v, i) => v - big[i]))).toBe(0);
    expect(maxAbs(out.yc.data.map((v, i) => v - c[i]))).toBe(0);
  });

  test('abort() removes partial files', () => {
    const dir = tempDir();
    const g = new OnnxGraph({ onnxPath: join(dir, 'm.onnx') });
    g.weight('a', new Float32Array(10), [10]);
    g.abort();
    expect(readdirSync(dir)).toEqual([]);
  });
});
