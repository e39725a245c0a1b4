/**
 * A fully resolved vision-tower description: everything a graph builder or a reference forward pass
 * needs besides the weights. Produced from a checkpoint (+ optional config) by resolve.ts.
 *
 * Weight naming seen by builders (after ScopedTensors strips the checkpoint's wrapper prefix):
 * - openai: Hugging Face CLIP names, `vision_model.embeddings.class_embedding`,
 *   `vision_model.embeddings.patch_embedding.weight` [W,3,P,P], `vision_model.embeddings.position_embedding.weight` [T,W],
 *   `vision_model.pre_layrnorm.{weight,bias}`, `vision_model.encoder.layers.{i}.{layer_norm1,layer_norm2}.{weight,bias}`,
 *   `vision_model.encoder.layers.{i}.self_attn.{q_proj,k_proj,v_proj,out_proj}.{weight,bias}` ([out,in] like nn.Linear),
 *   `vision_model.encoder.layers.{i}.mlp.{fc1,fc2}.{weight,bias}`, `vision_model.post_layernorm.{weight,bias}`,
 *   `visual_projection.weight` [P,W] (no bias).
 * - eva02: official eva_clip names under `visual.`: `visual.patch_embed.proj.{weight,bias}`, `visual.cls_token` [1,1,W],
 *   `visual.pos_embed` [1,T,W], `visual.blocks.{i}.{norm1,norm2}.{weight,bias}`,
 *   `visual.blocks.{i}.attn.{q_proj.weight,q_proj.bias,k_proj.weight,v_proj.weight,v_proj.bias}`,
 *   `visual.blocks.{i}.attn.inner_attn_ln.{weight,bias}` (subln), `visual.blocks.{i}.attn.proj.{weight,bias}`,
 *   `visual.blocks.{i}.mlp.{w1,w2,w3}.{weight,bias}`, `visual.blocks.{i}.mlp.ffn_ln.{weight,bias}` (subln),
 *   `visual.norm.{weight,bias}`, `visual.head.{weight,bias}`.
 * - adapter: `text_adaptor.{0..3}.ln.{weight,bias}`, `text_adaptor.{0..3}.fn.0.{weight,bias}` [2D,D],
 *   `text_adaptor.{0..3}.fn.3.{weight,bias}` [D,2D], `text_adaptor.4.{weight,bias}` (LayerNorm D),
 *   `text_adaptor.5.{weight,bias}` [P,D].
 */
export type Arch = 'openai' | 'eva02';

export type Vec3 = readonly [number, number, number];

export interface RopeSpec {
  /** Grid side the rotary frequencies were pretrained at (eva_clip `pt_hw_seq_len`). */
  readonly ptHwSeqLen: number;
  /** eva_clip `intp_freq`: positions are arange(G)/G*ptHwSeqLen instead of arange(G). */
  readonly intpFreq: boolean;
  readonly theta: number;
}

export interface TowerSpec {
  readonly arch: Arch;
  readonly imageSize: number;
  readonly patchSize: number;
  /** Grid side G = imageSize / patchSize; tokens T = G*G + 1 (CLS first). */
  readonly width: number;
  readonly layers: number;
  readonly heads: number;
  /** Hidden width of the MLP, read from the weights. */
  readonly mlpWidth: number;
  /** Output width of the projection / head (1280 for released models). */
  readonly embedDim: number;
  readonly layerNormEps: number;
  /** openai: MLP activation. eva02 uses SiLU-gated SwiGLU and ignores this. */
  readonly activation: 'quick_gelu' | 'gelu';
  /** eva02 only: rotary embedding on patch tokens (absent = no RoPE). */
  readonly rope?: RopeSpec;
  /** eva02 only: sub-LayerNorms inside attention (inner_attn_ln) and SwiGLU (ffn_ln). */
  readonly subln?: boolean;
  /** Index of the block whose output (patch tokens, no final norm) is `patch_features`: layers - 2 (LLaVA's -2). */
  readonly tapLayer: number;
}

export interface AdapterSpec {
  /** LLM sentence-embedding width D. */
  readonly inputDim: number;
  /** Output width P (same space as image_embeds). */
  readonly embedDim: number;
  readonly blocks: number;
  readonly layerNormEps: number;
}

export interface PreprocessSpec {
  readonly imageSize: number;
  readonly mean: Vec3;
  readonly std: Vec3;
  /** crop: resize short side then centre-crop (official eval transform); pad: LLaVA expand-to-square with the mean colour. */
  readonly resizeMode: 'crop' | 'pad';
}

export const OPENAI_MEAN: Vec3 = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_STD: Vec3 = [0.26862954, 0.26130258, 0.27577711];

export function gridSide(spec: Pick<TowerSpec, 'imageSize' | 'patchSize'>): number {
  return Math.floor(spec.imageSize / spec.patchSize);
}
