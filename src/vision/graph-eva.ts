/**
 * EVA02-CLIP vision tower (eva_clip `EVAVisionTransformer` with 2D RoPE, SwiGLU and sub-LayerNorms)
 * as ONNX nodes. See graph-blocks.ts for the 2-D residual-stream layout.
 *
 * RoPE decision: eva_clip rotates adjacent pairs (x[2i], x[2i+1]). Because q and k are dotted only with
 * each other, any per-head reordering of their dims applied to both leaves attention unchanged, so the
 * q/k projection columns are reordered at conversion time to "halves" order (all even dims, then all odd
 * dims). A pair then sits at [.., 0, p] / [.., 1, p] of a [.., 2, D/2] view, and the rotation is
 * x·C + Gather(x, [1,0], axis=-2)·S with C = [cos, cos] and S = [-sin, sin] tables: four element-wise
 * passes with contiguous D/2-float runs, no Slice/Concat/Neg, and q and k rotated in one go.
 */
import type { RopeSpec, TowerSpec } from './spec.js';
import { gridSide } from './spec.js';
import {
  attention,
  clsRows,
  embedPatches,
  expectLinear,
  expectNorm,
  patchRows,
  toHeads,
  type LinearPart,
  type ShapeTable,
  type WeightSource,
} from './graph-blocks.js';
import type { OnnxGraph } from '../onnx/graph.js';

const V = 'visual';
const blk = (i: number) => `${V}.blocks.${i}`;

export function evaShapes(spec: TowerSpec): ShapeTable {
  const W = spec.width;
  const M = spec.mlpWidth;
  const G = gridSide(spec);
  const t: ShapeTable = new Map();
  t.set(`${V}.patch_embed.proj.weight`, [W, 3, spec.patchSize, spec.patchSize]);
  t.set(`${V}.patch_embed.proj.bias`, [W]);
  t.set(`${V}.cls_token`, [1, 1, W]);
  t.set(`${V}.pos_embed`, [1, G * G + 1, W]);
  for (let i = 0; i < spec.layers; i++) {
    const b = blk(i);
    expectNorm(t, `${b}.norm1`, W);
    expectLinear(t, `${b}.attn.q_proj`, W, W);
    expectLinear(t, `${b}.attn.k_proj`, W, W, false);
    expectLinear(t, `${b}.attn.v_proj`, W, W);
    if (spec.subln) expectNorm(t, `${b}.attn.inner_attn_ln`, W);
    expectLinear(t, `${b}.attn.proj`, W, W);
    expectNorm(t, `${b}.norm2`, W);
    expectLinear(t, `${b}.mlp.w1`, M, W);
    expectLinear(t, `${b}.mlp.w2`, M, W);
    if (spec.subln) expectNorm(t, `${b}.mlp.ffn_ln`, M);
    expectLinear(t, `${b}.mlp.w3`, W, M);
  }
  expectNorm(t, `${V}.norm`, W);
  expectLinear(t, `${V}.head`, spec.embedDim, W);
  return t;
}

/** Column order for `heads` heads in halves order: new dim j of a head takes source dim 2j (j < D/2) or 2(j-D/2)+1. */
export function halvesOrder(heads: number, headDim: number): Int32Array {
  const half = headDim / 2;
  const order = new Int32Array(heads * headDim);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < headDim; j++) order[h * headDim + j] = h * headDim + (j < half ? 2 * j : 2 * (j - half) + 1);
  }
  return order;
}

/**
 * C and S tables [T, 1, 2, D/2] (T = G²+1, CLS first with cos 1 / sin 0) for halves-ordered heads,
 * computed in float64 and rounded once. Pair p < D/4 rotates by the patch row, p ≥ D/4 by the column,
 * with frequency theta^(-2f/(D/2)), f = p mod D/4.
 */
export function ropeTables(grid: number, headDim: number, rope: RopeSpec): { cos: Float32Array; sin: Float32Array } {
  if (headDim % 4 !== 0) throw new Error(`RoPE needs a head dim divisible by 4, got ${headDim}`);
  if (!rope.intpFreq && grid !== rope.ptHwSeqLen) {
    throw new Error(`RoPE without intp_freq needs grid ${grid} == pt_hw_seq_len ${rope.ptHwSeqLen}`);
  }
  const half = headDim / 2;
  const quarter = headDim / 4;
  const T = grid * grid + 1;
  const cos = new Float32Array(T * headDim);
  const sin = new Float32Array(T * headDim);
  const position = (i: number) => (rope.intpFreq ? (i / grid) * rope.ptHwSeqLen : i);
  cos.fill(1, 0, headDim);
  for (let t = 1; t < T; t++) {
    const row = Math.floor((t - 1) / grid);
    const col = (t - 1) % grid;
    for (let p = 0; p < half; p++) {
      const f = p % quarter;
      const angle = position(p < quarter ? row : col) * rope.theta ** (-(2 * f) / half);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[t * headDim + p] = c;
      cos[t * headDim + half + p] = c;
      sin[t * headDim + p] = -s;
      sin[t * headDim + half + p] = s;
    }
  }
  return { cos, sin };
}

/**
 * Rotates halves-ordered heads: x reshapeable to [B, T, groups, D] → [B, T, groups, 2, D/2].
 * `cos`/`sin` are [T, 1, 2, D/2] values from ropeTables.
 */
export function applyRope(g: OnnxGraph, x: string, tokens: number, groups: number, headDim: number, cos: string, sin: string): string {
  const x5 = g.reshape(x, [-1, tokens, groups, 2, headDim / 2]);
  return g.add(g.mul(x5, cos), g.mul(g.gather(x5, [1, 0], 3), sin));
}

interface Rope {
  cos: string;
  sin: string;
}

function block(src: WeightSource, spec: TowerSpec, i: number, x: string, rope: Rope | undefined, clsOnly: boolean): string {
  const { g } = src;
  const W = spec.width;
  const H = spec.heads;
  const D = W / H;
  const M = spec.mlpWidth;
  const T = gridSide(spec) ** 2 + 1;
  const b = blk(i);
  const eps = spec.layerNormEps;
  const order = rope ? halvesOrder(H, D) : undefined;
  const q: LinearPart = {
    weight: src.read(`${b}.attn.q_proj.weight`),
    bias: src.read(`${b}.attn.q_proj.bias`),
    out: W,
    scale: D ** -0.5,
    order,
  };
  const k: LinearPart = { weight: src.read(`${b}.attn.k_proj.weight`), out: W, order };
  const v: LinearPart = { weight: src.read(`${b}.attn.v_proj.weight`), bias: src.read(`${b}.attn.v_proj.bias`), out: W };

  const h = src.layerNorm(x, `${b}.norm1`, W, eps);
  let qh: string;
  let kT: string;
  let vv: string;
  let residual = x;
  let tq = T;
  if (clsOnly) {
    // RoPE leaves CLS untouched, so the lone CLS query needs no rotation.
    tq = 1;
    residual = clsRows(g, x, T, W);
    qh = toHeads(g, src.linear(clsRows(g, h, T, W), `${b}.attn.q_proj`, [q], W), 1, H, D);
    const [kk, v2] = g.split(src.linear(h, `${b}.attn.kv_proj`, [k, v], W), [W, W], 1);
    kT = toHeads(g, rope ? applyRope(g, kk, T, H, D, rope.cos, rope.sin) : kk, T, H, D, true);
    vv = v2;
  } else {
    const [qk, v2] = g.split(src.linear(h, `${b}.attn.qkv_proj`, [q, k, v], W), [2 * W, W], 1);
    const [qq, kk] = rope ? g.split(applyRope(g, qk, T, 2 * H, D, rope.cos, rope.sin), [H, H], 2) : g.split(qk, [W, W], 1);
    qh = toHeads(g, qq, T, H, D);
    kT = toHeads(g, kk, T, H, D, true);
    vv = v2;
  }
  let ctx = attention(g, qh, kT, toHeads(g, vv, T, H, D), W);
  if (spec.subln) ctx = src.layerNorm(ctx, `${b}.attn.inner_attn_ln`, W, eps);
  const x1 = g.add(residual, src.linearNamed(ctx, `${b}.attn.proj`, W, W));

  const h2 = src.layerNorm(x1, `${b}.norm2`, W, eps);
  const w1: LinearPart = { weight: src.read(`${b}.mlp.w1.weight`), bias: src.read(`${b}.mlp.w1.bias`), out: M };
  const w2: LinearPart = { weight: src.read(`${b}.mlp.w2.weight`), bias: src.read(`${b}.mlp.w2.bias`), out: M };
  const [gate, up] = g.split(src.linear(h2, `${b}.mlp.w12`, [w1, w2], W), [M, M], 1);
  let m = g.mul(g.silu(gate), up);
  if (spec.subln) m = src.layerNorm(m, `${b}.mlp.ffn_ln`, M, eps);
  return g.add(x1, src.linearNamed(m, `${b}.mlp.w3`, W, M));
}

export function buildEva(src: WeightSource, spec: TowerSpec, pixels: string): { patchFeatures: string; imageEmbeds: string } {
  const { g } = src;
  const W = spec.width;
  const G = gridSide(spec);
  const T = G * G + 1;
  const D = W / spec.heads;
  let rope: Rope | undefined;
  if (spec.rope) {
    const tables = ropeTables(G, D, spec.rope);
    rope = {
      cos: g.weight('rope.cos', tables.cos, [T, 1, 2, D / 2], 'fp32'),
      sin: g.weight('rope.sin', tables.sin, [T, 1, 2, D / 2], 'fp32'),
    };
  }
  const cls = src.read(`${V}.cls_token`);
  const pos = src.read(`${V}.pos_embed`);
  let x = g.scoped('embeddings', () =>
    embedPatches(src, pixels, {
      width: W,
      patch: spec.patchSize,
      grid: G,
      convWeight: `${V}.patch_embed.proj.weight`,
      convBias: `${V}.patch_embed.proj.bias`,
      cls,
      pos,
    }),
  );

  let patchFeatures = '';
  let clsDone = false;
  for (let i = 0; i < spec.layers; i++) {
    const clsOnly = i === spec.layers - 1 && i > spec.tapLayer;
    x = g.scoped(`blocks.${i}`, () => block(src, spec, i, x, rope, clsOnly));
    clsDone = clsOnly;
    if (i === spec.tapLayer) patchFeatures = g.scoped('tap', () => patchRows(g, x, T, W));
  }

  const imageEmbeds = g.scoped('head', () => {
    const pooled = src.layerNorm(clsDone ? x : clsRows(g, x, T, W), `${V}.norm`, W, spec.layerNormEps);
    return src.linearNamed(pooled, `${V}.head`, spec.embedDim, W);
  });
  return { patchFeatures, imageEmbeds };
}
