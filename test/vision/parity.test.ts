/**
 * End-to-end parity on the real file formats: synthesise a tiny random checkpoint (HF safetensors for
 * OpenAI-CLIP, official .pt for EVA02), convert it with our TypeScript ONNX builder, run it in
 * onnxruntime-node, and compare with the independent float64 reference (test/reference, itself checked
 * against PyTorch). Tolerances (relative L2): fp32 graphs ≤ 1e-4, fp16-stored graphs ≤ 2e-3.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/formats/checkpoint.js';
import { RenamedTensors, type TensorReader } from '../../src/formats/tensor.js';
import { convertCheckpoint } from '../../src/vision/convert.js';
import type { AdapterSpec, TowerSpec } from '../../src/vision/spec.js';
import { synthCheckpoint } from '../../src/vision/synth.js';
import { TextAdapter, VisionTower } from '../../src/vision/tower.js';
import { referenceAdapter, referenceTower, relL2 } from '../reference/forward.js';
import { randomInput } from '../reference/weights.js';

/** What the tiny presets are, written out by hand so a resolve bug cannot hide in both sides. */
const SPECS: Record<'openai' | 'eva02', TowerSpec> = {
  openai: { arch: 'openai', imageSize: 32, patchSize: 8, width: 64, layers: 3, heads: 4, mlpWidth: 256, embedDim: 40, layerNormEps: 1e-5, activation: 'quick_gelu', tapLayer: 1 },
  eva02: {
    arch: 'eva02', imageSize: 32, patchSize: 8, width: 64, layers: 3, heads: 4, mlpWidth: 170, embedDim: 40, layerNormEps: 1e-6, activation: 'quick_gelu',
    rope: { ptHwSeqLen: 16, intpFreq: true, theta: 10000 }, subln: true, tapLayer: 1,
  },
};
const ADAPTER: AdapterSpec = { inputDim: 48, embedDim: 40, blocks: 4, layerNormEps: 1e-5 };
const TOL = { fp32: 1e-4, fp16: 2e-3 } as const;

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'llm2clip-parity-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.each(['openai', 'eva02'] as const)('%s tower parity', (arch) => {
  const spec = SPECS[arch];
  let checkpoint: string;
  let reader: TensorReader;
  const n = 3;
  const pixels = randomInput(n * 3 * 32 * 32, arch === 'openai' ? 11 : 12);
  let ref: ReturnType<typeof referenceTower>;

  beforeAll(async () => {
    checkpoint = (await synthCheckpoint({ arch, preset: 'tiny', outDir: join(work, arch), seed: 5 })).checkpoint;
    reader = openCheckpoint(checkpoint);
    ref = referenceTower(spec, reader, pixels, n);
  });
  afterAll(() => reader.close());

  it.each(['fp32', 'fp16'] as const)('%s graph matches the float64 reference (batched 2+1)', async (dtype) => {
    const out = join(work, `${arch}-${dtype}`);
    const manifest = await convertCheckpoint(checkpoint, { outDir: out, dtype });
    expect(manifest).toMatchObject({ arch, width: spec.width, layers: spec.layers, heads: spec.heads, mlpWidth: spec.mlpWidth, tapLayer: spec.tapLayer, patchTokens: 16 });
    const tower = await VisionTower.load(out);
    try {
      const r = await tower.encodePixels(pixels, n, { batch: 2 });
      const ePatch = relL2(r.patchFeatures, ref.patchFeatures);
      const eEmbed = relL2(r.imageEmbeds, ref.imageEmbeds);
      expect(ePatch).toBeLessThan(TOL[dtype]);
      expect(eEmbed).toBeLessThan(TOL[dtype]);
      // A single image alone must give the same numbers as inside a batch.
      const one = await tower.encodePixels(pixels.subarray(2 * 3 * 32 * 32), 1);
      expect(relL2(one.imageEmbeds, ref.imageEmbeds.subarray(2 * 40))).toBeLessThan(TOL[dtype]);
    } finally {
      await tower.dispose();
    }
  });

  it('adapter graph matches the float64 reference', async () => {
    const adapterPrefix = arch === 'openai' ? 'text_adapter.' : 'text.';
    const names = new Map(reader.names().filter((k) => k.startsWith(adapterPrefix)).map((k) => [k.slice(adapterPrefix.length), k]));
    const llm = randomInput(4 * 48, 99, 3);
    const expected = referenceAdapter(ADAPTER, new RenamedTensors(reader, names), llm, 4);
    const adapter = await TextAdapter.load(join(work, `${arch}-fp32`));
    try {
      expect(relL2(await adapter.adapt(llm, 4), expected)).toBeLessThan(1e-4);
    } finally {
      await adapter.dispose();
    }
  });
});
