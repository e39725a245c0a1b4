/**
 * Reference forward pass of an OpenAI-CLIP vision tower with Hugging Face CLIP semantics
 * (transformers `CLIPVisionModel` + `CLIPModel.visual_projection`), in float64.
 *
 *   embeddings  = cat(class_embedding, conv(pixels).flatten(2).transpose(1, 2)) + position_embedding   (conv: no bias)
 *   h           = pre_layrnorm(embeddings)                                  # = hidden_states[0]
 *   per layer:  h = h + out_proj(attn(layer_norm1(h)))  ;  h = h + fc2(act(fc1(layer_norm2(h))))
 *   patch_features = h after layer `tapLayer`, tokens 1..   # hidden_states[tapLayer + 1][:, 1:]
 *   image_embeds   = visual_projection(post_layernorm(h_last[:, 0]))          # no bias, not normalised
 */
import type { TensorReader } from '../../src/formats/tensor.js';
import { gridSide, type TowerSpec } from '../../src/vision/spec.js';
import {
  addInPlace,
  attention,
  geluExact,
  layerNorm,
  linear,
  map,
  patchEmbed,
  quickGelu,
  weight,
} from './linalg.js';
import type { TowerOutputs } from './forward.js';

export function referenceOpenai(spec: TowerSpec, weights: TensorReader, pixels: Float32Array, n: number): TowerOutputs {
  const W = spec.width;
  const G = gridSide(spec);
  const T = G * G + 1;
  const M = spec.mlpWidth;
  const P = spec.patchSize;
  const eps = spec.layerNormEps;
  const headDim = W / spec.heads;
  if (!Number.isInteger(headDim)) throw new Error('reference: width must be divisible by heads');
  if (pixels.length !== n * 3 * spec.imageSize * spec.imageSize) throw new Error('reference: pixels length mismatch');
  const act = spec.activation === 'gelu' ? geluExact : quickGelu;
  const scale = headDim ** -0.5;

  const wt = (name: string, shape: readonly number[]) => weight(weights, name, shape);
  const v = 'vision_model.';
  const patchW = wt(`${v}embeddings.patch_embedding.weight`, [W, 3, P, P]);
  const classEmb = wt(`${v}embeddings.class_embedding`, [W]);
  const posEmb = wt(`${v}embeddings.position_embedding.weight`, [T, W]);
  const preG = wt(`${v}pre_layrnorm.weight`, [W]);
  const preB = wt(`${v}pre_layrnorm.bias`, [W]);
  const postG = wt(`${v}post_layernorm.weight`, [W]);
  const postB = wt(`${v}post_layernorm.bias`, [W]);
  const proj = wt('visual_projection.weight', [spec.embedDim, W]);

  const patchFeatures = new Float64Array(n * G * G * W);
  const imageEmbeds = new Float64Array(n * spec.embedDim);

  for (let img = 0; img < n; img++) {
    // CLIPVisionEmbeddings
    const patches = patchEmbed(pixels, img, spec.imageSize, P, W, patchW, undefined);
    let h: Float64Array = new Float64Array(T * W);
    for (let i = 0; i < W; i++) h[i] = classEmb[i];
    h.set(patches, W);
    addInPlace(h, posEmb);
    // pre_layrnorm
    h = layerNorm(h, T, W, preG, preB, eps);

    for (let l = 0; l < spec.layers; l++) {
      const p = `${v}encoder.layers.${l}.`;
      // self-attention block
      const x1 = layerNorm(h, T, W, wt(`${p}layer_norm1.weight`, [W]), wt(`${p}layer_norm1.bias`, [W]), eps);
      const q = linear(x1, T, W, wt(`${p}self_attn.q_proj.weight`, [W, W]), W, wt(`${p}self_attn.q_proj.bias`, [W]));
      const k = linear(x1, T, W, wt(`${p}self_attn.k_proj.weight`, [W, W]), W, wt(`${p}self_attn.k_proj.bias`, [W]));
      const val = linear(x1, T, W, wt(`${p}self_attn.v_proj.weight`, [W, W]), W, wt(`${p}self_attn.v_proj.bias`, [W]));
      const a = attention(q, k, val, T, spec.heads, headDim, scale);
      addInPlace(h, linear(a, T, W, wt(`${p}self_attn.out_proj.weight`, [W, W]), W, wt(`${p}self_attn.out_proj.bias`, [W])));
      // MLP block
      const x2 = layerNorm(h, T, W, wt(`${p}layer_norm2.weight`, [W]), wt(`${p}layer_norm2.bias`, [W]), eps);
      const f1 = map(linear(x2, T, W, wt(`${p}mlp.fc1.weight`, [M, W]), M, wt(`${p}mlp.fc1.bias`, [M])), act);
      addInPlace(h, linear(f1, T, M, wt(`${p}mlp.fc2.weight`, [W, M]), W, wt(`${p}mlp.fc2.bias`, [W])));

      if (l === spec.tapLayer) patchFeatures.set(h.subarray(W), img * G * G * W);
    }

    // pooled_output = post_layernorm(last_hidden_state[:, 0]); image_embeds = visual_projection(pooled_output)
    const pooled = layerNorm(h.subarray(0, W), 1, W, postG, postB, eps);
    imageEmbeds.set(linear(pooled, 1, W, proj, spec.embedDim), img * spec.embedDim);
  }
  return { patchFeatures, imageEmbeds };
}
