/**
 * OpenAI-CLIP vision tower (Hugging Face CLIPVisionModel semantics) as ONNX nodes.
 * See graph-blocks.ts for the 2-D residual-stream layout.
 */
import type { TowerSpec } from './spec.js';
import { gridSide } from './spec.js';
import {
  attention,
  clsRows,
  embedPatches,
  expectLinear,
  expectNorm,
  patchRows,
  toHeads,
  type ShapeTable,
  type WeightSource,
} from './graph-blocks.js';

const VM = 'vision_model';
const layer = (i: number) => `${VM}.encoder.layers.${i}`;

export function openaiShapes(spec: TowerSpec): ShapeTable {
  const W = spec.width;
  const G = gridSide(spec);
  const t: ShapeTable = new Map();
  t.set(`${VM}.embeddings.class_embedding`, [W]);
  t.set(`${VM}.embeddings.patch_embedding.weight`, [W, 3, spec.patchSize, spec.patchSize]);
  t.set(`${VM}.embeddings.position_embedding.weight`, [G * G + 1, W]);
  expectNorm(t, `${VM}.pre_layrnorm`, W);
  for (let i = 0; i < spec.layers; i++) {
    const l = layer(i);
    expectNorm(t, `${l}.layer_norm1`, W);
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) expectLinear(t, `${l}.self_attn.${p}`, W, W);
    expectNorm(t, `${l}.layer_norm2`, W);
    expectLinear(t, `${l}.mlp.fc1`, spec.mlpWidth, W);
    expectLinear(t, `${l}.mlp.fc2`, W, spec.mlpWidth);
  }
  expectNorm(t, `${VM}.post_layernorm`, W);
  t.set('visual_projection.weight', [spec.embedDim, W]);
  return t;
}

/**
 * One pre-LN block on the 2-D stream x [B·T, W]. With `clsOnly` (used for a final block past the tap)
 * queries, residual and MLP cover only the CLS row: keys and values still see every token, and the
 * result is [B, W]. That skips ~all of the last block's cost, since only CLS feeds image_embeds.
 */
function block(src: WeightSource, spec: TowerSpec, i: number, x: string, clsOnly: boolean): string {
  const { g } = src;
  const W = spec.width;
  const H = spec.heads;
  const D = W / H;
  const T = gridSide(spec) ** 2 + 1;
  const l = layer(i);
  const eps = spec.layerNormEps;
  const scale = D ** -0.5;
  const part = (name: string, s = 1) => ({
    weight: src.read(`${l}.self_attn.${name}.weight`),
    bias: src.read(`${l}.self_attn.${name}.bias`),
    out: W,
    scale: s,
  });

  const h = src.layerNorm(x, `${l}.layer_norm1`, W, eps);
  let q: string;
  let k: string;
  let v: string;
  let residual = x;
  let tq = T;
  if (clsOnly) {
    tq = 1;
    residual = clsRows(g, x, T, W);
    q = src.linear(clsRows(g, h, T, W), `${l}.self_attn.q_proj`, [part('q_proj', scale)], W);
    [k, v] = g.split(src.linear(h, `${l}.self_attn.kv_proj`, [part('k_proj'), part('v_proj')], W), [W, W], 1);
  } else {
    const qkv = src.linear(h, `${l}.self_attn.qkv_proj`, [part('q_proj', scale), part('k_proj'), part('v_proj')], W);
    [q, k, v] = g.split(qkv, [W, W, W], 1);
  }
  const ctx = attention(g, toHeads(g, q, tq, H, D), toHeads(g, k, T, H, D, true), toHeads(g, v, T, H, D), W);
  const attnOut = src.linearNamed(ctx, `${l}.self_attn.out_proj`, W, W);
  const x1 = g.add(residual, attnOut);

  const h2 = src.layerNorm(x1, `${l}.layer_norm2`, W, eps);
  const fc1 = src.linearNamed(h2, `${l}.mlp.fc1`, spec.mlpWidth, W);
  const act = spec.activation === 'gelu' ? g.gelu(fc1) : g.quickGelu(fc1);
  return g.add(x1, src.linearNamed(act, `${l}.mlp.fc2`, W, spec.mlpWidth));
}

/** Builds the tower body; returns the values for patch_features [B, G², W] and image_embeds [B, P]. */
export function buildOpenai(src: WeightSource, spec: TowerSpec, pixels: string): { patchFeatures: string; imageEmbeds: string } {
  const { g } = src;
  const W = spec.width;
  const G = gridSide(spec);
  const T = G * G + 1;
  const cls = src.read(`${VM}.embeddings.class_embedding`);
  const pos = src.read(`${VM}.embeddings.position_embedding.weight`);
  let x = g.scoped('embeddings', () =>
    embedPatches(src, pixels, {
      width: W,
      patch: spec.patchSize,
      grid: G,
      convWeight: `${VM}.embeddings.patch_embedding.weight`,
      cls,
      pos,
    }),
  );
  x = src.layerNorm(x, `${VM}.pre_layrnorm`, W, spec.layerNormEps);

  let patchFeatures = '';
  let clsDone = false;
  for (let i = 0; i < spec.layers; i++) {
    const clsOnly = i === spec.layers - 1 && i > spec.tapLayer;
    x = g.scoped(`layers.${i}`, () => block(src, spec, i, x, clsOnly));
    clsDone = clsOnly;
    if (i === spec.tapLayer) patchFeatures = g.scoped('tap', () => patchRows(g, x, T, W));
  }

  const imageEmbeds = g.scoped('head', () => {
    const pooled = src.layerNorm(clsDone ? x : clsRows(g, x, T, W), `${VM}.post_layernorm`, W, spec.layerNormEps);
    return src.linearNamed(pooled, 'visual_projection', spec.embedDim, W, false);
  });
  return { patchFeatures, imageEmbeds };
}
