/**
 * Hugging Face Llama-family safetensors checkpoint → llama.cpp GGUF ("llama" architecture).
 *
 * The one non-obvious step is the q/k row permutation. HF applies RoPE "rotate-half" style: within a head,
 * dimension i is rotated together with dimension i + d/2. llama.cpp's llama graph applies RoPE to
 * adjacent pairs (2i, 2i+1). Reordering each head's rows of W_q and W_k (and their biases) so that row
 * i + j·d/2 moves to 2i + j makes the two the same computation — what convert_hf_to_gguf.py's
 * LlamaModel.permute does (reshape [heads, 2, d/2, in] → swap axes 1 and 2). Attention scores are
 * unchanged because q and k are permuted alike; v and the output projection are untouched.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readHfTokenizer } from './hf-tokenizer.js';
import { llama3RopeFactors, readLlmConfig, type LlmConfig } from './hf-config.js';
import { HfWeights } from './hf-weights.js';
import { addTokenizer, checkHparams, llamaMetadata, llamaTensors, type LlamaHparams } from './llama-meta.js';
import { FileType, GgufError } from './types.js';
import { writeGguf, type WritableTensor } from './writer.js';

export interface ConvertLlmOptions {
  /** The Hugging Face model directory (config.json, safetensors weights, tokenizer.json). */
  dir: string;
  out: string;
  /** Storage type of the matrices; 1-D tensors stay F32. Default: F32 when every source matrix is F32, else F16. */
  dtype?: 'F32' | 'F16';
  onProgress?: (done: number, total: number) => void;
}

export interface ConvertLlmResult {
  path: string;
  architecture: LlmConfig['architecture'];
  hparams: LlamaHparams;
  dtype: 'F32' | 'F16';
  tiedEmbeddings: boolean;
  tensorCount: number;
  bytes: number;
  tokenizer: { model: 'llama' | 'gpt2'; pre: string; tokens: number; bos?: number; eos?: number; chatTemplate: boolean };
}

/** llama.cpp's q/k row order from HF's: per head, row j·(d/2) + i → row 2i + j. `nHead` heads of `rows / nHead` rows. */
export function permuteQk(w: Float32Array, rows: number, nHead: number): Float32Array {
  const cols = w.length / rows;
  const hd = rows / nHead;
  if (!Number.isInteger(cols) || !Number.isInteger(hd) || hd % 2 !== 0) {
    throw new GgufError(`cannot permute ${rows} rows into ${nHead} heads of even size`);
  }
  const half = hd / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHead; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const src = (h * hd + j * half + i) * cols;
        out.set(w.subarray(src, src + cols), (h * hd + 2 * i + j) * cols);
      }
    }
  }
  return out;
}

const LAYER_MAP: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.v_proj.bias': 'attn_v.bias',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'self_attn.o_proj.bias': 'attn_output.bias',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.gate_proj.bias': 'ffn_gate.bias',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.up_proj.bias': 'ffn_up.bias',
  'mlp.down_proj.weight': 'ffn_down.weight',
  'mlp.down_proj.bias': 'ffn_down.bias',
};

/** GGUF name for an HF tensor name (after the "model." prefix is stripped), or undefined if unknown. */
function ggufName(hf: string, nLayer: number): string | undefined {
  if (hf === 'embed_tokens.weight') return 'token_embd.weight';
  if (hf === 'norm.weight') return 'output_norm.weight';
  const m = /^layers\.(\d+)\.(.+)$/.exec(hf);
  if (!m || Number(m[1]) >= nLayer || !LAYER_MAP[m[2]!]) return undefined;
  return `blk.${Number(m[1])}.${LAYER_MAP[m[2]!]}`;
}

/** F16 tops out at 65504; anything that rounds past it would silently become infinity. */
const F16_LIMIT = 65520;

function checkValues(x: Float32Array, name: string, f16: boolean): void {
  let maxAbs = 0;
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]!);
    if (!Number.isFinite(a)) throw new GgufError(`tensor ${name} contains ${Number.isNaN(a) ? 'NaN' : 'infinite'} values (a broken checkpoint?)`);
    if (a > maxAbs) maxAbs = a;
  }
  if (f16 && maxAbs >= F16_LIMIT) throw new GgufError(`tensor ${name} has values up to ${maxAbs}, beyond float16's range; convert with --dtype f32`);
}

export async function convertLlm(opts: ConvertLlmOptions): Promise<ConvertLlmResult> {
  const dir = opts.dir;
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new GgufError(`${dir}: not a directory (expected a Hugging Face model directory)`);
  if (opts.dtype !== undefined && opts.dtype !== 'F32' && opts.dtype !== 'F16') throw new GgufError(`dtype must be F32 or F16, got ${String(opts.dtype)}`);
  const cfg = readLlmConfig(path.join(dir, 'config.json'), path.basename(path.resolve(dir)));
  const h = cfg.hparams;
  checkHparams(h, path.join(dir, 'config.json'));
  const tokenizer = readHfTokenizer(dir, h.vocabSize, { bos: cfg.raw.bos_token_id, eos: cfg.raw.eos_token_id });

  const weights = HfWeights.open(dir);
  try {
    const names = weights.names();
    const prefix = names.includes('model.embed_tokens.weight') ? 'model.' : names.includes('embed_tokens.weight') ? '' : undefined;
    if (prefix === undefined) throw new GgufError(`${dir}: no model.embed_tokens.weight (is this a Llama-family causal LM checkpoint?)`);
    const bad = weights.skipped().filter((s) => !/rotary_emb\.inv_freq$/.test(s.name));
    if (bad.length) throw new GgufError(`${dir}: tensor ${bad[0]!.name} has dtype ${bad[0]!.dtype}; convert-llm reads F32, F16 and BF16 weights`);

    // HF name of each GGUF tensor; anything else in the checkpoint is an error, not silently dropped.
    const source = new Map<string, string>();
    const unknown: string[] = [];
    for (const n of names) {
      if (/rotary_emb\.inv_freq$/.test(n)) continue; // a buffer older transformers saved; recomputed from theta
      if (n === 'lm_head.weight') {
        if (!cfg.tiedEmbeddings) source.set('output.weight', n);
        continue; // tied: transformers ignores a stored copy and uses the embeddings
      }
      const g = n.startsWith(prefix) ? ggufName(n.slice(prefix.length), h.nLayer) : undefined;
      if (g) source.set(g, n);
      else unknown.push(n);
    }
    if (unknown.length) {
      throw new GgufError(`${dir}: ${unknown.length} tensor(s) are not part of a ${h.nLayer}-layer Llama decoder, e.g. ${unknown.slice(0, 3).join(', ')}`);
    }
    if (!cfg.tiedEmbeddings && !source.has('output.weight')) {
      throw new GgufError(`${dir}: lm_head.weight is missing but config.json says tie_word_embeddings is false`);
    }
    const specs = llamaTensors(h, {
      output: !cfg.tiedEmbeddings,
      attnBias: source.has('blk.0.attn_q.bias'),
      attnOutBias: source.has('blk.0.attn_output.bias'),
      mlpBias: source.has('blk.0.ffn_gate.bias'),
      ropeFreqs: cfg.llama3Rope !== undefined,
    });
    const wanted = new Set(specs.map((s) => s.name));
    for (const g of source.keys()) {
      if (!wanted.has(g)) throw new GgufError(`${dir}: ${source.get(g)} is present in some layers only (or without its companions)`);
    }
    let allF32 = true;
    for (const s of specs) {
      if (s.name === 'rope_freqs.weight') continue;
      const hf = source.get(s.name);
      const info = hf === undefined ? undefined : weights.info(hf);
      if (!info) throw new GgufError(`${dir}: missing tensor ${hfNameFor(s.name, prefix)} (GGUF ${s.name})`);
      if (info.shape.join(',') !== s.shape.join(',')) {
        throw new GgufError(`${dir}: ${hf} has shape [${info.shape.join(', ')}]; config.json implies [${s.shape.join(', ')}]`);
      }
      if (!s.vector && info.dtype !== 'F32') allF32 = false;
    }
    const dtype = opts.dtype ?? (allF32 ? 'F32' : 'F16');

    const meta = llamaMetadata(h, dtype === 'F16' ? FileType.MOSTLY_F16 : FileType.ALL_F32);
    addTokenizer(meta, tokenizer, path.join(dir, 'tokenizer.json'));
    const tensors: WritableTensor[] = specs.map((s) => {
      const outType = s.vector ? 'F32' : dtype;
      if (s.name === 'rope_freqs.weight') return { name: s.name, shape: s.shape, dtype: 'F32', data: llama3RopeFactors(cfg.llama3Rope!, h.headDim, h.ropeTheta) };
      const hf = source.get(s.name)!;
      const heads = /attn_q\./.test(s.name) ? h.nHead : /attn_k\./.test(s.name) ? h.nHeadKv : 0;
      return {
        name: s.name,
        shape: s.shape,
        dtype: outType,
        data: () => {
          const x = weights.readF32(hf);
          checkValues(x, hf, outType === 'F16');
          return heads ? permuteQk(x, s.shape[0]!, heads) : x;
        },
      };
    });
    const r = writeGguf(opts.out, meta, tensors, { onTensor: (_n, i, total) => opts.onProgress?.(i + 1, total) });
    return {
      path: opts.out,
      architecture: cfg.architecture,
      hparams: h,
      dtype,
      tiedEmbeddings: cfg.tiedEmbeddings,
      tensorCount: r.tensorCount,
      bytes: r.bytes,
      tokenizer: {
        model: tokenizer.model,
        pre: tokenizer.pre,
        tokens: tokenizer.tokens.length,
        bos: tokenizer.bos,
        eos: tokenizer.eos,
        chatTemplate: tokenizer.chatTemplate !== undefined,
      },
    };
  } finally {
    weights.close();
  }
}

/** The HF name a GGUF tensor comes from, for error messages. */
function hfNameFor(gguf: string, prefix: string): string {
  if (gguf === 'token_embd.weight') return `${prefix}embed_tokens.weight`;
  if (gguf === 'output_norm.weight') return `${prefix}norm.weight`;
  if (gguf === 'output.weight') return 'lm_head.weight';
  const m = /^blk\.(\d+)\.(.+)$/.exec(gguf);
  const hf = m ? Object.entries(LAYER_MAP).find(([, g]) => g === m[2])?.[0] : undefined;
  return m && hf ? `${prefix}layers.${m[1]}.${hf}` : gguf;
}
