/**
 * Independent float64 reference of a Hugging Face Llama-family decoder (transformers' LlamaForCausalLM /
 * Qwen2ForCausalLM semantics), run on the checkpoint's own tensors in HF layout:
 *   RMSNorm: x / sqrt(mean(x²) + eps) * w
 *   attention: q, k, v projections (+ bias), RoPE "rotate_half" — dimension i pairs with i + d/2, angle
 *   pos · inv_freq[i], inv_freq[i] = theta^(-2i/d) (llama3 scaling adjusts inv_freq as transformers'
 *   _compute_llama3_parameters does) — causal softmax(q·k / sqrt(d)), GQA (query head h reads KV head
 *   h / (heads / kv_heads)), o projection (+ bias)
 *   MLP: down(silu(gate(x)) * up(x)) (+ biases)
 *   logits: lm_head(norm(h)), or embed_tokens(norm(h)) when tied.
 * Nothing here knows about llama.cpp's permuted q/k layout, which is the point.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsReader } from '../../src/formats/safetensors.js';

export interface RefConfig {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  eps: number;
  theta: number;
  tied: boolean;
  llama3?: { factor: number; low_freq_factor: number; high_freq_factor: number; original_max_position_embeddings: number };
}

export function refConfigFrom(c: Record<string, unknown>): RefConfig {
  const n = (k: string): number => c[k] as number;
  const rs = c.rope_scaling as Record<string, number | string> | null;
  return {
    hidden: n('hidden_size'),
    layers: n('num_hidden_layers'),
    heads: n('num_attention_heads'),
    kvHeads: n('num_key_value_heads'),
    headDim: (c.head_dim as number | undefined) ?? n('hidden_size') / n('num_attention_heads'),
    ffn: n('intermediate_size'),
    vocab: n('vocab_size'),
    eps: n('rms_norm_eps'),
    theta: n('rope_theta'),
    tied: c.tie_word_embeddings === true,
    llama3: rs && rs.rope_type === 'llama3' ? (rs as unknown as RefConfig['llama3']) : undefined,
  };
}

/** Every tensor of every safetensors file in `dir`, widened to float64. */
export function loadWeights(dir: string): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.safetensors'))) {
    const r = SafetensorsReader.open(path.join(dir, f));
    for (const name of r.names()) out.set(name, Float64Array.from(r.readF32(name)));
    r.close();
  }
  return out;
}

/** y[rows] = W[rows, cols] · x[cols] (+ b). */
function matvec(w: Float64Array, x: Float64Array, rows: number, b?: Float64Array): Float64Array {
  const cols = x.length;
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = b ? b[r]! : 0;
    const o = r * cols;
    for (let c = 0; c < cols; c++) s += w[o + c]! * x[c]!;
    y[r] = s;
  }
  return y;
}

function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * w[i]!);
}

export function invFreq(cfg: RefConfig): Float64Array {
  const d = cfg.headDim;
  const f = new Float64Array(d / 2);
  for (let i = 0; i < d / 2; i++) f[i] = 1 / cfg.theta ** ((2 * i) / d);
  const l = cfg.llama3;
  if (!l) return f;
  const lowWl = l.original_max_position_embeddings / l.low_freq_factor;
  const highWl = l.original_max_position_embeddings / l.high_freq_factor;
  return f.map((fr) => {
    const wl = (2 * Math.PI) / fr;
    if (wl > lowWl) return fr / l.factor;
    if (wl < highWl) return fr;
    const smooth = (l.original_max_position_embeddings / wl - l.low_freq_factor) / (l.high_freq_factor - l.low_freq_factor);
    return (1 - smooth) * (fr / l.factor) + smooth * fr;
  });
}

export type RopeStyle = 'rotate_half' | 'interleaved';

/** In-place RoPE on one head vector. `interleaved` (pairs 2i, 2i+1) exists only as a negative control. */
function rope(v: Float64Array, off: number, d: number, pos: number, freq: Float64Array, style: RopeStyle): void {
  for (let i = 0; i < d / 2; i++) {
    const a = pos * freq[i]!;
    const c = Math.cos(a);
    const s = Math.sin(a);
    const [i0, i1] = style === 'rotate_half' ? [off + i, off + i + d / 2] : [off + 2 * i, off + 2 * i + 1];
    const x0 = v[i0]!;
    const x1 = v[i1]!;
    v[i0] = x0 * c - x1 * s;
    v[i1] = x1 * c + x0 * s;
  }
}

/** Logits [ids.length][vocab] of the causal LM for the token sequence. */
export function referenceLogits(cfg: RefConfig, w: Map<string, Float64Array>, ids: number[], style: RopeStyle = 'rotate_half'): Float64Array[] {
  const g = (n: string): Float64Array => {
    const t = w.get(n);
    if (!t) throw new Error(`reference: missing ${n}`);
    return t;
  };
  const { hidden: H, heads, kvHeads, headDim: d } = cfg;
  const freq = invFreq(cfg);
  const emb = g('model.embed_tokens.weight');
  let xs: Float64Array[] = ids.map((id) => emb.slice(id * H, (id + 1) * H));
  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}`;
    const K: Float64Array[] = [];
    const V: Float64Array[] = [];
    const Q: Float64Array[] = [];
    for (let t = 0; t < xs.length; t++) {
      const x = rmsnorm(xs[t]!, g(`${p}.input_layernorm.weight`), cfg.eps);
      const q = matvec(g(`${p}.self_attn.q_proj.weight`), x, heads * d, w.get(`${p}.self_attn.q_proj.bias`));
      const k = matvec(g(`${p}.self_attn.k_proj.weight`), x, kvHeads * d, w.get(`${p}.self_attn.k_proj.bias`));
      V.push(matvec(g(`${p}.self_attn.v_proj.weight`), x, kvHeads * d, w.get(`${p}.self_attn.v_proj.bias`)));
      for (let h = 0; h < heads; h++) rope(q, h * d, d, t, freq, style);
      for (let h = 0; h < kvHeads; h++) rope(k, h * d, d, t, freq, style);
      Q.push(q);
      K.push(k);
    }
    const next: Float64Array[] = [];
    for (let t = 0; t < xs.length; t++) {
      const att = new Float64Array(heads * d);
      for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / (heads / kvHeads));
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += Q[t]![h * d + i]! * K[s]![kh * d + i]!;
          scores[s] = dot / Math.sqrt(d);
          max = Math.max(max, scores[s]!);
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) sum += scores[s] = Math.exp(scores[s]! - max);
        for (let s = 0; s <= t; s++) for (let i = 0; i < d; i++) att[h * d + i] += (scores[s]! / sum) * V[s]![kh * d + i]!;
      }
      const o = matvec(g(`${p}.self_attn.o_proj.weight`), att, H, w.get(`${p}.self_attn.o_proj.bias`));
      const h1 = xs[t]!.map((v, i) => v + o[i]!);
      const x2 = rmsnorm(h1, g(`${p}.post_attention_layernorm.weight`), cfg.eps);
      const gate = matvec(g(`${p}.mlp.gate_proj.weight`), x2, cfg.ffn, w.get(`${p}.mlp.gate_proj.bias`));
      const up = matvec(g(`${p}.mlp.up_proj.weight`), x2, cfg.ffn, w.get(`${p}.mlp.up_proj.bias`));
      const act = gate.map((v, i) => (v / (1 + Math.exp(-v))) * up[i]!);
      const down = matvec(g(`${p}.mlp.down_proj.weight`), act, H, w.get(`${p}.mlp.down_proj.bias`));
      next.push(h1.map((v, i) => v + down[i]!));
    }
    xs = next;
  }
  const head = cfg.tied ? emb : g('lm_head.weight');
  return xs.map((x) => matvec(head, rmsnorm(x, g('model.norm.weight'), cfg.eps), cfg.vocab));
}

/** logits − mean(logits): comparable with log-probabilities − their mean (softmax drops the constant). */
export function centred(v: ArrayLike<number>): Float64Array {
  let m = 0;
  for (let i = 0; i < v.length; i++) m += v[i]!;
  m /= v.length;
  return Float64Array.from({ length: v.length }, (_, i) => v[i]! - m);
}
