/**
 * Tower config files, validated at the edge: a Hugging Face CLIP `config.json` (OpenAI arch) or an
 * eva_clip-style model config (`embed_dim` + `vision_cfg`). Both normalise to `TowerConfig`, the
 * hints that tensor shapes cannot give; resolve.ts checks every hint against the weights.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { Arch } from './spec.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface TowerConfig {
  readonly source: string;
  readonly arch: Arch;
  readonly imageSize?: number;
  readonly patchSize?: number;
  readonly width?: number;
  readonly layers?: number;
  readonly heads?: number;
  readonly mlpWidth?: number;
  readonly embedDim?: number;
  readonly layerNormEps?: number;
  readonly activation?: 'quick_gelu' | 'gelu';
  readonly rope?: boolean;
  readonly ptHwSeqLen?: number;
  readonly intpFreq?: boolean;
  readonly subln?: boolean;
  readonly naiveSwiglu?: boolean;
}

const posInt = z.number().int().positive();

const hfVision = z.looseObject({
  hidden_size: posInt.optional(),
  intermediate_size: posInt.optional(),
  num_attention_heads: posInt.optional(),
  num_hidden_layers: posInt.optional(),
  patch_size: posInt.optional(),
  image_size: posInt.optional(),
  hidden_act: z.string().optional(),
  layer_norm_eps: z.number().positive().optional(),
  projection_dim: posInt.optional(),
});

const hfConfig = z.looseObject({
  vision_config: hfVision,
  projection_dim: posInt.optional(),
});

const evaVision = z.looseObject({
  image_size: posInt.optional(),
  layers: posInt.optional(),
  width: posInt.optional(),
  head_width: posInt.optional(),
  mlp_ratio: z.number().positive().optional(),
  patch_size: posInt.optional(),
  rope: z.boolean().optional(),
  pt_hw_seq_len: posInt.optional(),
  intp_freq: z.boolean().optional(),
  naiveswiglu: z.boolean().optional(),
  subln: z.boolean().optional(),
  eva_model_name: z.string().optional(),
});

const evaConfig = z.looseObject({
  embed_dim: posInt.optional(),
  vision_cfg: evaVision,
});

function describe(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** JSON may carry a "__proto__" key as data; copying it into a parsed object would swap that object's prototype. */
function hasProtoKey(v: unknown, depth = 0): boolean {
  if (depth > 32 || v === null || typeof v !== 'object') return false;
  if (Object.hasOwn(v, '__proto__')) return true;
  return Object.values(v).some((x) => hasProtoKey(x, depth + 1));
}

/** Parses a config object; `source` names it in errors. */
export function parseTowerConfig(raw: unknown, source: string): TowerConfig {
  if (hasProtoKey(raw)) throw new ConfigError(`${source}: config contains a "__proto__" key`);
  if (raw && typeof raw === 'object' && 'vision_config' in raw) {
    const r = hfConfig.safeParse(raw);
    if (!r.success) throw new ConfigError(`${source}: invalid Hugging Face CLIP config: ${describe(r.error)}`);
    const v = r.data.vision_config;
    const act = v.hidden_act ?? 'quick_gelu';
    if (act !== 'quick_gelu' && act !== 'gelu') {
      throw new ConfigError(`${source}: vision_config.hidden_act '${act}' is not supported (quick_gelu or gelu)`);
    }
    const heads = v.num_attention_heads;
    return {
      source,
      arch: 'openai',
      imageSize: v.image_size,
      patchSize: v.patch_size,
      width: v.hidden_size,
      layers: v.num_hidden_layers,
      heads,
      mlpWidth: v.intermediate_size,
      embedDim: r.data.projection_dim ?? v.projection_dim,
      layerNormEps: v.layer_norm_eps,
      activation: act,
    };
  }
  if (raw && typeof raw === 'object' && 'vision_cfg' in raw) {
    const r = evaConfig.safeParse(raw);
    if (!r.success) throw new ConfigError(`${source}: invalid eva_clip config: ${describe(r.error)}`);
    const v = r.data.vision_cfg;
    if (v.naiveswiglu === false) {
      throw new ConfigError(`${source}: vision_cfg.naiveswiglu=false (plain GELU MLP) is not an LLM2CLIP EVA02 tower; not supported`);
    }
    const width = v.width;
    const headWidth = v.head_width ?? 64;
    if (width !== undefined && width % headWidth !== 0) {
      throw new ConfigError(`${source}: vision_cfg.width ${width} is not a multiple of head_width ${headWidth}`);
    }
    return {
      source,
      arch: 'eva02',
      imageSize: v.image_size,
      patchSize: v.patch_size,
      width,
      layers: v.layers,
      heads: width !== undefined ? width / headWidth : undefined,
      embedDim: r.data.embed_dim,
      layerNormEps: 1e-6,
      rope: v.rope ?? false,
      ptHwSeqLen: v.pt_hw_seq_len ?? 16,
      intpFreq: v.intp_freq ?? false,
      subln: v.subln ?? false,
      naiveSwiglu: v.naiveswiglu ?? false,
    };
  }
  throw new ConfigError(`${source}: not a tower config (expected a Hugging Face config with "vision_config" or an eva_clip config with "vision_cfg")`);
}

export function readTowerConfig(path: string): TowerConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`${path}: cannot read config: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: config is not valid JSON: ${(e as Error).message}`);
  }
  return parseTowerConfig(raw, path);
}
