/**
 * Tiny Hugging Face Llama-family checkpoints written the way transformers' save_pretrained lays them out
 * (config.json, model.safetensors or shards + index, tokenizer.json, tokenizer_config.json), with random
 * weights and a BPE tokenizer trained here on a small corpus. The weights use HF's own layout (q/k rows
 * un-permuted), so a reference forward pass with rotate-half RoPE on them checks the converter's permutation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import type { WritableTensor } from '../../src/formats/io.js';
import { byteEncode, byteLevelTokenizer, bytesToUnicode, PRE_REGEX, spmTokenizer, trainMerges, type RefTokenizer } from './bpe.js';
import { mulberry32 } from '../../src/util/random.js';

export const CORPUS = [
  'hello world, the cat sat on the mat.',
  'the dog sat on the log and the cat sat on the hat.',
  'what is in the picture? a red circle and a blue square.',
  'there are two cats and three dogs on the mat.',
  'the quick brown fox jumps over the lazy dog.',
  "it's a small world, isn't it? yes, it is.",
];

export const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export type FixtureTokenizer = 'spm' | 'llama-bpe' | 'qwen2';

export interface HfFixtureOptions {
  dir: string;
  arch?: 'LlamaForCausalLM' | 'Qwen2ForCausalLM' | 'MistralForCausalLM';
  tokenizer: FixtureTokenizer;
  hidden?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  /** Written as config head_dim when set (then hidden ≠ heads × head_dim is allowed). */
  headDim?: number;
  ffn?: number;
  tied?: boolean;
  qkvBias?: boolean;
  oBias?: boolean;
  mlpBias?: boolean;
  ropeTheta?: number;
  rmsEps?: number;
  ropeScaling?: Record<string, unknown>;
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Split the weights into this many shards with an index (default: one model.safetensors). */
  shards?: number;
  /** Extra rows in the embedding beyond the tokenizer's tokens (become [PADn] tokens). */
  padRows?: number;
  seed?: number;
  extraConfig?: Record<string, unknown>;
}

export interface HfFixture {
  dir: string;
  config: Record<string, unknown>;
  vocabSize: number;
  tokenizer: RefTokenizer;
  special: Record<string, number>;
  /** Names of the tensors written, in order. */
  tensorNames: string[];
}

const rng = mulberry32;

function gaussian(r: () => number, n: number, mean: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

function buildTokenizer(kind: FixtureTokenizer): { json: object; config: object; vocab: Map<string, number>; ref: RefTokenizer; special: Record<string, number> } {
  const vocab = new Map<string, number>();
  const add = (t: string): number => {
    if (!vocab.has(t)) vocab.set(t, vocab.size);
    return vocab.get(t)!;
  };
  if (kind === 'spm') {
    add('<unk>');
    add('<s>');
    add('</s>');
    for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    const words = CORPUS.map((s) => [...`▁${s.replaceAll(' ', '▁')}`]);
    for (const ch of new Set(words.flat())) add(ch);
    const merges = trainMerges(words, 120);
    for (const [a, b] of merges) add(a + b);
    const special = { '<|im_start|>': add('<|im_start|>'), '<|im_end|>': add('<|im_end|>'), '<image>': add('<image>') };
    const mergeStrs = merges.map(([a, b]) => `${a} ${b}`);
    const base = [...vocab].filter(([t]) => !(t in special));
    const json = {
      version: '1.0',
      added_tokens: [
        { id: 0, content: '<unk>', special: true, normalized: false },
        { id: 1, content: '<s>', special: true, normalized: false },
        { id: 2, content: '</s>', special: true, normalized: false },
        ...Object.entries(special).map(([content, id]) => ({ id, content, special: true, normalized: false })),
      ],
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
      pre_tokenizer: null,
      post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] },
      decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
      // Newer tokenizers save merges as pairs; the converter accepts both spellings.
      model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab: Object.fromEntries(base), merges },
    };
    const config = { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: null, add_bos_token: true, add_eos_token: false, chat_template: CHATML };
    return { json, config, vocab, ref: spmTokenizer(vocab, mergeStrs), special: { bos: 1, eos: 2, unk: 0, ...special } };
  }
  const b2u = bytesToUnicode();
  for (const ch of b2u) add(ch);
  const re = PRE_REGEX[kind];
  const words = CORPUS.flatMap((s) => [...s.matchAll(re)].map((m) => [...byteEncode(m[0])]));
  const merges = trainMerges(words, 120);
  for (const [a, b] of merges) add(a + b);
  const specials = kind === 'llama-bpe' ? ['<|begin_of_text|>', '<|end_of_text|>', '<|im_start|>', '<|im_end|>', '<image>'] : ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<image>'];
  const base = [...vocab];
  const special: Record<string, number> = {};
  for (const s of specials) special[s] = add(s);
  const mergeStrs = merges.map(([a, b]) => `${a} ${b}`);
  const pre =
    kind === 'llama-bpe'
      ? { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] }
      : { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] };
  const ignoreMerges = kind === 'llama-bpe';
  const json = {
    version: '1.0',
    added_tokens: specials.map((content) => ({ id: special[content], content, special: true, normalized: false })),
    normalizer: kind === 'qwen2' ? { type: 'NFC' } : null,
    pre_tokenizer: pre,
    post_processor:
      kind === 'llama-bpe'
        ? { type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true }, { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] }] }
        : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: ignoreMerges, vocab: Object.fromEntries(base), merges: mergeStrs },
  };
  const config =
    kind === 'llama-bpe'
      ? { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', chat_template: CHATML }
      : { bos_token: null, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', add_bos_token: false, chat_template: CHATML };
  return { json, config, vocab, ref: byteLevelTokenizer(vocab, mergeStrs, re, ignoreMerges), special };
}

export function writeHfFixture(o: HfFixtureOptions): HfFixture {
  fs.mkdirSync(o.dir, { recursive: true });
  const tok = buildTokenizer(o.tokenizer);
  const hidden = o.hidden ?? 64;
  const layers = o.layers ?? 2;
  const heads = o.heads ?? 4;
  const kvHeads = o.kvHeads ?? 2;
  const hd = o.headDim ?? hidden / heads;
  const ffn = o.ffn ?? 96;
  const vocabSize = tok.vocab.size + (o.padRows ?? 0);
  const arch = o.arch ?? 'LlamaForCausalLM';
  const config: Record<string, unknown> = {
    architectures: [arch],
    model_type: arch === 'Qwen2ForCausalLM' ? 'qwen2' : arch === 'MistralForCausalLM' ? 'mistral' : 'llama',
    hidden_size: hidden,
    intermediate_size: ffn,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    vocab_size: vocabSize,
    max_position_embeddings: 256,
    rms_norm_eps: o.rmsEps ?? 1e-6,
    rope_theta: o.ropeTheta ?? 10000,
    rope_scaling: o.ropeScaling ?? null,
    tie_word_embeddings: o.tied ?? false,
    hidden_act: 'silu',
    torch_dtype: (o.dtype ?? 'F32') === 'F32' ? 'float32' : (o.dtype === 'BF16' ? 'bfloat16' : 'float16'),
    bos_token_id: tok.special.bos ?? tok.special['<|begin_of_text|>'] ?? null,
    eos_token_id: tok.special.eos ?? tok.special['<|end_of_text|>'] ?? tok.special['<|im_end|>'],
    ...(o.headDim !== undefined ? { head_dim: o.headDim } : {}),
    ...(arch === 'LlamaForCausalLM' ? { attention_bias: !!o.qkvBias, mlp_bias: !!o.mlpBias } : {}),
    ...(arch === 'Qwen2ForCausalLM' ? { use_sliding_window: false, sliding_window: 256 } : {}),
    ...o.extraConfig,
  };
  const r = rng(o.seed ?? 1);
  const tensors: { name: string; shape: number[]; data: Float32Array }[] = [];
  const mat = (name: string, rows: number, cols: number): void => {
    tensors.push({ name, shape: [rows, cols], data: gaussian(r, rows * cols, 0, 1 / Math.sqrt(cols)) });
  };
  const vec = (name: string, n: number, mean: number, std: number): void => {
    tensors.push({ name, shape: [n], data: gaussian(r, n, mean, std) });
  };
  tensors.push({ name: 'model.embed_tokens.weight', shape: [vocabSize, hidden], data: gaussian(r, vocabSize * hidden, 0, 1) });
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    vec(`${p}.input_layernorm.weight`, hidden, 1, 0.1);
    mat(`${p}.self_attn.q_proj.weight`, heads * hd, hidden);
    mat(`${p}.self_attn.k_proj.weight`, kvHeads * hd, hidden);
    mat(`${p}.self_attn.v_proj.weight`, kvHeads * hd, hidden);
    mat(`${p}.self_attn.o_proj.weight`, hidden, heads * hd);
    if (o.qkvBias) {
      vec(`${p}.self_attn.q_proj.bias`, heads * hd, 0, 0.3);
      vec(`${p}.self_attn.k_proj.bias`, kvHeads * hd, 0, 0.3);
      vec(`${p}.self_attn.v_proj.bias`, kvHeads * hd, 0, 0.3);
    }
    if (o.oBias) vec(`${p}.self_attn.o_proj.bias`, hidden, 0, 0.3);
    vec(`${p}.post_attention_layernorm.weight`, hidden, 1, 0.1);
    mat(`${p}.mlp.gate_proj.weight`, ffn, hidden);
    mat(`${p}.mlp.up_proj.weight`, ffn, hidden);
    mat(`${p}.mlp.down_proj.weight`, hidden, ffn);
    if (o.mlpBias) {
      vec(`${p}.mlp.gate_proj.bias`, ffn, 0, 0.3);
      vec(`${p}.mlp.up_proj.bias`, ffn, 0, 0.3);
      vec(`${p}.mlp.down_proj.bias`, hidden, 0, 0.3);
    }
  }
  vec('model.norm.weight', hidden, 1, 0.1);
  if (!o.tied) mat('lm_head.weight', vocabSize, hidden);

  const dtype = o.dtype ?? 'F32';
  const writable: WritableTensor[] = tensors.map((t) => ({ name: t.name, shape: t.shape, dtype, data: t.data }));
  const shards = o.shards ?? 1;
  if (shards === 1) {
    writeSafetensors(path.join(o.dir, 'model.safetensors'), writable, { format: 'pt' });
  } else {
    const weightMap: Record<string, string> = {};
    const per = Math.ceil(writable.length / shards);
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = writable.slice(s * per, (s + 1) * per);
      writeSafetensors(path.join(o.dir, file), part, { format: 'pt' });
      for (const t of part) weightMap[t.name] = file;
    }
    fs.writeFileSync(path.join(o.dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2));
  }
  fs.writeFileSync(path.join(o.dir, 'config.json'), JSON.stringify(config, null, 2));
  fs.writeFileSync(path.join(o.dir, 'tokenizer.json'), JSON.stringify(tok.json));
  fs.writeFileSync(path.join(o.dir, 'tokenizer_config.json'), JSON.stringify(tok.config, null, 2));
  return { dir: o.dir, config, vocabSize, tokenizer: tok.ref, special: tok.special, tensorNames: tensors.map((t) => t.name) };
}
