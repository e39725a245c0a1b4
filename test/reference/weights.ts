/**
 * Deterministic random weights with the canonical names and shapes of src/vision/spec.ts, for tiny test towers.
 * Scales keep activations O(1): matrices N(0, std) with std = clamp(0.5/sqrt(fan_in), 0.02, 0.1),
 * biases N(0, 0.02), LayerNorm gammas 1 + N(0, 0.1) and betas N(0, 0.05), class/cls token N(0, 0.5),
 * position embeddings N(0, 0.3). Each tensor gets its own stream seeded from (seed, name), so the values of one
 * tensor do not depend on which other tensors exist.
 */
import { MemoryTensors, numel } from '../../src/formats/tensor.js';
import { gridSide, type AdapterSpec, type TowerSpec } from '../../src/vision/spec.js';
import { adapterHidden } from './adapter.js';
import { mulberry32 } from '../../src/util/random.js';

type Kind = 'matrix' | 'bias' | 'lnWeight' | 'lnBias' | 'token' | 'position';

export interface WeightEntry {
  readonly name: string;
  readonly shape: readonly number[];
  readonly kind: Kind;
}

/** Every weight a tower of this spec reads, in module order. */
export function towerWeightEntries(spec: TowerSpec): WeightEntry[] {
  const W = spec.width;
  const M = spec.mlpWidth;
  const P = spec.patchSize;
  const T = gridSide(spec) ** 2 + 1;
  const E: WeightEntry[] = [];
  const add = (name: string, shape: readonly number[], kind: Kind) => E.push({ name, shape, kind });
  const ln = (prefix: string, dim: number) => {
    add(`${prefix}.weight`, [dim], 'lnWeight');
    add(`${prefix}.bias`, [dim], 'lnBias');
  };
  const lin = (prefix: string, out: number, inp: number, bias = true) => {
    add(`${prefix}.weight`, [out, inp], 'matrix');
    if (bias) add(`${prefix}.bias`, [out], 'bias');
  };
  if (spec.arch === 'openai') {
    const v = 'vision_model.';
    add(`${v}embeddings.class_embedding`, [W], 'token');
    add(`${v}embeddings.patch_embedding.weight`, [W, 3, P, P], 'matrix');
    add(`${v}embeddings.position_embedding.weight`, [T, W], 'position');
    ln(`${v}pre_layrnorm`, W);
    for (let l = 0; l < spec.layers; l++) {
      const p = `${v}encoder.layers.${l}.`;
      lin(`${p}self_attn.k_proj`, W, W);
      lin(`${p}self_attn.v_proj`, W, W);
      lin(`${p}self_attn.q_proj`, W, W);
      lin(`${p}self_attn.out_proj`, W, W);
      ln(`${p}layer_norm1`, W);
      lin(`${p}mlp.fc1`, M, W);
      lin(`${p}mlp.fc2`, W, M);
      ln(`${p}layer_norm2`, W);
    }
    ln(`${v}post_layernorm`, W);
    lin('visual_projection', spec.embedDim, W, false);
  } else {
    const v = 'visual.';
    add(`${v}cls_token`, [1, 1, W], 'token');
    add(`${v}pos_embed`, [1, T, W], 'position');
    add(`${v}patch_embed.proj.weight`, [W, 3, P, P], 'matrix');
    add(`${v}patch_embed.proj.bias`, [W], 'bias');
    for (let l = 0; l < spec.layers; l++) {
      const p = `${v}blocks.${l}.`;
      ln(`${p}norm1`, W);
      lin(`${p}attn.q_proj`, W, W);
      lin(`${p}attn.k_proj`, W, W, false);
      lin(`${p}attn.v_proj`, W, W);
      if (spec.subln) ln(`${p}attn.inner_attn_ln`, W);
      lin(`${p}attn.proj`, W, W);
      ln(`${p}norm2`, W);
      lin(`${p}mlp.w1`, M, W);
      lin(`${p}mlp.w2`, M, W);
      if (spec.subln) ln(`${p}mlp.ffn_ln`, M);
      lin(`${p}mlp.w3`, W, M);
    }
    ln(`${v}norm`, W);
    lin(`${v}head`, spec.embedDim, W);
  }
  return E;
}

export function adapterWeightEntries(spec: AdapterSpec): WeightEntry[] {
  const D = spec.inputDim;
  const H = adapterHidden(spec);
  const E: WeightEntry[] = [];
  for (let b = 0; b < spec.blocks; b++) {
    const p = `text_adaptor.${b}.`;
    E.push({ name: `${p}fn.0.weight`, shape: [H, D], kind: 'matrix' });
    E.push({ name: `${p}fn.0.bias`, shape: [H], kind: 'bias' });
    E.push({ name: `${p}fn.3.weight`, shape: [D, H], kind: 'matrix' });
    E.push({ name: `${p}fn.3.bias`, shape: [D], kind: 'bias' });
    E.push({ name: `${p}ln.weight`, shape: [D], kind: 'lnWeight' });
    E.push({ name: `${p}ln.bias`, shape: [D], kind: 'lnBias' });
  }
  E.push({ name: `text_adaptor.${spec.blocks}.weight`, shape: [D], kind: 'lnWeight' });
  E.push({ name: `text_adaptor.${spec.blocks}.bias`, shape: [D], kind: 'lnBias' });
  E.push({ name: `text_adaptor.${spec.blocks + 1}.weight`, shape: [spec.embedDim, D], kind: 'matrix' });
  E.push({ name: `text_adaptor.${spec.blocks + 1}.bias`, shape: [spec.embedDim], kind: 'bias' });
  return E;
}

export { mulberry32 };

/** Standard normals by Box-Muller. */
export function gaussian(seed: number): () => number {
  const u = mulberry32(seed);
  return () => {
    const u1 = 1 - u(); // (0, 1]
    const u2 = u();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  };
}

/** FNV-1a of the name, mixed with the seed. */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return Math.imul(h ^ (seed * 0x9e3779b1), 0x85ebca6b) >>> 0;
}

function fill(e: WeightEntry, seed: number): Float32Array {
  const g = gaussian(tensorSeed(seed, e.name));
  const out = new Float32Array(numel(e.shape));
  const fanIn = e.shape.length > 1 ? numel(e.shape.slice(1)) : e.shape[0];
  for (let i = 0; i < out.length; i++) {
    const z = g();
    switch (e.kind) {
      case 'matrix':
        out[i] = z * Math.min(0.1, Math.max(0.02, 0.5 / Math.sqrt(fanIn)));
        break;
      case 'bias':
        out[i] = 0.02 * z;
        break;
      case 'lnWeight':
        out[i] = 1 + 0.1 * z;
        break;
      case 'lnBias':
        out[i] = 0.05 * z;
        break;
      case 'token':
        out[i] = 0.5 * z;
        break;
      case 'position':
        out[i] = 0.3 * z;
        break;
    }
  }
  return out;
}

export function randomTowerWeights(spec: TowerSpec, seed: number): MemoryTensors {
  const m = new MemoryTensors(`random ${spec.arch} tower (seed ${seed})`);
  for (const e of towerWeightEntries(spec)) m.set(e.name, e.shape, fill(e, seed));
  return m;
}

export function randomAdapterWeights(spec: AdapterSpec, seed: number): MemoryTensors {
  const m = new MemoryTensors(`random adapter (seed ${seed})`);
  for (const e of adapterWeightEntries(spec)) m.set(e.name, e.shape, fill(e, seed));
  return m;
}

/** Deterministic N(0, 1) values, e.g. normalised pixels [n, 3, S, S] or LLM embeddings. */
export function randomInput(length: number, seed: number, std = 1): Float32Array {
  const g = gaussian(tensorSeed(seed, 'input'));
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = std * g();
  return out;
}
