/**
 * Random-weight Llama-architecture LLMs with a real tokenizer and a ChatML template, for tests and
 * benchmarks of the multimodal pipeline: `tiny` (n_embd 64, 2 layers, F32) loads in milliseconds;
 * `0.5b` has Qwen2-0.5B's shapes in the llama architecture (n_embd 896, 24 layers, 14 heads / 2 KV
 * heads, n_ff 4864, tied embeddings, RoPE theta 1e6) with a 32000-token vocabulary, stored F16 (774 MB,
 * written in ~15 s with ~130 MB of memory).
 *
 * Weights are seeded per tensor (seed × tensor name), so a tensor's values do not depend on write order,
 * and each is generated only when the writer reaches it.
 */
import { GgufError, FileType } from './types.js';
import { addTokenizer, checkHparams, llamaMetadata, llamaTensors, type LlamaHparams } from './llama-meta.js';
import { buildSynthVocab, CHATML_TEMPLATE, type SpmVocab } from './synth-vocab.js';
import { writeGguf } from './writer.js';
import { gaussianArray, hashName } from '../util/random.js';

export { readTokenEmbeddings } from './reader.js';

export type LlmPreset = 'tiny' | '0.5b';
export const LLM_PRESETS: readonly LlmPreset[] = ['tiny', '0.5b'];

interface Preset {
  hparams: Omit<LlamaHparams, 'vocabSize' | 'name'>;
  vocabSize: number | undefined;
  dtype: 'F32' | 'F16';
  tied: boolean;
}

const PRESETS: Record<LlmPreset, Preset> = {
  tiny: {
    hparams: { contextLength: 4096, nEmbd: 64, nLayer: 2, nFf: 128, nHead: 4, nHeadKv: 2, headDim: 16, ropeTheta: 10000, rmsEps: 1e-6 },
    vocabSize: undefined,
    dtype: 'F32',
    tied: false,
  },
  '0.5b': {
    hparams: { contextLength: 32768, nEmbd: 896, nLayer: 24, nFf: 4864, nHead: 14, nHeadKv: 2, headDim: 64, ropeTheta: 1e6, rmsEps: 1e-6 },
    vocabSize: 32000,
    dtype: 'F16',
    tied: true,
  },
};

export interface SynthLlmOptions {
  preset: LlmPreset;
  /** Output .gguf path (its directory must exist). */
  out: string;
  /** Default 0. */
  seed?: number;
  /** Overrides the preset's storage type (tiny: F32, 0.5b: F16). */
  dtype?: 'F32' | 'F16';
  onProgress?: (done: number, total: number) => void;
}

export interface SynthLlmResult {
  path: string;
  preset: LlmPreset;
  seed: number;
  dtype: 'F32' | 'F16';
  hparams: LlamaHparams;
  /** Whether output.weight is absent (llama.cpp then uses token_embd.weight for the logits). */
  tiedEmbeddings: boolean;
  /** Special token ids: BOS/EOS/UNK, the ChatML role delimiters and the image placeholder. */
  tokens: SpmVocab['ids'];
  chatTemplate: string;
  bytes: number;
}


/**
 * Scales that keep activations O(1) and logits of roughly unit spread (not a one-hot softmax):
 * fan-in-scaled matrices; norm gains near 1 but not 1 (so a test that ignored a norm weight would
 * notice). Embeddings are unit-variance when the output matrix is separate; when tied they double as the
 * output matrix and get std 1/sqrt(n_embd), as trained tied models have small embeddings: unit-variance
 * rows would make each token's logit on itself ~n_embd and the model would only ever repeat its input.
 */
function init(name: string, shape: number[], seed: number, tied: boolean): () => Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const s = hashName(name, seed);
  if (name.endsWith('norm.weight')) return () => gaussianArray(n, 1, 0.1, s);
  if (name === 'token_embd.weight') return () => gaussianArray(n, 0, tied ? 1 / Math.sqrt(shape[1]!) : 1, s);
  return () => gaussianArray(n, 0, 1 / Math.sqrt(shape[1]!), s);
}

export async function synthLlm(opts: SynthLlmOptions): Promise<SynthLlmResult> {
  const p = PRESETS[opts.preset];
  if (!p) throw new GgufError(`unknown LLM preset ${JSON.stringify(opts.preset)} (expected ${LLM_PRESETS.join(' or ')})`);
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new GgufError(`seed must be a non-negative integer, got ${seed}`);
  const dtype = opts.dtype ?? p.dtype;
  if (dtype !== 'F32' && dtype !== 'F16') throw new GgufError(`dtype must be F32 or F16, got ${String(dtype)}`);
  const vocab = buildSynthVocab(p.vocabSize);
  const hparams: LlamaHparams = { ...p.hparams, vocabSize: vocab.tokens.length, name: `llm2clip-synth-${opts.preset}` };
  checkHparams(hparams, opts.out);

  const meta = llamaMetadata(hparams, dtype === 'F16' ? FileType.MOSTLY_F16 : FileType.ALL_F32);
  meta.string('general.description', `random weights (seed ${seed}); llm2clip synth-llm --preset ${opts.preset}`);
  addTokenizer(
    meta,
    {
      model: 'llama',
      pre: 'default',
      tokens: vocab.tokens,
      scores: vocab.scores,
      types: vocab.types,
      bos: vocab.ids.bos,
      eos: vocab.ids.eos,
      unk: vocab.ids.unk,
      addBos: true,
      addEos: false,
      addSpacePrefix: true,
      chatTemplate: CHATML_TEMPLATE,
    },
    opts.out,
  );
  const specs = llamaTensors(hparams, { output: !p.tied });
  const r = writeGguf(
    opts.out,
    meta,
    specs.map((t) => ({ name: t.name, shape: t.shape, dtype: t.vector ? 'F32' : dtype, data: init(t.name, t.shape, seed, p.tied) })),
    { onTensor: (_n, i, total) => opts.onProgress?.(i + 1, total) },
  );
  return {
    path: opts.out,
    preset: opts.preset,
    seed,
    dtype,
    hparams,
    tiedEmbeddings: p.tied,
    tokens: vocab.ids,
    chatTemplate: CHATML_TEMPLATE,
    bytes: r.bytes,
  };
}
