/**
 * Random-weight projectors: the stand-in until a trained one exists (issue 4), and test material.
 * LLaVA initialises nn.Linear the PyTorch way, U(±1/√fan_in); we draw normals of that scale.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../src/formats/safetensors.js';
import { mulberry32 } from '../src/util/random.js';
import { PROJECTOR_JSON, PROJECTOR_WEIGHTS, projectorDepth, projectorShapes, type ProjectorManifest } from './spec.js';

export interface SynthProjectorOptions {
  readonly outDir: string;
  readonly inputDim: number;
  readonly outputDim: number;
  /** Hidden width of mlp types; LLaVA uses the LLM width. */
  readonly hiddenDim?: number;
  /** `linear` or `mlp{N}x_gelu` (default mlp2x_gelu, LLaVA-1.5's). */
  readonly type?: string;
  readonly seed?: number;
  readonly tower?: ProjectorManifest['tower'];
}

export function synthProjector(opts: SynthProjectorOptions): ProjectorManifest {
  const type = opts.type ?? 'mlp2x_gelu';
  const manifest: ProjectorManifest = {
    format: 'llm2clip-projector',
    version: 1,
    type,
    inputDim: opts.inputDim,
    ...(type !== 'linear' ? { hiddenDim: opts.hiddenDim ?? opts.outputDim } : {}),
    outputDim: opts.outputDim,
    ...(opts.tower ? { tower: opts.tower } : {}),
    llm: { nEmbd: opts.outputDim },
    synthetic: true,
  };
  const rnd = mulberry32(opts.seed ?? 0);
  const gauss = () => Math.sqrt(-2 * Math.log(Math.max(rnd(), 1e-12))) * Math.cos(2 * Math.PI * rnd());
  projectorDepth(type); // validates the type before anything is written
  const tensors = [...projectorShapes(manifest)].map(([name, shape]) => {
    const fanIn = shape.length === 2 ? shape[1]! : 1;
    const std = shape.length === 2 ? 1 / Math.sqrt(fanIn) : 0.02;
    return { name, shape, dtype: 'F32' as const, data: () => Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => std * gauss()) };
  });
  mkdirSync(opts.outDir, { recursive: true });
  writeSafetensors(join(opts.outDir, PROJECTOR_WEIGHTS), tensors, { format: 'pt' });
  writeFileSync(join(opts.outDir, PROJECTOR_JSON), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}
