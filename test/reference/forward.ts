/**
 * Independent float64 reference forward passes for LLM2CLIP vision towers and the text adapter.
 * Written from the official semantics (HF CLIP for openai, eva_clip for eva02, TextProj for the adapter),
 * checked against PyTorch by test/fixtures/reference/make_torch_fixtures.py + reference.test.ts.
 * Slow on purpose (plain loops): use tiny specs.
 */
import type { TensorReader } from '../../src/formats/tensor.js';
import type { TowerSpec } from '../../src/vision/spec.js';
import { referenceEva } from './eva.js';
import { referenceOpenai } from './openai.js';

export interface TowerOutputs {
  /** [n, G*G, width]: output of block `tapLayer` (0-based), patch tokens only, no final norm. */
  readonly patchFeatures: Float64Array;
  /** [n, embedDim]: projected pooled CLS embedding, before L2 normalisation. */
  readonly imageEmbeds: Float64Array;
}

export function referenceTower(spec: TowerSpec, weights: TensorReader, pixels: Float32Array, n: number): TowerOutputs {
  if (!Number.isInteger(spec.tapLayer) || spec.tapLayer < 0 || spec.tapLayer >= spec.layers) {
    throw new Error(`reference: tapLayer ${spec.tapLayer} outside 0..${spec.layers - 1}`);
  }
  switch (spec.arch) {
    case 'openai':
      return referenceOpenai(spec, weights, pixels, n);
    case 'eva02':
      return referenceEva(spec, weights, pixels, n);
  }
}

export { referenceAdapter } from './adapter.js';
export { referenceOpenai } from './openai.js';
export { referenceEva, ropeTables, applyRope } from './eva.js';
export {
  randomTowerWeights,
  randomAdapterWeights,
  randomInput,
  towerWeightEntries,
  adapterWeightEntries,
  type WeightEntry,
} from './weights.js';
export { relL2, erf } from './linalg.js';
