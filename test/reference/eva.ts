/**
 * Reference forward pass of an EVA02 vision tower with eva_clip semantics
 * (microsoft/LLM2CLIP `llm2clip/eva_clip/eva_vit_model.py` EVAVisionTransformer with subln=True,
 * naiveswiglu=True, postnorm=False, no layer scale, use_mean_pooling=False; `rope.py` VisionRotaryEmbeddingFast),
 * in float64.
 *
 *   x = cat(cls_token, patch_embed.proj(pixels).flatten(2).transpose(1, 2)) + pos_embed      (conv with bias, no pre-LN)
 *   per block (Block.forward, postnorm=False, gamma_1 = None):
 *     x = x + attn(norm1(x))            Attention.forward, subln branch, non-xattn path
 *     x = x + mlp(norm2(x))             SwiGLU.forward: w3(ffn_ln(silu(w1 x) * w2 x))
 *   patch_features = x after block `tapLayer`, tokens 1..
 *   image_embeds   = head(norm(x)[:, 0])                    forward_features + head (Linear with bias)
 */
import type { TensorReader } from '../../src/formats/tensor.js';
import { gridSide, type RopeSpec, type TowerSpec } from '../../src/vision/spec.js';
import { addInPlace, attention, layerNorm, linear, patchEmbed, silu, weight } from './linalg.js';
import type { TowerOutputs } from './forward.js';

/**
 * VisionRotaryEmbeddingFast(dim = head_dim // 2, pt_seq_len = ptHwSeqLen, ft_seq_len = G if intp_freq else None)
 * as built by EVAVisionTransformer. Returns freqs_cos / freqs_sin, each [G*G, head_dim] row-major.
 *
 *   freqs = 1 / theta ** (arange(0, dim, 2)[:dim // 2] / dim)             # dim // 2 frequencies
 *   t     = arange(ft_seq_len) / ft_seq_len * pt_seq_len                   # intp_freq: arange(G) / G * pt
 *   freqs = einsum('..., f -> ... f', t, freqs)                            # [G, dim // 2]
 *   freqs = repeat(freqs, '... n -> ... (n r)', r = 2)                     # each frequency twice, adjacent: [G, dim]
 *   freqs = broadcat((freqs[:, None, :], freqs[None, :, :]), dim = -1)     # [G, G, 2 dim]: row (h) angles, then column (w)
 *   freqs_cos = freqs.cos().view(-1, 2 dim)                                # [G*G, head_dim], index gy*G + gx
 */
export function ropeTables(rope: RopeSpec, G: number, headDim: number): { cos: Float64Array; sin: Float64Array } {
  const dim = Math.floor(headDim / 2);
  const nFreq = Math.floor(dim / 2); // len(arange(0, dim, 2)[:dim // 2])
  if (4 * nFreq !== headDim) {
    // eva_clip would fail to broadcast the [.., 2 * 2 * nFreq] tables against a head of headDim.
    throw new Error(`reference: EVA RoPE needs head_dim divisible by 4, got ${headDim}`);
  }
  // Without intp_freq, ft_seq_len = pt_seq_len and the table only fits the tokens when G == pt_hw_seq_len.
  const ft = rope.intpFreq ? G : rope.ptHwSeqLen;
  if (ft !== G) throw new Error(`reference: intp_freq=false needs grid ${G} == pt_hw_seq_len ${rope.ptHwSeqLen} (eva_clip would fail)`);

  const freqs: number[] = [];
  for (let i = 0; i < nFreq; i++) freqs.push(1 / rope.theta ** ((2 * i) / dim));
  const t: number[] = [];
  for (let p = 0; p < ft; p++) t.push((p / ft) * rope.ptHwSeqLen);
  // per-axis angles [G, dim], '(n r)' with r = 2: column j uses frequency floor(j / 2)
  const axis = (p: number, j: number): number => t[p] * freqs[Math.floor(j / 2)];

  const cos = new Float64Array(G * G * headDim);
  const sin = new Float64Array(G * G * headDim);
  for (let gy = 0; gy < G; gy++) {
    for (let gx = 0; gx < G; gx++) {
      for (let j = 0; j < headDim; j++) {
        const angle = j < dim ? axis(gy, j) : axis(gx, j - dim);
        cos[(gy * G + gx) * headDim + j] = Math.cos(angle);
        sin[(gy * G + gx) * headDim + j] = Math.sin(angle);
      }
    }
  }
  return { cos, sin };
}

/**
 * Applies `t * freqs_cos + rotate_half(t) * freqs_sin` in place to tokens 1..T-1 of every head of x [T, heads*headDim]
 * (Attention.forward: `q[:, :, 1:, :]`, CLS untouched). rotate_half pairs adjacent dims:
 * (x[2i], x[2i+1]) -> (-x[2i+1], x[2i]).
 */
export function applyRope(x: Float64Array, T: number, heads: number, headDim: number, cos: Float64Array, sin: Float64Array): void {
  const D = heads * headDim;
  const rotated = new Float64Array(headDim);
  for (let tok = 1; tok < T; tok++) {
    const pos = tok - 1;
    for (let h = 0; h < heads; h++) {
      const base = tok * D + h * headDim;
      for (let i = 0; i < headDim; i += 2) {
        rotated[i] = -x[base + i + 1];
        rotated[i + 1] = x[base + i];
      }
      for (let j = 0; j < headDim; j++) {
        x[base + j] = x[base + j] * cos[pos * headDim + j] + rotated[j] * sin[pos * headDim + j];
      }
    }
  }
}

export function referenceEva(spec: TowerSpec, weights: TensorReader, pixels: Float32Array, n: number): TowerOutputs {
  const W = spec.width;
  const G = gridSide(spec);
  const T = G * G + 1;
  const M = spec.mlpWidth;
  const P = spec.patchSize;
  const eps = spec.layerNormEps;
  const headDim = W / spec.heads;
  if (!Number.isInteger(headDim)) throw new Error('reference: width must be divisible by heads');
  if (pixels.length !== n * 3 * spec.imageSize * spec.imageSize) throw new Error('reference: pixels length mismatch');
  const scale = headDim ** -0.5;
  const subln = spec.subln === true;
  const rope = spec.rope ? ropeTables(spec.rope, G, headDim) : undefined;

  const wt = (name: string, shape: readonly number[]) => weight(weights, name, shape);
  const v = 'visual.';
  const convW = wt(`${v}patch_embed.proj.weight`, [W, 3, P, P]);
  const convB = wt(`${v}patch_embed.proj.bias`, [W]);
  const cls = wt(`${v}cls_token`, [1, 1, W]);
  const pos = wt(`${v}pos_embed`, [1, T, W]);
  const normG = wt(`${v}norm.weight`, [W]);
  const normB = wt(`${v}norm.bias`, [W]);
  const headW = wt(`${v}head.weight`, [spec.embedDim, W]);
  const headB = wt(`${v}head.bias`, [spec.embedDim]);

  const patchFeatures = new Float64Array(n * G * G * W);
  const imageEmbeds = new Float64Array(n * spec.embedDim);

  for (let img = 0; img < n; img++) {
    // patch_embed, cat cls_token, + pos_embed
    const x = new Float64Array(T * W);
    for (let i = 0; i < W; i++) x[i] = cls[i];
    x.set(patchEmbed(pixels, img, spec.imageSize, P, W, convW, convB), W);
    addInPlace(x, pos);

    for (let l = 0; l < spec.layers; l++) {
      const p = `${v}blocks.${l}.`;
      // x = x + attn(norm1(x))
      const h1 = layerNorm(x, T, W, wt(`${p}norm1.weight`, [W]), wt(`${p}norm1.bias`, [W]), eps);
      const q = linear(h1, T, W, wt(`${p}attn.q_proj.weight`, [W, W]), W, wt(`${p}attn.q_proj.bias`, [W]));
      const k = linear(h1, T, W, wt(`${p}attn.k_proj.weight`, [W, W]), W); // k_proj: bias=False
      const val = linear(h1, T, W, wt(`${p}attn.v_proj.weight`, [W, W]), W, wt(`${p}attn.v_proj.bias`, [W]));
      if (rope) {
        applyRope(q, T, spec.heads, headDim, rope.cos, rope.sin);
        applyRope(k, T, spec.heads, headDim, rope.cos, rope.sin);
      }
      let a = attention(q, k, val, T, spec.heads, headDim, scale);
      if (subln) a = layerNorm(a, T, W, wt(`${p}attn.inner_attn_ln.weight`, [W]), wt(`${p}attn.inner_attn_ln.bias`, [W]), eps);
      addInPlace(x, linear(a, T, W, wt(`${p}attn.proj.weight`, [W, W]), W, wt(`${p}attn.proj.bias`, [W])));

      // x = x + mlp(norm2(x)), SwiGLU
      const h2 = layerNorm(x, T, W, wt(`${p}norm2.weight`, [W]), wt(`${p}norm2.bias`, [W]), eps);
      const x1 = linear(h2, T, W, wt(`${p}mlp.w1.weight`, [M, W]), M, wt(`${p}mlp.w1.bias`, [M]));
      const x2 = linear(h2, T, W, wt(`${p}mlp.w2.weight`, [M, W]), M, wt(`${p}mlp.w2.bias`, [M]));
      let hidden: Float64Array = new Float64Array(T * M);
      for (let i = 0; i < hidden.length; i++) hidden[i] = silu(x1[i]) * x2[i];
      if (subln) hidden = layerNorm(hidden, T, M, wt(`${p}mlp.ffn_ln.weight`, [M]), wt(`${p}mlp.ffn_ln.bias`, [M]), eps);
      addInPlace(x, linear(hidden, T, M, wt(`${p}mlp.w3.weight`, [W, M]), W, wt(`${p}mlp.w3.bias`, [W])));

      if (l === spec.tapLayer) patchFeatures.set(x.subarray(W), img * G * G * W);
    }

    // forward_features: norm(x)[:, 0]; then head
    const pooled = layerNorm(x.subarray(0, W), 1, W, normG, normB, eps);
    imageEmbeds.set(linear(pooled, 1, W, headW, spec.embedDim, headB), img * spec.embedDim);
  }
  return { patchFeatures, imageEmbeds };
}
