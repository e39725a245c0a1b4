/**
 * A Hugging Face Llama-family `config.json`, validated at the edge and normalised to llama.cpp
 * hyperparameters. Accepted: LlamaForCausalLM, and the two families whose decoder is the same maths
 * (RMSNorm, rotate-half RoPE, SwiGLU, GQA) — MistralForCausalLM without a sliding window, and
 * Qwen2ForCausalLM without one (its q/k/v biases are optional tensors of llama.cpp's llama graph).
 */
import * as fs from 'node:fs';
import { z } from 'zod';
import { GgufError } from './types.js';
import type { LlamaHparams } from './llama-meta.js';

export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'] as const;

const posInt = z.number().int().positive();
const ropeParams = z.looseObject({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  rope_theta: z.number().positive().optional(),
  factor: z.number().positive().optional(),
  low_freq_factor: z.number().positive().optional(),
  high_freq_factor: z.number().positive().optional(),
  original_max_position_embeddings: posInt.optional(),
});

const configSchema = z.looseObject({
  architectures: z.array(z.string()).min(1),
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.optional(),
  head_dim: posInt.nullish(),
  vocab_size: posInt,
  max_position_embeddings: posInt.optional(),
  rms_norm_eps: z.number().positive().optional(),
  rope_theta: z.number().positive().optional(),
  rope_scaling: ropeParams.nullish(),
  rope_parameters: ropeParams.nullish(),
  tie_word_embeddings: z.boolean().optional(),
  hidden_act: z.string().optional(),
  sliding_window: z.number().int().nullish(),
  use_sliding_window: z.boolean().optional(),
  quantization_config: z.unknown().optional(),
  bos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
  eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
  _name_or_path: z.string().optional(),
});

export type HfConfig = z.infer<typeof configSchema>;

/** llama3-style RoPE scaling: per-frequency divisors that travel as the rope_freqs.weight tensor. */
export interface Llama3Rope {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalContext: number;
}

export interface LlmConfig {
  architecture: (typeof SUPPORTED_ARCHITECTURES)[number];
  hparams: LlamaHparams;
  tiedEmbeddings: boolean;
  llama3Rope?: Llama3Rope;
  raw: HfConfig;
}

export function readLlmConfig(file: string, name: string): LlmConfig {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new GgufError(code === 'ENOENT' ? `${file}: no such file (a Hugging Face model directory has a config.json)` : `${file}: not valid JSON (${(e as Error).message})`);
  }
  const r = configSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new GgufError(`${file}: ${i.path.join('.') || 'config'}: ${i.message}`);
  }
  return normalise(r.data, file, name);
}

function normalise(c: HfConfig, file: string, name: string): LlmConfig {
  const fail = (msg: string): never => {
    throw new GgufError(`${file}: ${msg}`);
  };
  const arch = c.architectures.find((a): a is LlmConfig['architecture'] => (SUPPORTED_ARCHITECTURES as readonly string[]).includes(a));
  if (!arch) fail(`architecture ${c.architectures.join(', ')} is not supported (convert-llm takes ${SUPPORTED_ARCHITECTURES.join(', ')})`);
  if (c.quantization_config !== undefined) fail('quantized checkpoints are not supported (convert-llm needs F32, F16 or BF16 weights)');
  if (c.hidden_act !== undefined && c.hidden_act !== 'silu') fail(`hidden_act ${c.hidden_act} is not supported (llama.cpp's llama graph uses SiLU-gated FFNs)`);
  const ctx = c.max_position_embeddings ?? 2048;
  if (arch === 'MistralForCausalLM' && c.sliding_window != null && c.sliding_window < ctx) {
    fail(`sliding_window ${c.sliding_window} < max_position_embeddings ${ctx}: sliding-window attention is not part of llama.cpp's llama architecture`);
  }
  if (arch === 'Qwen2ForCausalLM' && c.use_sliding_window) fail('use_sliding_window is true: sliding-window attention is not part of llama.cpp\'s llama architecture');
  const nHead = c.num_attention_heads;
  const nHeadKv = c.num_key_value_heads ?? nHead;
  if (nHead % nHeadKv !== 0) fail(`num_attention_heads ${nHead} is not a multiple of num_key_value_heads ${nHeadKv}`);
  if (c.head_dim == null && c.hidden_size % nHead !== 0) fail(`hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${nHead}`);
  const headDim = c.head_dim ?? c.hidden_size / nHead;

  // transformers ≥ 5 moves theta and scaling into rope_parameters; older configs use rope_theta + rope_scaling.
  const rp = c.rope_parameters ?? c.rope_scaling ?? {};
  const ropeTheta = c.rope_parameters?.rope_theta ?? c.rope_theta ?? 10000;
  const ropeType = (rp.rope_type ?? rp.type ?? 'default').toLowerCase();
  let ropeScalingLinear: number | undefined;
  let llama3Rope: Llama3Rope | undefined;
  if (ropeType === 'linear') {
    if (rp.factor === undefined) fail('linear RoPE scaling without a factor');
    ropeScalingLinear = rp.factor;
  } else if (ropeType === 'llama3') {
    llama3Rope = {
      factor: rp.factor ?? 8,
      lowFreqFactor: rp.low_freq_factor ?? 1,
      highFreqFactor: rp.high_freq_factor ?? 4,
      originalContext: rp.original_max_position_embeddings ?? 8192,
    };
    if (llama3Rope.lowFreqFactor === llama3Rope.highFreqFactor) fail('llama3 RoPE scaling needs low_freq_factor ≠ high_freq_factor');
  } else if (ropeType !== 'default') {
    fail(`RoPE scaling type ${ropeType} is not supported (convert-llm handles default, linear and llama3)`);
  }
  return {
    architecture: arch!,
    hparams: {
      name,
      contextLength: ctx,
      nEmbd: c.hidden_size,
      nLayer: c.num_hidden_layers,
      nFf: c.intermediate_size,
      nHead,
      nHeadKv,
      headDim,
      ropeTheta,
      rmsEps: c.rms_norm_eps ?? 1e-6,
      vocabSize: c.vocab_size,
      ropeScalingLinear,
    },
    // LlamaConfig, MistralConfig and Qwen2Config all default to untied embeddings.
    tiedEmbeddings: c.tie_word_embeddings ?? false,
    llama3Rope,
    raw: c,
  };
}

/**
 * The llama3 RoPE divisors, computed as transformers' _compute_llama3_parameters scales inv_freq (and as
 * llama.cpp's converter writes them): high frequencies kept, low ones divided by `factor`, a smooth blend
 * between. llama.cpp divides each rotation frequency by the stored value.
 */
export function llama3RopeFactors(r: Llama3Rope, headDim: number, theta: number): Float32Array {
  const out = new Float32Array(headDim / 2);
  const lowWavelen = r.originalContext / r.lowFreqFactor;
  const highWavelen = r.originalContext / r.highFreqFactor;
  for (let i = 0; i < out.length; i++) {
    const freq = Math.fround(1 / Math.fround(theta ** Math.fround((2 * i) / headDim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = r.factor;
    else {
      const smooth = (r.originalContext / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / r.factor + smooth);
    }
  }
  return out;
}
