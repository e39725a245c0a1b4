/** Text adapter graph against a float64 loop of eva_clip TextProj (tiny D=12, P=10). */
import { readdirSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { CheckpointError, MemoryTensors } from '../../src/formats/tensor.js';
import { adapterShapes, buildAdapterOnnx } from '../../src/vision/graph-adapter.js';
import type { AdapterSpec } from '../../src/vision/spec.js';
import { cleanupTempDirs, erf64, layerNorm64, linear64, maxAbs, maxAbsDiff, randn, rng, runModel, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const spec: AdapterSpec = { inputDim: 12, embedDim: 10, blocks: 4, layerNormEps: 1e-5 };

function weights(): MemoryTensors {
  const rand = rng(21);
  const m = new MemoryTensors('adapter');
  for (const [name, shape] of adapterShapes(spec)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const gain = name.endsWith('.weight') && shape.length === 1;
    m.set(name, shape, randn(rand, n, gain ? 0.1 : 0.3, gain ? 1 : 0));
  }
  return m;
}

function reference(w: MemoryTensors, x: Float32Array, rows: number): Float64Array {
  const D = spec.inputDim;
  const r = (n: string) => w.readF32(n);
  let h = new Float64Array(x.length);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let j = 0; j < D; j++) s += x[i * D + j] ** 2;
    const norm = Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < D; j++) h[i * D + j] = x[i * D + j] / norm;
  }
  for (let b = 0; b < spec.blocks; b++) {
    const p = `text_adaptor.${b}`;
    const ln = layerNorm64(h, D, r(`${p}.ln.weight`), r(`${p}.ln.bias`), spec.layerNormEps);
    const up = linear64(ln, D, r(`${p}.fn.0.weight`), r(`${p}.fn.0.bias`), 2 * D).map((v) => 0.5 * v * (1 + erf64(v / Math.SQRT2)));
    const down = linear64(up, 2 * D, r(`${p}.fn.3.weight`), r(`${p}.fn.3.bias`), D);
    h = h.map((v, i) => v + down[i]);
  }
  const ln = layerNorm64(h, D, r('text_adaptor.4.weight'), r('text_adaptor.4.bias'), spec.layerNormEps);
  return linear64(ln, D, r('text_adaptor.5.weight'), r('text_adaptor.5.bias'), spec.embedDim);
}

describe('text adapter graph', () => {
  test('matches float64 TextProj (incl. an all-zero row and a huge-norm row) within 1e-5', async () => {
    const w = weights();
    const rows = 4;
    const x = randn(rng(22), rows * spec.inputDim, 2);
    x.fill(0, 0, spec.inputDim); // F.normalize keeps a zero vector at zero
    for (let j = 0; j < spec.inputDim; j++) x[3 * spec.inputDim + j] *= 1e4;
    const { onnxFile } = await buildAdapterOnnx(spec, w, tempDir(), { dtype: 'fp32' });
    const { text_embeds: y } = await runModel(onnxFile, { llm_embeds: { data: x, dims: [rows, spec.inputDim] } });
    expect(y.dims).toEqual([rows, spec.embedDim]);
    const ref = reference(w, x, rows);
    expect(maxAbsDiff(y.data, ref)).toBeLessThan(1e-5 * Math.max(1, maxAbs(ref)));
  });

  test('a mis-shaped tensor is a CheckpointError and leaves no files', async () => {
    const w = weights();
    w.set('text_adaptor.5.weight', [9, 12], new Float32Array(108));
    const dir = tempDir();
    await expect(buildAdapterOnnx(spec, w, dir, { dtype: 'fp16' })).rejects.toBeInstanceOf(CheckpointError);
    expect(readdirSync(dir)).toEqual([]);
  });
});
