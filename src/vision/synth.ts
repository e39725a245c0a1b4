/**
 * `llm2clip synth-checkpoint`: random-weight towers in the exact file layouts people download
 * (Hugging Face safetensors + config.json for OpenAI-CLIP; the official eva_clip `.pt` zip for EVA02),
 * so conversion, parity tests and benchmarks run on real formats without real weights.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../formats/safetensors.js';
import { writeTorchCheckpoint } from '../formats/torch.js';
import type { Arch } from './spec.js';
import { EVA_MLP_RATIO, evaTensors, openaiTensors, PRESETS, type SynthPreset } from './synth-weights.js';

export type { SynthPreset } from './synth-weights.js';

export interface SynthOptions {
  readonly arch: Arch;
  readonly preset: SynthPreset;
  readonly outDir: string;
  readonly seed?: number;
  readonly adapter?: boolean;
  /** Stored dtype; defaults follow the releases: f32 safetensors for OpenAI, f16 .pt for EVA02. */
  readonly dtype?: 'F32' | 'F16' | 'BF16';
}

export interface SynthResult {
  readonly checkpoint: string;
  readonly config?: string;
}

export async function synthCheckpoint(opts: SynthOptions): Promise<SynthResult> {
  const g = PRESETS[opts.preset];
  const seed = opts.seed ?? 0;
  const withAdapter = opts.adapter ?? true;
  mkdirSync(opts.outDir, { recursive: true });
  if (opts.arch === 'openai') {
    const tensors = openaiTensors(g, seed, withAdapter);
    const checkpoint = join(opts.outDir, 'model.safetensors');
    const dtype = opts.dtype ?? 'F32';
    await writeSafetensors(checkpoint, tensors.map((t) => ({ name: t.name, shape: t.shape, dtype, data: t.fill })), { format: 'pt' });
    const config = join(opts.outDir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify(
        {
          architectures: ['LLM2CLIPModel'],
          projection_dim: g.embedDim,
          vision_config: {
            hidden_size: g.width, intermediate_size: 4 * g.width, num_attention_heads: g.heads, num_hidden_layers: g.layers,
            patch_size: g.patchSize, image_size: g.imageSize, projection_dim: g.embedDim, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5,
          },
        },
        null,
        2,
      ) + '\n',
    );
    return { checkpoint, config };
  }
  const tensors = evaTensors(g, seed, withAdapter);
  const name = opts.preset === 'tiny' ? 'LLM2CLIP-EVA02-tiny' : `LLM2CLIP-EVA02-${opts.preset.toUpperCase()}`;
  const checkpoint = join(opts.outDir, `${name}.pt`);
  const dtype = opts.dtype ?? 'F16';
  await writeTorchCheckpoint(checkpoint, tensors.map((t) => ({ name: t.name, shape: t.shape, dtype, data: t.fill })));
  if (opts.preset !== 'tiny') return { checkpoint }; // released EVA02 .pt files ship no config: built-ins cover them
  const config = join(opts.outDir, `${name}.json`);
  writeFileSync(
    config,
    JSON.stringify(
      {
        embed_dim: g.embedDim,
        vision_cfg: {
          image_size: g.imageSize, layers: g.layers, width: g.width, drop_path_rate: 0, head_width: g.width / g.heads,
          mlp_ratio: EVA_MLP_RATIO, patch_size: g.patchSize, eva_model_name: 'eva-clip-tiny', xattn: true, fusedLN: true,
          rope: true, pt_hw_seq_len: 16, intp_freq: true, naiveswiglu: true, subln: true,
        },
      },
      null,
      2,
    ) + '\n',
  );
  return { checkpoint, config };
}

export const SYNTH_PRESETS = Object.keys(PRESETS) as SynthPreset[];
