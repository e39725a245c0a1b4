/**
 * The projector stage's file format: DIR/projector.json (this schema) + DIR/projector.safetensors with
 * LLaVA's mm_projector names stripped of their prefix. `mlp{N}x_gelu` is LLaVA's nn.Sequential of N
 * Linears with GELU between them, so its weights are `0.*`, `2.*`, …, `{2N-2}.*`; `linear` is a bare
 * nn.Linear (`weight`, `bias`). It maps tower patch features [N, W] into the LLM's embedding space [N, D].
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

export const PROJECTOR_JSON = 'projector.json';
export const PROJECTOR_WEIGHTS = 'projector.safetensors';

const posInt = z.number().int().positive();
const MLP_TYPE = /^mlp([1-9]\d?)x_gelu$/;

export const projectorSchema = z.object({
  format: z.literal('llm2clip-projector'),
  version: z.literal(1),
  /** LLaVA's mm_projector_type: `linear` or `mlp{N}x_gelu`. */
  type: z.string().refine((t) => t === 'linear' || MLP_TYPE.test(t), 'must be "linear" or "mlp<N>x_gelu"'),
  inputDim: posInt,
  /** Width of the hidden Linears (LLaVA: the LLM width, i.e. outputDim). */
  hiddenDim: posInt.optional(),
  outputDim: posInt,
  /** The tower it was trained on; checked when a pipeline is assembled. */
  tower: z
    .object({
      arch: z.enum(['openai', 'eva02']),
      width: posInt,
      patchTokens: posInt,
      sha256: z.string().optional(),
      /** Block whose output feeds the projector (LLaVA: layers − 2). */
      tap: z.number().int().nonnegative().optional(),
    })
    .optional(),
  llm: z.object({ nEmbd: posInt, name: z.string().optional() }).optional(),
  /** Image tokens per image (= the tower's patch tokens). */
  tokensPerImage: posInt.optional(),
  /** Preprocessing the projector was trained with. */
  resizeMode: z.enum(['crop', 'pad']).optional(),
  /** True for random-weight stand-ins: nothing was learned. */
  synthetic: z.boolean().optional(),
});

export type ProjectorManifest = z.infer<typeof projectorSchema>;

export class ProjectorError extends Error {
  override name = 'ProjectorError';
}

/** Number of Linear layers: 1 for `linear`, N for `mlp{N}x_gelu`. */
export function projectorDepth(type: string): number {
  if (type === 'linear') return 1;
  const m = MLP_TYPE.exec(type);
  if (!m) throw new ProjectorError(`unknown projector type ${JSON.stringify(type)} (linear or mlp<N>x_gelu)`);
  return Number(m[1]);
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
  if (r.data.tokensPerImage !== undefined && r.data.tower && r.data.tower.patchTokens !== r.data.tokensPerImage) {
    throw new ProjectorError(`${path}: tokensPerImage ${r.data.tokensPerImage} differs from tower.patchTokens ${r.data.tower.patchTokens}`);
  }
  return r.data;
}

/** Layer widths: in → hidden → … → out (LLaVA's hidden width defaults to the output width). */
export function projectorLayers(m: ProjectorManifest): { index: number; out: number; in: number }[] {
  const depth = projectorDepth(m.type);
  const hidden = m.hiddenDim ?? m.outputDim;
  return Array.from({ length: depth }, (_, i) => ({
    index: 2 * i,
    in: i === 0 ? m.inputDim : hidden,
    out: i === depth - 1 ? m.outputDim : hidden,
  }));
}

/** Stored tensor names and shapes for a manifest (`linear` has no index prefix, like nn.Linear). */
export function projectorShapes(m: ProjectorManifest): Map<string, readonly number[]> {
  const prefix = (i: number) => (m.type === 'linear' ? '' : `${i}.`);
  const shapes = new Map<string, readonly number[]>();
  for (const l of projectorLayers(m)) {
    shapes.set(`${prefix(l.index)}weight`, [l.out, l.in]);
    shapes.set(`${prefix(l.index)}bias`, [l.out]);
  }
  return shapes;
}
