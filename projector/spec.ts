/**
 * The projector stage's file format: DIR/projector.json (this schema) + DIR/projector.safetensors with
 * LLaVA's mm_projector names stripped of their prefix (`0.weight` [H, W], `0.bias`, `2.weight` [D, H],
 * `2.bias` for mlp2x_gelu; `weight`/`bias` for linear). It maps tower patch features [N, W] into the LLM's
 * token-embedding space [N, D].
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

export const PROJECTOR_JSON = 'projector.json';
export const PROJECTOR_WEIGHTS = 'projector.safetensors';

const posInt = z.number().int().positive();

export const projectorSchema = z.object({
  format: z.literal('llm2clip-projector'),
  version: z.literal(1),
  /** LLaVA's mm_projector_type. */
  type: z.enum(['mlp2x_gelu', 'linear']),
  inputDim: posInt,
  hiddenDim: posInt.optional(),
  outputDim: posInt,
  /** What it was trained against; checked when a pipeline is assembled. */
  tower: z.object({ arch: z.enum(['openai', 'eva02']), width: posInt, patchTokens: posInt, sha256: z.string().optional() }).optional(),
  llm: z.object({ nEmbd: posInt, name: z.string().optional() }).optional(),
  /** True for random-weight stand-ins: nothing was learned. */
  synthetic: z.boolean().optional(),
});

export type ProjectorManifest = z.infer<typeof projectorSchema>;

export class ProjectorError extends Error {
  override name = 'ProjectorError';
}

export function readProjectorManifest(dir: string): ProjectorManifest {
  const path = join(dir, PROJECTOR_JSON);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ProjectorError(`${path}: cannot read projector manifest (${(e as Error).message})`);
  }
  const r = projectorSchema.safeParse(raw);
  if (!r.success) throw new ProjectorError(`${path}: invalid projector manifest: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  if (r.data.type === 'mlp2x_gelu' && r.data.hiddenDim === undefined) throw new ProjectorError(`${path}: mlp2x_gelu needs hiddenDim`);
  return r.data;
}

/** Canonical tensor names and shapes for a manifest. */
export function projectorShapes(m: ProjectorManifest): Map<string, readonly number[]> {
  if (m.type === 'linear') return new Map([['weight', [m.outputDim, m.inputDim]], ['bias', [m.outputDim]]]);
  const h = m.hiddenDim!;
  return new Map<string, readonly number[]>([
    ['0.weight', [h, m.inputDim]],
    ['0.bias', [h]],
    ['2.weight', [m.outputDim, h]],
    ['2.bias', [m.outputDim]],
  ]);
}
