/**
 * convert-llm parity: tiny Hugging Face checkpoints (random weights in HF layout, BPE tokenizers trained
 * here) are converted, loaded by node-llama-cpp 3.21.1 on CPU, and their next-token log-probabilities at
 * every position are compared with an independent float64 forward pass of the HF model
 * (reference-llama.ts: rotate-half RoPE on the un-permuted q/k, RMSNorm, SwiGLU, GQA).
 *
 * Comparison: log-softmax minus its mean equals logits minus their mean, so node-llama-cpp's public
 * probabilities give the logits up to the constant softmax drops. Contexts use an F32 KV cache (see
 * helpers.ts). Tolerance: 1e-4 absolute for F32 GGUFs (llama.cpp computes in float32; observed 1e-6 to
 * 1e-5 with logits of spread ~5), 5e-2 for F16 GGUFs (ggml's CPU F16 matmul also rounds activations to
 * F16; observed ~1e-2). A negative control shows the test would catch a wrong q/k order: the
 * same reference with llama.cpp-style adjacent-pair RoPE on un-permuted weights is far off.
 *
 * The tokenizers are checked the same way: llama.cpp's tokenization of converted files against the HF
 * BPE semantics re-implemented in bpe.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LlamaModel } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertLlm, type ConvertLlmResult } from '../../src/gguf/convert-llm.js';
import { CORPUS, writeHfFixture, type HfFixture, type HfFixtureOptions } from './hf-fixture.js';
import { centred, loadWeights, referenceLogits, refConfigFrom } from './reference-llama.js';
import { cpuLlama, logProbsPerPosition, maxAbsDiff, scratchDir } from './helpers.js';

let root: string;
beforeAll(() => {
  root = scratchDir('convert');
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface Case {
  fixture: HfFixture;
  converted: ConvertLlmResult;
  model: LlamaModel;
}

async function prepare(name: string, o: Omit<HfFixtureOptions, 'dir'>, dtype?: 'F32' | 'F16'): Promise<Case> {
  const fixture = writeHfFixture({ dir: path.join(root, name), ...o });
  const converted = await convertLlm({ dir: fixture.dir, out: path.join(root, `${name}-${dtype ?? 'auto'}.gguf`), dtype });
  const model = await (await cpuLlama()).loadModel({ modelPath: converted.path });
  return { fixture, converted, model };
}

/** Max |Δ| between centred reference logits and centred llama.cpp log-probs, over all positions. */
async function parity(c: Case, ids: number[], style: 'rotate_half' | 'interleaved' = 'rotate_half'): Promise<number> {
  const ref = referenceLogits(refConfigFrom(c.fixture.config), loadWeights(c.fixture.dir), ids, style);
  const got = await logProbsPerPosition(c.model, ids);
  let worst = 0;
  ref.forEach((r, i) => {
    expect(got[i]!.length).toBe(r.length);
    worst = Math.max(worst, maxAbsDiff(centred(r), centred(got[i]!)));
  });
  return worst;
}

function sampleIds(c: Case, text: string): number[] {
  const ids = c.fixture.tokenizer.encode(text);
  expect(ids.length).toBeGreaterThan(6);
  return ids;
}

describe('convert-llm: Llama, F32, untied, SentencePiece-style BPE', () => {
  let c: Case;
  beforeAll(async () => {
    c = await prepare('llama-spm', { tokenizer: 'spm', padRows: 3, seed: 11 });
  });
  afterAll(() => c?.model.dispose());

  it('records the hyperparameters and tokenizer', () => {
    expect(c.converted.dtype).toBe('F32');
    expect(c.converted.tiedEmbeddings).toBe(false);
    const a = c.model.fileInfo.architectureMetadata;
    expect([a.embedding_length, a.block_count, a.attention?.head_count, a.attention?.head_count_kv, a.feed_forward_length, a.context_length]).toEqual([64, 2, 4, 2, 96, 256]);
    expect(a.rope?.freq_base).toBe(10000);
    expect(a.attention?.layer_norm_rms_epsilon).toBeCloseTo(1e-6, 12);
    const t = c.model.fileInfo.metadata.tokenizer;
    expect(t.ggml.model).toBe('llama');
    expect(t.ggml.tokens).toHaveLength(c.fixture.vocabSize);
    expect(t.ggml.tokens.slice(-3)).toEqual([`[PAD${c.fixture.vocabSize - 3}]`, `[PAD${c.fixture.vocabSize - 2}]`, `[PAD${c.fixture.vocabSize - 1}]`]);
    expect(t.chat_template).toContain('<|im_start|>');
    expect(c.model.tokens.bos).toBe(1);
    expect(c.model.tokens.eos).toBe(2);
  });

  it('matches the float64 HF reference within 1e-4 (and a wrong q/k order would not)', async () => {
    const ids = [1, ...sampleIds(c, 'the cat sat on the mat and the dog sat on the log')];
    const err = await parity(c, ids);
    expect(err).toBeLessThan(1e-4);
    const control = await parity(c, ids, 'interleaved');
    expect(control).toBeGreaterThan(0.05);
    console.log(`llama-spm F32: max |Δ logit| = ${err.toExponential(2)} over ${ids.length} positions; wrong-RoPE control: ${control.toFixed(3)}`);
  });

  it("tokenizes like HF's BPE with the merge order kept (scores = −rank)", () => {
    for (const text of [...CORPUS, 'hello world, the cat sat on the mat', 'the lazy cats sat on three hats', 'ünknown 🦙 chars']) {
      expect(c.model.tokenize(text), text).toEqual(c.fixture.tokenizer.encode(text));
      expect(c.model.detokenize(c.model.tokenize(text))).toBe(text);
    }
    const im = c.fixture.special['<|im_start|>']!;
    expect(c.model.tokenize('<|im_start|>', true)).toEqual([im]);
    expect(c.model.tokenize('<|im_start|>')).not.toContain(im);
  });
});

describe('convert-llm: Qwen2 (q/k/v biases), BF16 shards, tied embeddings, byte-level BPE (qwen2)', () => {
  const opts: Omit<HfFixtureOptions, 'dir'> = { arch: 'Qwen2ForCausalLM', tokenizer: 'qwen2', dtype: 'BF16', shards: 3, tied: true, qkvBias: true, heads: 4, kvHeads: 1, ropeTheta: 1e6, seed: 12 };
  let f32: Case;
  let f16: Case;
  beforeAll(async () => {
    f32 = await prepare('qwen2', opts, 'F32');
    f16 = { ...f32, converted: await convertLlm({ dir: f32.fixture.dir, out: path.join(root, 'qwen2-auto.gguf') }) } as Case;
    f16.model = await (await cpuLlama()).loadModel({ modelPath: f16.converted.path });
  });
  afterAll(async () => {
    await f32?.model.dispose();
    await f16?.model.dispose();
  });

  it('converts BF16 → F32 exactly: parity within 1e-4', async () => {
    expect(f32.converted).toMatchObject({ architecture: 'Qwen2ForCausalLM', dtype: 'F32', tiedEmbeddings: true });
    expect(f32.model.fileInfo.tensorInfo!.some((t) => t.name === 'output.weight')).toBe(false);
    expect(f32.model.fileInfo.tensorInfo!.some((t) => t.name === 'blk.1.attn_k.bias')).toBe(true);
    const ids = sampleIds(f32, "what is in the picture? it's a red circle.");
    const err = await parity(f32, ids);
    expect(err).toBeLessThan(1e-4);
    console.log(`qwen2 BF16→F32: max |Δ logit| = ${err.toExponential(2)}`);
  });

  it('defaults to F16 for half-precision sources: parity within 5e-2', async () => {
    expect(f16.converted.dtype).toBe('F16');
    expect(f16.model.fileInfo.metadata.general.file_type).toBe(1);
    const ids = sampleIds(f16, "what is in the picture? it's a red circle.");
    const err = await parity(f16, ids);
    expect(err).toBeLessThan(5e-2);
    console.log(`qwen2 BF16→F16: max |Δ logit| = ${err.toExponential(2)}`);
  });

  it('tokenizes with the qwen2 pre-tokenizer like HF byte-level BPE', () => {
    expect(f32.model.fileInfo.metadata.tokenizer.ggml.pre).toBe('qwen2');
    for (const text of [...CORPUS, 'there are 123 cats, 45 dogs!', "  two  spaces\nand lines\n\n it's"]) {
      expect(f32.model.tokenize(text), text).toEqual(f32.fixture.tokenizer.encode(text));
      expect(f32.model.detokenize(f32.model.tokenize(text))).toBe(text);
    }
    expect(f32.model.tokens.bos).toBeNull();
    expect(f32.model.tokens.eos).toBe(f32.fixture.special['<|im_end|>']);
  });
});

describe('convert-llm: Llama 3 style (llama3 RoPE scaling, all biases, explicit head_dim, llama-bpe)', () => {
  let c: Case;
  beforeAll(async () => {
    c = await prepare('llama3', {
      tokenizer: 'llama-bpe',
      dtype: 'F16',
      headDim: 24,
      heads: 4,
      kvHeads: 2,
      qkvBias: true,
      oBias: true,
      mlpBias: true,
      rmsEps: 1e-5,
      // A short original context puts mid and low frequencies of this small head in the rescaled bands.
      ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
      seed: 13,
    }, 'F32');
  });
  afterAll(() => c?.model.dispose());

  it('writes rope_freqs and key/value lengths, and matches the reference within 1e-4', async () => {
    const names = c.model.fileInfo.tensorInfo!.map((t) => t.name);
    expect(names).toContain('rope_freqs.weight');
    expect(names).toContain('blk.0.attn_output.bias');
    expect(names).toContain('blk.1.ffn_down.bias');
    expect(c.model.fileInfo.architectureMetadata.attention?.key_length).toBe(24);
    const ids = [c.fixture.special['<|begin_of_text|>']!, ...sampleIds(c, 'the quick brown fox jumps over the lazy dog and the cat')];
    const err = await parity(c, ids);
    expect(err).toBeLessThan(1e-4);
    // Control: without the llama3 frequency scaling the reference is far off, so rope_freqs is exercised.
    const cfg = refConfigFrom(c.fixture.config);
    const unscaled = referenceLogits({ ...cfg, llama3: undefined }, loadWeights(c.fixture.dir), ids);
    const got = await logProbsPerPosition(c.model, ids);
    expect(Math.max(...unscaled.map((r, i) => maxAbsDiff(centred(r), centred(got[i]!))))).toBeGreaterThan(0.05);
    console.log(`llama3-style F16→F32: max |Δ logit| = ${err.toExponential(2)} over ${ids.length} positions`);
  });

  it('tokenizes with the llama-bpe pre-tokenizer like HF (ignore_merges) and adds BOS', () => {
    expect(c.model.fileInfo.metadata.tokenizer.ggml.pre).toBe('llama-bpe');
    for (const text of [...CORPUS, 'numbers 12345 and 7', "WHAT'S UP? it'LL do"]) {
      expect(c.model.tokenize(text), text).toEqual(c.fixture.tokenizer.encode(text));
    }
    expect(c.model.tokens.bos).toBe(c.fixture.special['<|begin_of_text|>']);
    expect(c.model.fileInfo.metadata.tokenizer.ggml.add_bos_token).toBe(true);
  });
});
