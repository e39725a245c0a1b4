/**
 * What a llama.cpp "llama"-architecture GGUF holds, shared by synth-llm and convert-llm: the `llama.*`
 * hyperparameter keys, the `tokenizer.*` keys, and the tensor names and (row-major) shapes that
 * llama.cpp's loader (src/models/llama.cpp in the bundled source) asks for.
 */
import { GgufMetadata } from './writer.js';
import { GgufError } from './types.js';

export interface LlamaHparams {
  /** general.name */
  name: string;
  contextLength: number;
  nEmbd: number;
  nLayer: number;
  nFf: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  ropeTheta: number;
  rmsEps: number;
  vocabSize: number;
  /** Linear RoPE scaling (positions divided by the factor); llama3-style scaling travels as a rope_freqs tensor instead. */
  ropeScalingLinear?: number;
}

export interface TokenizerMeta {
  /** "llama" = SentencePiece-style (scores, byte fallback); "gpt2" = byte-level BPE (merges, pre-tokenizer). */
  model: 'llama' | 'gpt2';
  /** tokenizer.ggml.pre: "default" for SPM, the pre-tokenizer name llama.cpp knows for BPE. */
  pre: string;
  tokens: string[];
  types: number[];
  scores?: number[];
  merges?: string[];
  bos?: number;
  eos?: number;
  unk?: number;
  pad?: number;
  addBos: boolean;
  addEos: boolean;
  /** SPM only: whether a space is prepended to the text (SentencePiece's add_dummy_prefix). */
  addSpacePrefix?: boolean;
  chatTemplate?: string;
}

export function checkHparams(h: LlamaHparams, what: string): void {
  const ints: (keyof LlamaHparams)[] = ['contextLength', 'nEmbd', 'nLayer', 'nFf', 'nHead', 'nHeadKv', 'headDim', 'vocabSize'];
  for (const k of ints) {
    const v = h[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 0xffffffff) throw new GgufError(`${what}: ${k} must be a positive integer, got ${String(v)}`);
  }
  if (h.nHead % h.nHeadKv !== 0) throw new GgufError(`${what}: ${h.nHead} attention heads are not a multiple of ${h.nHeadKv} KV heads`);
  // llama.cpp's llama graph asserts n_rot == head size, and RoPE rotates pairs.
  if (h.headDim % 2 !== 0) throw new GgufError(`${what}: head dimension ${h.headDim} must be even for RoPE`);
  if (!(h.ropeTheta > 0) || !(h.rmsEps > 0)) throw new GgufError(`${what}: rope theta and RMS norm epsilon must be positive`);
}

/** general.* and llama.* keys. */
export function llamaMetadata(h: LlamaHparams, fileType: number): GgufMetadata {
  const m = new GgufMetadata();
  m.string('general.architecture', 'llama');
  m.string('general.name', h.name);
  m.uint32('general.file_type', fileType);
  m.uint32('llama.vocab_size', h.vocabSize);
  m.uint32('llama.context_length', h.contextLength);
  m.uint32('llama.embedding_length', h.nEmbd);
  m.uint32('llama.block_count', h.nLayer);
  m.uint32('llama.feed_forward_length', h.nFf);
  m.uint32('llama.attention.head_count', h.nHead);
  m.uint32('llama.attention.head_count_kv', h.nHeadKv);
  m.float32('llama.rope.freq_base', h.ropeTheta);
  m.float32('llama.attention.layer_norm_rms_epsilon', h.rmsEps);
  m.uint32('llama.rope.dimension_count', h.headDim);
  // Needed only when the head size is not n_embd / n_head (e.g. a config with an explicit head_dim).
  if (h.headDim * h.nHead !== h.nEmbd) {
    m.uint32('llama.attention.key_length', h.headDim);
    m.uint32('llama.attention.value_length', h.headDim);
  }
  if (h.ropeScalingLinear !== undefined) {
    m.string('llama.rope.scaling.type', 'linear');
    m.float32('llama.rope.scaling.factor', h.ropeScalingLinear);
  }
  return m;
}

/** tokenizer.* keys, appended to `m`. */
export function addTokenizer(m: GgufMetadata, t: TokenizerMeta, what: string): void {
  const n = t.tokens.length;
  if (t.types.length !== n) throw new GgufError(`${what}: ${t.types.length} token types for ${n} tokens`);
  if (t.scores && t.scores.length !== n) throw new GgufError(`${what}: ${t.scores.length} token scores for ${n} tokens`);
  const seen = new Set<string>();
  for (const [i, s] of t.tokens.entries()) {
    // llama.cpp maps text → id; a repeated text would silently shadow the earlier id.
    if (seen.has(s)) throw new GgufError(`${what}: token text ${JSON.stringify(s)} appears twice (second time at id ${i})`);
    seen.add(s);
  }
  for (const [k, id] of Object.entries({ bos: t.bos, eos: t.eos, unk: t.unk, pad: t.pad })) {
    if (id !== undefined && (!Number.isInteger(id) || id < 0 || id >= n)) throw new GgufError(`${what}: ${k} token id ${id} is outside the ${n}-token vocabulary`);
  }
  m.string('tokenizer.ggml.model', t.model);
  m.string('tokenizer.ggml.pre', t.pre);
  m.array('tokenizer.ggml.tokens', 'string', t.tokens);
  if (t.scores) m.array('tokenizer.ggml.scores', 'float32', t.scores);
  m.array('tokenizer.ggml.token_type', 'int32', t.types);
  if (t.merges) m.array('tokenizer.ggml.merges', 'string', t.merges);
  if (t.bos !== undefined) m.uint32('tokenizer.ggml.bos_token_id', t.bos);
  if (t.eos !== undefined) m.uint32('tokenizer.ggml.eos_token_id', t.eos);
  if (t.unk !== undefined) m.uint32('tokenizer.ggml.unknown_token_id', t.unk);
  if (t.pad !== undefined) m.uint32('tokenizer.ggml.padding_token_id', t.pad);
  m.bool('tokenizer.ggml.add_bos_token', t.addBos);
  m.bool('tokenizer.ggml.add_eos_token', t.addEos);
  if (t.addSpacePrefix !== undefined) m.bool('tokenizer.ggml.add_space_prefix', t.addSpacePrefix);
  if (t.chatTemplate !== undefined) m.string('tokenizer.chat_template', t.chatTemplate);
}

export interface LlamaTensorSpec {
  name: string;
  shape: number[];
  /** 1-D tensors (norms, biases, rope factors) stay F32 whatever the file type, as llama.cpp's converter does. */
  vector: boolean;
}

export interface LlamaTensorOptions {
  /** Write output.weight; false for tied embeddings (llama.cpp then reuses token_embd). */
  output: boolean;
  attnBias?: boolean;
  attnOutBias?: boolean;
  mlpBias?: boolean;
  ropeFreqs?: boolean;
}

/** GGUF tensor names with row-major shapes ([out, in] for weights, as PyTorch stores them). */
export function llamaTensors(h: LlamaHparams, o: LlamaTensorOptions): LlamaTensorSpec[] {
  const q = h.nHead * h.headDim;
  const kv = h.nHeadKv * h.headDim;
  const out: LlamaTensorSpec[] = [];
  const add = (name: string, shape: number[]): void => {
    out.push({ name, shape, vector: shape.length === 1 });
  };
  add('token_embd.weight', [h.vocabSize, h.nEmbd]);
  if (o.ropeFreqs) add('rope_freqs.weight', [h.headDim / 2]);
  for (let i = 0; i < h.nLayer; i++) {
    const b = `blk.${i}`;
    add(`${b}.attn_norm.weight`, [h.nEmbd]);
    add(`${b}.attn_q.weight`, [q, h.nEmbd]);
    add(`${b}.attn_k.weight`, [kv, h.nEmbd]);
    add(`${b}.attn_v.weight`, [kv, h.nEmbd]);
    if (o.attnBias) {
      add(`${b}.attn_q.bias`, [q]);
      add(`${b}.attn_k.bias`, [kv]);
      add(`${b}.attn_v.bias`, [kv]);
    }
    add(`${b}.attn_output.weight`, [h.nEmbd, q]);
    if (o.attnOutBias) add(`${b}.attn_output.bias`, [h.nEmbd]);
    add(`${b}.ffn_norm.weight`, [h.nEmbd]);
    add(`${b}.ffn_gate.weight`, [h.nFf, h.nEmbd]);
    add(`${b}.ffn_up.weight`, [h.nFf, h.nEmbd]);
    add(`${b}.ffn_down.weight`, [h.nEmbd, h.nFf]);
    if (o.mlpBias) {
      add(`${b}.ffn_gate.bias`, [h.nFf]);
      add(`${b}.ffn_up.bias`, [h.nFf]);
      add(`${b}.ffn_down.bias`, [h.nEmbd]);
    }
  }
  add('output_norm.weight', [h.nEmbd]);
  if (o.output) add('output.weight', [h.vocabSize, h.nEmbd]);
  return out;
}
