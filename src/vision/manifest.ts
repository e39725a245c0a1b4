/**
 * `tower.json`: what a converted tower directory holds and how to feed it. Written by convert, validated
 * with zod whenever a tower is loaded (a hand-edited or foreign directory fails with a named field).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { AdapterSpec, PreprocessSpec, TowerSpec } from './spec.js';

export const MANIFEST_FILE = 'tower.json';
export const TOWER_ONNX = 'tower.onnx';
export const ADAPTER_ONNX = 'adapter.onnx';

const posInt = z.number().int().positive();
const vec3 = z.tuple([z.number(), z.number(), z.number()]);

export const manifestSchema = z.object({
  format: z.literal('llm2clip-tower'),
  version: z.literal(1),
  arch: z.enum(['openai', 'eva02']),
  dtype: z.enum(['fp32', 'fp16']),
  imageSize: posInt,
  patchSize: posInt,
  gridSize: posInt,
  /** Patch tokens in patch_features (gridSize²). */
  patchTokens: posInt,
  width: posInt,
  layers: posInt,
  heads: posInt,
  mlpWidth: posInt,
  embedDim: posInt,
  tapLayer: z.number().int().nonnegative(),
  layerNormEps: z.number().positive(),
  activation: z.enum(['quick_gelu', 'gelu']),
  rope: z.object({ ptHwSeqLen: posInt, intpFreq: z.boolean(), theta: z.number().positive() }).optional(),
  subln: z.boolean().optional(),
  preprocess: z.object({
    imageSize: posInt,
    mean: vec3,
    std: vec3.refine((s) => s.every((x) => x > 0), 'std must be positive'),
    resizeMode: z.enum(['crop', 'pad']),
  }),
  source: z.object({ file: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number().int().nonnegative(), builtin: z.string().optional() }),
  outputs: z.object({ patchFeatures: z.literal('patch_features'), imageEmbeds: z.literal('image_embeds') }),
  adapter: z.object({ file: z.literal(ADAPTER_ONNX), inputDim: posInt, embedDim: posInt, blocks: posInt }).optional(),
});

export type TowerManifest = z.infer<typeof manifestSchema>;

export class ManifestError extends Error {
  override name = 'ManifestError';
}

export function makeManifest(args: {
  spec: TowerSpec;
  preprocess: PreprocessSpec;
  dtype: 'fp32' | 'fp16';
  source: TowerManifest['source'];
  adapter?: AdapterSpec;
}): TowerManifest {
  const { spec } = args;
  const grid = Math.floor(spec.imageSize / spec.patchSize);
  return {
    format: 'llm2clip-tower',
    version: 1,
    arch: spec.arch,
    dtype: args.dtype,
    imageSize: spec.imageSize,
    patchSize: spec.patchSize,
    gridSize: grid,
    patchTokens: grid * grid,
    width: spec.width,
    layers: spec.layers,
    heads: spec.heads,
    mlpWidth: spec.mlpWidth,
    embedDim: spec.embedDim,
    tapLayer: spec.tapLayer,
    layerNormEps: spec.layerNormEps,
    activation: spec.activation,
    ...(spec.rope ? { rope: { ...spec.rope } } : {}),
    ...(spec.subln !== undefined ? { subln: spec.subln } : {}),
    preprocess: { imageSize: args.preprocess.imageSize, mean: [...args.preprocess.mean], std: [...args.preprocess.std], resizeMode: args.preprocess.resizeMode },
    source: args.source,
    outputs: { patchFeatures: 'patch_features', imageEmbeds: 'image_embeds' },
    ...(args.adapter ? { adapter: { file: ADAPTER_ONNX, inputDim: args.adapter.inputDim, embedDim: args.adapter.embedDim, blocks: args.adapter.blocks } } : {}),
  };
}

export function specFromManifest(m: TowerManifest): TowerSpec {
  return {
    arch: m.arch, imageSize: m.imageSize, patchSize: m.patchSize, width: m.width, layers: m.layers, heads: m.heads,
    mlpWidth: m.mlpWidth, embedDim: m.embedDim, layerNormEps: m.layerNormEps, activation: m.activation,
    rope: m.rope, subln: m.subln, tapLayer: m.tapLayer,
  };
}

export function writeManifest(dir: string, m: TowerManifest): void {
  writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(m, null, 2) + '\n');
}

export function readManifest(dir: string): TowerManifest {
  const path = join(dir, MANIFEST_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ManifestError(`${path}: cannot read tower manifest (${(e as Error).message}); is ${dir} a directory written by 'llm2clip convert'?`);
  }
  const r = manifestSchema.safeParse(raw);
  if (!r.success) {
    throw new ManifestError(`${path}: invalid tower manifest: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  if (r.data.gridSize * r.data.patchSize !== r.data.imageSize || r.data.patchTokens !== r.data.gridSize ** 2) {
    throw new ManifestError(`${path}: inconsistent geometry (imageSize ${r.data.imageSize}, patchSize ${r.data.patchSize}, gridSize ${r.data.gridSize})`);
  }
  return r.data;
}
