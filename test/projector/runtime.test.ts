import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetensorsReader } from '../../src/formats/safetensors.js';
import { Projector } from '../../projector/runtime.js';
import { synthProjector } from '../../projector/synth.js';
import { erf, relL2 } from '../reference/forward.js';

const work = mkdtempSync(join(tmpdir(), 'llm2clip-projector-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** float64 nn.Linear: x [n, in] · Wᵀ + b. */
function linear(x: Float64Array, n: number, w: Float32Array, b: Float32Array, inDim: number, out: number): Float64Array {
  const y = new Float64Array(n * out);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < out; o++) {
      let s = b[o]!;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i]! * w[o * inDim + i]!;
      y[r * out + o] = s;
    }
  }
  return y;
}

describe('Projector', () => {
  it.each(['mlp2x_gelu', 'linear'] as const)('%s matches a float64 LLaVA mm_projector within 1e-5 (relative L2)', async (type) => {
    const dir = join(work, type);
    const m = synthProjector({ outDir: dir, inputDim: 48, hiddenDim: 40, outputDim: 32, type, seed: 4 });
    const p = await Projector.load(dir);
    const n = 7;
    const feats = Float32Array.from({ length: n * 48 }, (_, i) => Math.sin(i * 0.37) * 3);
    const got = await p.project(feats, n);
    await p.dispose();
    const w = SafetensorsReader.open(join(dir, 'projector.safetensors'));
    let expected: Float64Array;
    if (type === 'linear') expected = linear(Float64Array.from(feats), n, w.readF32('weight'), w.readF32('bias'), 48, 32);
    else {
      const h = linear(Float64Array.from(feats), n, w.readF32('0.weight'), w.readF32('0.bias'), 48, m.hiddenDim!);
      const g = h.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
      expected = linear(g, n, w.readF32('2.weight'), w.readF32('2.bias'), m.hiddenDim!, 32);
    }
    w.close();
    expect(got.length).toBe(n * 32);
    expect(relL2(got, expected)).toBeLessThan(1e-5);
  });

  it('refuses bad manifests, mis-shaped weights and mis-sized input with named problems', async () => {
    const dir = join(work, 'bad');
    synthProjector({ outDir: dir, inputDim: 8, hiddenDim: 8, outputDim: 4, seed: 1 });
    const p = await Projector.load(dir);
    await expect(p.project(new Float32Array(9), 1)).rejects.toThrow(/holds 9 values; expected 1 × 8/);
    await p.dispose();
    writeFileSync(join(dir, 'projector.json'), JSON.stringify({ format: 'llm2clip-projector', version: 1, type: 'mlp2x_gelu', inputDim: 16, hiddenDim: 8, outputDim: 4 }));
    await expect(Projector.load(dir)).rejects.toThrow(/tensor 0.weight has shape \[8, 8\], expected \[8, 16\]/);
    writeFileSync(join(dir, 'projector.json'), JSON.stringify({ format: 'llm2clip-projector', version: 1, type: 'conv', inputDim: 16, outputDim: 4 }));
    await expect(Projector.load(dir)).rejects.toThrow(/invalid projector manifest: type/);
  });
});

describe('Projector mlp3x_gelu', () => {
  it('three Linears with GELU between match the float64 loop', async () => {
    const dir = join(work, 'mlp3');
    synthProjector({ outDir: dir, inputDim: 20, hiddenDim: 16, outputDim: 12, type: 'mlp3x_gelu', seed: 9 });
    const p = await Projector.load(dir);
    const feats = Float32Array.from({ length: 3 * 20 }, (_, i) => Math.cos(i * 0.7));
    const got = await p.project(feats, 3);
    await p.dispose();
    const w = SafetensorsReader.open(join(dir, 'projector.safetensors'));
    const gelu = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));
    let x = linear(Float64Array.from(feats), 3, w.readF32('0.weight'), w.readF32('0.bias'), 20, 16).map(gelu);
    x = linear(x, 3, w.readF32('2.weight'), w.readF32('2.bias'), 16, 16).map(gelu);
    const expected = linear(x, 3, w.readF32('4.weight'), w.readF32('4.bias'), 16, 12);
    w.close();
    expect(relL2(got, expected)).toBeLessThan(1e-5);
  });
});
