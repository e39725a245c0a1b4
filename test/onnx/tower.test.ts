/**
 * Tiny towers (image 32, patch 8, width 32, 3 layers, 2 heads) with random weights: they build and run
 * for both archs, are batch-independent, and structural shortcuts (CLS-only last block, RoPE column
 * reordering, fp16 storage) do not change results. Numerical parity with PyTorch semantics is the
 * independent float64 reference's job (test/vision), not this file's.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { CheckpointError, MemoryTensors, type TensorReader } from '../../src/formats/tensor.js';
import { buildTowerOnnx, towerShapes } from '../../src/vision/graph-tower.js';
import type { TowerSpec } from '../../src/vision/spec.js';
import { cleanupTempDirs, maxAbs, maxAbsDiff, randn, rng, runModel, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const S = 32;
const base = { imageSize: S, patchSize: 8, width: 32, layers: 3, heads: 2, embedDim: 24, tapLayer: 1 } as const;
const specs: Record<string, TowerSpec> = {
  openai: { ...base, arch: 'openai', mlpWidth: 64, layerNormEps: 1e-5, activation: 'quick_gelu' },
  'openai-gelu': { ...base, arch: 'openai', mlpWidth: 64, layerNormEps: 1e-5, activation: 'gelu' },
  eva02: {
    ...base,
    arch: 'eva02',
    mlpWidth: 40,
    layerNormEps: 1e-6,
    activation: 'quick_gelu',
    rope: { ptHwSeqLen: 16, intpFreq: true, theta: 10000 },
    subln: true,
  },
};

function randomWeights(spec: TowerSpec, seed = 1): MemoryTensors {
  const rand = rng(seed);
  const m = new MemoryTensors('random');
  for (const [name, shape] of towerShapes(spec)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isGain = name.endsWith('.weight') && shape.length === 1;
    m.set(name, shape, randn(rand, n, isGain ? 0.1 : 0.15, isGain ? 1 : 0));
  }
  return m;
}

function pixels(batch: number, seed: number): Float32Array {
  return randn(rng(seed), batch * 3 * S * S);
}

async function build(spec: TowerSpec, weights: TensorReader, dtype: 'fp32' | 'fp16' = 'fp32'): Promise<string> {
  return (await buildTowerOnnx(spec, weights, tempDir(), { dtype })).onnxFile;
}

async function run(file: string, px: Float32Array, batch: number) {
  const out = await runModel(file, { pixel_values: { data: px, dims: [batch, 3, S, S] } });
  return { patch: out.patch_features, embeds: out.image_embeds };
}

describe.each(Object.keys(specs))('%s tower', (key) => {
  const spec = specs[key];
  const G = S / 8;

  test('builds, runs with the documented outputs, and batch 3 equals three batch-1 runs', async () => {
    const file = await build(spec, randomWeights(spec));
    const px = pixels(3, 2);
    const all = await run(file, px, 3);
    expect(all.patch.dims).toEqual([3, G * G, spec.width]);
    expect(all.embeds.dims).toEqual([3, spec.embedDim]);
    expect(maxAbs(all.embeds.data)).toBeGreaterThan(0.01);
    const pSize = G * G * spec.width;
    for (let b = 0; b < 3; b++) {
      const one = await run(file, px.slice(b * 3 * S * S, (b + 1) * 3 * S * S), 1);
      expect(maxAbsDiff(one.patch.data, all.patch.data.subarray(b * pSize, (b + 1) * pSize))).toBeLessThan(1e-5);
      expect(maxAbsDiff(one.embeds.data, all.embeds.data.subarray(b * spec.embedDim, (b + 1) * spec.embedDim))).toBeLessThan(1e-5);
    }
  });

  test('the CLS-only last block gives the same image_embeds as a full last block', async () => {
    const w = randomWeights(spec, 5);
    const px = pixels(2, 6);
    const shortcut = await run(await build(spec, w), px, 2); // tap 1 < last 2: last block CLS-only
    const full = await run(await build({ ...spec, tapLayer: 2 }, w), px, 2);
    expect(maxAbsDiff(shortcut.embeds.data, full.embeds.data)).toBeLessThan(1e-5);
    // The tap really moved: patch_features of block 1 and block 2 differ.
    expect(maxAbsDiff(shortcut.patch.data, full.patch.data)).toBeGreaterThan(1e-3);
  });

  test('fp16 storage stays close to fp32 and halves the data file', async () => {
    const w = randomWeights(spec, 8);
    const dir32 = tempDir();
    const dir16 = tempDir();
    const r32 = await buildTowerOnnx(spec, w, dir32, { dtype: 'fp32' });
    const r16 = await buildTowerOnnx(spec, w, dir16, { dtype: 'fp16' });
    expect(r16.bytes).toBeLessThan(r32.bytes * 0.75);
    const px = pixels(1, 9);
    const a = await run(r32.onnxFile, px, 1);
    const b = await run(r16.onnxFile, px, 1);
    expect(maxAbsDiff(a.embeds.data, b.embeds.data)).toBeLessThan(2e-2 * maxAbs(a.embeds.data));
    expect(maxAbsDiff(a.patch.data, b.patch.data)).toBeLessThan(2e-2 * maxAbs(a.patch.data));
  });
});

describe('eva02 RoPE wiring', () => {
  test('zero rotation angles (pt_hw_seq_len 0) equal no RoPE, so the q/k column reordering is consistent', async () => {
    const spec = specs.eva02;
    const noRope: TowerSpec = { ...spec, rope: undefined };
    const w = randomWeights(spec, 12);
    const px = pixels(2, 13);
    const zero = await run(await build({ ...spec, rope: { ptHwSeqLen: 0, intpFreq: true, theta: 10000 } }, w), px, 2);
    const none = await run(await build(noRope, w), px, 2);
    expect(maxAbsDiff(zero.embeds.data, none.embeds.data)).toBeLessThan(1e-5);
    expect(maxAbsDiff(zero.patch.data, none.patch.data)).toBeLessThan(1e-5);
    const rotated = await run(await build(spec, w), px, 2);
    expect(maxAbsDiff(rotated.patch.data, none.patch.data)).toBeGreaterThan(1e-3);
  });

  test('subln off drops inner_attn_ln / ffn_ln from the expected weights and still builds', async () => {
    const spec: TowerSpec = { ...specs.eva02, subln: false };
    expect([...towerShapes(spec).keys()].some((n) => n.includes('ffn_ln') || n.includes('inner_attn_ln'))).toBe(false);
    const out = await run(await build(spec, randomWeights(spec)), pixels(1, 3), 1);
    expect(out.embeds.dims).toEqual([1, spec.embedDim]);
  });
});

describe('checkpoint validation', () => {
  test('a mis-shaped tensor throws CheckpointError naming it and both shapes, leaving no files', async () => {
    const spec = specs.openai;
    const w = randomWeights(spec);
    const name = 'vision_model.encoder.layers.1.mlp.fc1.weight';
    w.set(name, [63, 32], new Float32Array(63 * 32));
    const dir = tempDir();
    const err = await buildTowerOnnx(spec, w, dir, { dtype: 'fp32' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect(String((err as Error).message)).toContain(name);
    expect(String((err as Error).message)).toContain('[63, 32]');
    expect(String((err as Error).message)).toContain('[64, 32]');
    expect(readdirSync(dir)).toEqual([]);
  });

  test('a missing tensor throws CheckpointError naming it', async () => {
    const spec = specs.eva02;
    const full = randomWeights(spec);
    const w = new MemoryTensors('partial');
    const missing = 'visual.blocks.2.attn.k_proj.weight';
    for (const n of full.names()) if (n !== missing) w.set(n, full.info(n)!.shape, full.readF32(n));
    await expect(buildTowerOnnx(spec, w, tempDir(), { dtype: 'fp32' })).rejects.toThrow(new RegExp(missing.replace(/\./g, '\\.')));
    await expect(buildTowerOnnx(spec, w, tempDir(), { dtype: 'fp32' })).rejects.toBeInstanceOf(CheckpointError);
  });

  test('a failure while streaming removes the partial files', async () => {
    const spec = specs.openai;
    const w = randomWeights(spec);
    const failing: TensorReader = {
      source: 'failing',
      names: () => w.names(),
      info: (n) => w.info(n),
      readF32: (n) => {
        if (n.includes('layers.2.')) throw new CheckpointError(`failing: cannot read ${n}`);
        return w.readF32(n);
      },
      close: () => {},
    };
    const dir = tempDir();
    await expect(buildTowerOnnx(spec, failing, dir, { dtype: 'fp16' })).rejects.toThrow(/cannot read/);
    expect(readdirSync(dir)).toEqual([]);
    expect(existsSync(join(dir, 'tower.onnx'))).toBe(false);
  });

  test('progress reports every tensor once, ending at total', async () => {
    const spec = specs.eva02;
    const calls: [number, number, string][] = [];
    await buildTowerOnnx(spec, randomWeights(spec), tempDir(), {
      dtype: 'fp32',
      onProgress: (done, total, name) => calls.push([done, total, name]),
    });
    const total = towerShapes(spec).size;
    expect(calls.length).toBe(total);
    expect(calls.map((c) => c[0])).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(new Set(calls.map((c) => c[2])).size).toBe(total);
  });

  test('an out-of-range tap layer is rejected', async () => {
    await expect(buildTowerOnnx({ ...specs.openai, tapLayer: 3 }, randomWeights(specs.openai), tempDir(), { dtype: 'fp32' })).rejects.toThrow(
      /tap layer/,
    );
  });
});
