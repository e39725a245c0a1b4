/**
 * Random-weight tower tensors under the names the released files use (HF CLIP names for OpenAI towers,
 * eva_clip names for EVA02), for synthesised checkpoints and tests. Pure: no I/O.
 */
import { gaussianArray, hashName } from '../util/random.js';
import { officialRopeTables } from './rope.js';

export type SynthPreset = 'tiny' | 'b-16' | 'l-14-224' | 'l-14-336';

export interface Geometry {
  imageSize: number;
  patchSize: number;
  width: number;
  layers: number;
  heads: number;
  embedDim: number;
  adapterDim: number;
}

export const PRESETS: Record<SynthPreset, Geometry> = {
  tiny: { imageSize: 32, patchSize: 8, width: 64, layers: 3, heads: 4, embedDim: 40, adapterDim: 48 },
  'b-16': { imageSize: 224, patchSize: 16, width: 768, layers: 12, heads: 12, embedDim: 1280, adapterDim: 4096 },
  'l-14-224': { imageSize: 224, patchSize: 14, width: 1024, layers: 24, heads: 16, embedDim: 1280, adapterDim: 4096 },
  'l-14-336': { imageSize: 336, patchSize: 14, width: 1024, layers: 24, heads: 16, embedDim: 1280, adapterDim: 4096 },
};

/** eva_clip's mlp_ratio for EVA02 is 2.6667; the hidden width is int(width * ratio) (2730 for L). */
export const EVA_MLP_RATIO = 2.6667;

export interface SynthTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly fill: () => Float32Array;
}


/** Scales chosen so activations stay O(1) through the tower: fan-in-scaled matrices, LN gammas near 1. */
function tensor(name: string, shape: number[], seed: number): SynthTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const s = hashName(name, seed);
  let std: number;
  let mean = 0;
  if (/(norm|ln|layrnorm|layer_norm\d?|_ln)[^.]*\.weight$|text_adaptor\.4\.weight$|\.ln\.weight$/.test(name)) {
    std = 0.1;
    mean = 1;
  } else if (/bias$/.test(name)) std = 0.05;
  else if (shape.length >= 2 && !/embed|cls_token|class_embedding/.test(name.split('.').slice(-2).join('.'))) {
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    std = 1 / Math.sqrt(fanIn);
  } else std = 0.5;
  return { name, shape, fill: () => gaussianArray(n, mean, std, s) };
}

function adapterTensors(prefix: string, d: number, p: number, seed: number): SynthTensor[] {
  const t: SynthTensor[] = [];
  for (let i = 0; i < 4; i++) {
    const b = `${prefix}text_adaptor.${i}`;
    t.push(tensor(`${b}.ln.weight`, [d], seed), tensor(`${b}.ln.bias`, [d], seed));
    t.push(tensor(`${b}.fn.0.weight`, [2 * d, d], seed), tensor(`${b}.fn.0.bias`, [2 * d], seed));
    t.push(tensor(`${b}.fn.3.weight`, [d, 2 * d], seed), tensor(`${b}.fn.3.bias`, [d], seed));
  }
  t.push(tensor(`${prefix}text_adaptor.4.weight`, [d], seed), tensor(`${prefix}text_adaptor.4.bias`, [d], seed));
  t.push(tensor(`${prefix}text_adaptor.5.weight`, [p, d], seed), tensor(`${prefix}text_adaptor.5.bias`, [p], seed));
  return t;
}

export function openaiTensors(g: Geometry, seed: number, withAdapter: boolean): SynthTensor[] {
  const W = g.width;
  const G = g.imageSize / g.patchSize;
  const v = 'vision_model.';
  const t: SynthTensor[] = [
    tensor(`${v}embeddings.class_embedding`, [W], seed),
    tensor(`${v}embeddings.patch_embedding.weight`, [W, 3, g.patchSize, g.patchSize], seed),
    tensor(`${v}embeddings.position_embedding.weight`, [G * G + 1, W], seed),
    tensor(`${v}pre_layrnorm.weight`, [W], seed),
    tensor(`${v}pre_layrnorm.bias`, [W], seed),
  ];
  for (let i = 0; i < g.layers; i++) {
    const l = `${v}encoder.layers.${i}.`;
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) t.push(tensor(`${l}self_attn.${p}.weight`, [W, W], seed), tensor(`${l}self_attn.${p}.bias`, [W], seed));
    t.push(tensor(`${l}layer_norm1.weight`, [W], seed), tensor(`${l}layer_norm1.bias`, [W], seed));
    t.push(tensor(`${l}mlp.fc1.weight`, [4 * W, W], seed), tensor(`${l}mlp.fc1.bias`, [4 * W], seed));
    t.push(tensor(`${l}mlp.fc2.weight`, [W, 4 * W], seed), tensor(`${l}mlp.fc2.bias`, [W], seed));
    t.push(tensor(`${l}layer_norm2.weight`, [W], seed), tensor(`${l}layer_norm2.bias`, [W], seed));
  }
  t.push(tensor(`${v}post_layernorm.weight`, [W], seed), tensor(`${v}post_layernorm.bias`, [W], seed));
  t.push(tensor('visual_projection.weight', [g.embedDim, W], seed));
  if (withAdapter) t.push(...adapterTensors('text_adapter.', g.adapterDim, g.embedDim, seed));
  t.push({ name: 'logit_scale', shape: [], fill: () => new Float32Array([Math.log(1 / 0.07)]) });
  return t;
}

/** The RoPE buffers eva_clip saves (released configs: pt_hw_seq_len 16, intp_freq). */
function ropeBuffers(prefix: string, grid: number, headDim: number): SynthTensor[] {
  const shape = [grid * grid, headDim];
  const tables = () => officialRopeTables({ ptHwSeqLen: 16, intpFreq: true, theta: 10000 }, grid, headDim);
  return [
    { name: `${prefix}freqs_cos`, shape, fill: () => Float32Array.from(tables().cos) },
    { name: `${prefix}freqs_sin`, shape, fill: () => Float32Array.from(tables().sin) },
  ];
}

export function evaTensors(g: Geometry, seed: number, withAdapter: boolean): SynthTensor[] {
  const W = g.width;
  const G = g.imageSize / g.patchSize;
  const H = Math.floor(W * EVA_MLP_RATIO);
  const v = 'visual.';
  const t: SynthTensor[] = [
    tensor(`${v}cls_token`, [1, 1, W], seed),
    tensor(`${v}pos_embed`, [1, G * G + 1, W], seed),
    tensor(`${v}patch_embed.proj.weight`, [W, 3, g.patchSize, g.patchSize], seed),
    tensor(`${v}patch_embed.proj.bias`, [W], seed),
  ];
  for (let i = 0; i < g.layers; i++) {
    const b = `${v}blocks.${i}.`;
    t.push(tensor(`${b}norm1.weight`, [W], seed), tensor(`${b}norm1.bias`, [W], seed));
    t.push(tensor(`${b}attn.q_proj.weight`, [W, W], seed), tensor(`${b}attn.q_proj.bias`, [W], seed));
    t.push(tensor(`${b}attn.k_proj.weight`, [W, W], seed));
    t.push(tensor(`${b}attn.v_proj.weight`, [W, W], seed), tensor(`${b}attn.v_proj.bias`, [W], seed));
    t.push(tensor(`${b}attn.inner_attn_ln.weight`, [W], seed), tensor(`${b}attn.inner_attn_ln.bias`, [W], seed));
    t.push(tensor(`${b}attn.proj.weight`, [W, W], seed), tensor(`${b}attn.proj.bias`, [W], seed));
    t.push(tensor(`${b}norm2.weight`, [W], seed), tensor(`${b}norm2.bias`, [W], seed));
    t.push(tensor(`${b}mlp.w1.weight`, [H, W], seed), tensor(`${b}mlp.w1.bias`, [H], seed));
    t.push(tensor(`${b}mlp.w2.weight`, [H, W], seed), tensor(`${b}mlp.w2.bias`, [H], seed));
    t.push(tensor(`${b}mlp.ffn_ln.weight`, [H], seed), tensor(`${b}mlp.ffn_ln.bias`, [H], seed));
    t.push(tensor(`${b}mlp.w3.weight`, [W, H], seed), tensor(`${b}mlp.w3.bias`, [W], seed));
    // eva_clip's state dict carries the shared RoPE buffers under every block too.
    t.push(...ropeBuffers(`${b}attn.rope.`, G, W / g.heads));
  }
  t.push(...ropeBuffers(`${v}rope.`, G, W / g.heads));
  t.push(tensor(`${v}norm.weight`, [W], seed), tensor(`${v}norm.bias`, [W], seed));
  t.push(tensor(`${v}head.weight`, [g.embedDim, W], seed), tensor(`${v}head.bias`, [g.embedDim], seed));
  if (withAdapter) t.push(...adapterTensors('text.', g.adapterDim, g.embedDim, seed));
  t.push({ name: 'logit_scale', shape: [], fill: () => new Float32Array([Math.log(1 / 0.07)]) });
  return t;
}

