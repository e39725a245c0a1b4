/**
 * Converts a vision tower (any supported arch) into `outDir/tower.onnx` + `outDir/tower.onnx.data`.
 *
 * Graph contract:
 * - input  `pixel_values`   float32 [batch, 3, S, S]
 * - output `patch_features` float32 [batch, G², W]: block `spec.tapLayer`'s output, patch tokens only, no final norm
 * - output `image_embeds`   float32 [batch, embedDim]: pooled, projected, NOT L2-normalised
 * Model metadata `llm2clip.spec` holds the TowerSpec as JSON and `llm2clip.dtype` the weight storage type.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TensorReader } from '../formats/tensor.js';
import { OnnxGraph, type WeightDtype } from '../onnx/graph.js';
import { gridSide, type TowerSpec } from './spec.js';
import { validateShapes, WeightSource, type ShapeTable } from './graph-blocks.js';
import { buildOpenai, openaiShapes } from './graph-openai.js';
import { buildEva, evaShapes } from './graph-eva.js';

export interface BuildOnnxOptions {
  /** Storage of Linear/Conv weights; fp16 halves the file, compute stays fp32 (ORT folds the Casts at load). */
  dtype: WeightDtype;
  /** Called after each checkpoint tensor is read. */
  onProgress?: (done: number, total: number, name: string) => void;
}

export interface BuiltOnnx {
  onnxFile: string;
  dataFile: string;
  /** Total size of the .onnx and .data files. */
  bytes: number;
}

export const TOWER_INPUT = 'pixel_values';
export const TOWER_OUTPUTS = { patchFeatures: 'patch_features', imageEmbeds: 'image_embeds' } as const;

function checkSpec(spec: TowerSpec): void {
  const problems: string[] = [];
  if (spec.width % spec.heads !== 0) problems.push(`width ${spec.width} not divisible by heads ${spec.heads}`);
  if (gridSide(spec) < 1) problems.push(`image size ${spec.imageSize} smaller than patch ${spec.patchSize}`);
  if (!Number.isInteger(spec.tapLayer) || spec.tapLayer < 0 || spec.tapLayer >= spec.layers) {
    problems.push(`tap layer ${spec.tapLayer} outside 0..${spec.layers - 1}`);
  }
  if (spec.arch === 'openai' && (spec.rope || spec.subln)) problems.push('rope/subln are eva02-only');
  if (problems.length) throw new Error(`invalid tower spec: ${problems.join('; ')}`);
}

export function towerShapes(spec: TowerSpec): ShapeTable {
  return spec.arch === 'openai' ? openaiShapes(spec) : evaShapes(spec);
}

export async function buildTowerOnnx(
  spec: TowerSpec,
  weights: TensorReader,
  outDir: string,
  opts: BuildOnnxOptions,
): Promise<BuiltOnnx> {
  checkSpec(spec);
  const shapes = towerShapes(spec);
  validateShapes(weights, shapes);
  mkdirSync(outDir, { recursive: true });
  const g = new OnnxGraph({
    onnxPath: join(outDir, 'tower.onnx'),
    graphName: `llm2clip_${spec.arch}_tower`,
    metadata: { 'llm2clip.spec': JSON.stringify(spec), 'llm2clip.dtype': opts.dtype },
  });
  try {
    const src = new WeightSource(g, weights, opts.dtype, shapes.size, opts.onProgress);
    const G = gridSide(spec);
    const pixels = g.input(TOWER_INPUT, ['batch', 3, spec.imageSize, spec.imageSize]);
    const out = spec.arch === 'openai' ? buildOpenai(src, spec, pixels) : buildEva(src, spec, pixels);
    if (src.readCount !== shapes.size) {
      throw new Error(`tower builder read ${src.readCount} tensors but validated ${shapes.size}`);
    }
    g.output(out.patchFeatures, TOWER_OUTPUTS.patchFeatures, ['batch', G * G, spec.width]);
    g.output(out.imageEmbeds, TOWER_OUTPUTS.imageEmbeds, ['batch', spec.embedDim]);
    return await g.finish();
  } catch (e) {
    g.abort();
    throw e;
  }
}
