/**
 * synth-llm's tiny model through node-llama-cpp 3.21.1 on CPU: it loads with the shapes we asked for,
 * llama.cpp's own SPM tokenizer turns text into whole-word pieces and back, special tokens (BOS/EOS, the
 * ChatML delimiters, <image>) are recognised only when special tokens are parsed, and the embedded chat
 * template renders through node-llama-cpp's chat wrappers. Token-embedding rows read by our reader are
 * checked against the bytes node-llama-cpp's own GGUF parser locates.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { JinjaTemplateChatWrapper, readGgufFileInfo, resolveChatWrapper, type LlamaModel, type Token } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { llamaTensors } from '../../src/gguf/llama-meta.js';
import { readTokenEmbeddings, synthLlm, type SynthLlmResult } from '../../src/gguf/synth.js';
import { cpuLlama, scratchDir } from './helpers.js';

let dir: string;
let tiny: SynthLlmResult;
let model: LlamaModel;

beforeAll(async () => {
  dir = scratchDir('synth');
  tiny = await synthLlm({ preset: 'tiny', out: path.join(dir, 'tiny.gguf'), seed: 7 });
  model = await (await cpuLlama()).loadModel({ modelPath: tiny.path });
});
afterAll(async () => {
  await model?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

const SENTENCE = 'hello world, the cat sat on the mat';

describe('synth-llm tiny in node-llama-cpp', () => {
  it('loads with the requested shapes and a few-hundred-token SPM vocabulary', () => {
    const a = model.fileInfo.architectureMetadata;
    expect([a.embedding_length, a.block_count, a.attention?.head_count, a.attention?.head_count_kv, a.feed_forward_length]).toEqual([64, 2, 4, 2, 128]);
    expect(model.fileInfo.metadata.tokenizer.ggml.model).toBe('llama');
    expect(model.embeddingVectorSize).toBe(64);
    expect(tiny.hparams.vocabSize).toBeGreaterThan(300);
    expect(tiny.hparams.vocabSize).toBeLessThan(800);
    expect(model.trainContextSize).toBe(4096);
  });

  it('tokenizes text into whole-word pieces and detokenizes it back', () => {
    const ids = model.tokenize(SENTENCE);
    const pieces = ids.map((t) => model.detokenize([t]));
    // One token per word and one for the comma: the vocabulary's word pieces, not bytes or characters.
    expect(ids).toHaveLength(9);
    expect(pieces.map((p) => p.trim())).toEqual(['hello', 'world', ',', 'the', 'cat', 'sat', 'on', 'the', 'mat']);
    expect(model.detokenize(ids)).toBe(SENTENCE);
    for (const text of ['The Quick brown fox: 42 + 1 = 43?', 'ünïcödé — 日本語 🦙', 'line one\nline\ttwo  spaced']) {
      expect(model.detokenize(model.tokenize(text))).toBe(text);
    }
    // Characters outside the vocabulary use the byte-fallback tokens <0xNN> (3..258).
    const llamaIds = model.tokenize('🦙');
    expect(llamaIds.length).toBeGreaterThanOrEqual(4);
    expect(llamaIds.filter((t) => t >= 3 && t <= 258).length).toBe(4);
  });

  it('has BOS/EOS and recognises special tokens only when asked', () => {
    expect(model.tokens.bos).toBe(tiny.tokens.bos);
    expect(model.tokens.eos).toBe(tiny.tokens.eos);
    expect(model.tokens.bosString).toBe('<s>');
    expect(model.tokens.eosString).toBe('</s>');
    // llama.cpp treats <|im_end|> as end-of-turn by its text.
    expect(model.tokens.eot).toBe(tiny.tokens.imEnd);
    const special = model.tokenize('<|im_start|>user\n<image> what is this?<|im_end|>', true);
    expect(special[0]).toBe(tiny.tokens.imStart);
    expect(special).toContain(tiny.tokens.image);
    expect(special[special.length - 1]).toBe(tiny.tokens.imEnd);
    // llama.cpp's SPM tokenizer prefixes a space to text that follows a special token (as for Llama 2).
    expect(model.detokenize(special, true)).toBe('<|im_start|> user\n<image>  what is this?<|im_end|>');
    expect(model.tokenize('<image>', true)).toEqual([tiny.tokens.image]);
    expect(model.detokenize([tiny.tokens.image as Token], true)).toBe('<image>');
    // Plain text that spells a special token stays text: user input cannot forge an image placeholder.
    const plain = model.tokenize('<image> <|im_start|>');
    expect(plain).not.toContain(tiny.tokens.image);
    expect(plain).not.toContain(tiny.tokens.imStart);
    expect(model.detokenize(plain)).toBe('<image> <|im_start|>');
  });

  it('renders its ChatML template through node-llama-cpp chat wrappers', () => {
    const template = model.fileInfo.metadata.tokenizer.chat_template;
    expect(template).toBe(tiny.chatTemplate);
    const history = [
      { type: 'system' as const, text: 'be brief' },
      { type: 'user' as const, text: 'hello' },
      { type: 'model' as const, response: ['hi there'] },
      { type: 'user' as const, text: 'what is in the picture?' },
      // LlamaChat ends the history with the (empty) response being generated; the wrapper renders its header.
      { type: 'model' as const, response: [] },
    ];
    const expected =
      '<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nhi there<|im_end|>\n' +
      '<|im_start|>user\nwhat is in the picture?<|im_end|>\n<|im_start|>assistant\n';
    const jinja = new JinjaTemplateChatWrapper({ template: template!, tokenizer: model.tokenizer });
    const rendered = jinja.generateContextState({ chatHistory: history }).contextText;
    expect(rendered.toString().replace(/^BOS/, '')).toBe(expected);
    // The auto-resolved wrapper (node-llama-cpp recognises the template as ChatML) renders the same tokens.
    const auto = resolveChatWrapper(model)!;
    expect(auto).toBeDefined();
    const autoText = auto.generateContextState({ chatHistory: history }).contextText;
    // (The ChatML wrapper writes BOS itself; the Jinja template has no bos_token, so compare after it.)
    const dropBos = (t: number[]): number[] => (t[0] === tiny.tokens.bos ? t.slice(1) : t);
    const toks = dropBos(autoText.tokenize(model.tokenizer));
    expect(toks).toEqual(dropBos(rendered.tokenize(model.tokenizer)));
    expect(toks.filter((t) => t === tiny.tokens.imStart)).toHaveLength(5);
    expect(toks.filter((t) => t === tiny.tokens.imEnd)).toHaveLength(4);
  });

  it('generates from the model (the graph runs)', async () => {
    const ctx = await model.createContext({ contextSize: 128, threads: (await cpuLlama()).cpuMathCores });
    try {
      const seq = ctx.getSequence();
      const out: number[] = [];
      for await (const t of seq.evaluate(model.tokenize(SENTENCE), { temperature: 0 })) {
        out.push(t);
        if (out.length === 5) break;
      }
      expect(out).toHaveLength(5);
      expect(out.every((t) => Number.isInteger(t) && t >= 0 && t < tiny.hparams.vocabSize)).toBe(true);
    } finally {
      await ctx.dispose();
    }
  });
});

describe('synth-llm weights', () => {
  it('token-embedding rows match the bytes node-llama-cpp locates', async () => {
    const ids = model.tokenize(SENTENCE);
    const rows = readTokenEmbeddings(tiny.path, ids);
    const info = await readGgufFileInfo(tiny.path, { logWarnings: false });
    const te = info.fullTensorInfo!.find((t) => t.name === 'token_embd.weight')!;
    expect(te.dimensions.map(Number)).toEqual([64, tiny.hparams.vocabSize]);
    const fd = fs.openSync(tiny.path, 'r');
    try {
      ids.forEach((id, i) => {
        const b = Buffer.alloc(64 * 4);
        fs.readSync(fd, b, 0, b.length, info.infoEndOffset! + Number(te.offset) + id * 64 * 4);
        expect(Array.from(rows.subarray(i * 64, (i + 1) * 64))).toEqual(Array.from(new Float32Array(b.buffer, b.byteOffset, 64)));
      });
    } finally {
      fs.closeSync(fd);
    }
    // Unit-variance rows (so injected rows and real ones look alike), not zeros.
    const rms = Math.sqrt(rows.reduce((s, v) => s + v * v, 0) / rows.length);
    expect(rms).toBeGreaterThan(0.7);
    expect(rms).toBeLessThan(1.3);
    expect(() => readTokenEmbeddings(tiny.path, [tiny.hparams.vocabSize])).toThrow(/out of range for token_embd.weight/);
  });

  it('is deterministic per seed', async () => {
    const again = await synthLlm({ preset: 'tiny', out: path.join(dir, 'again.gguf'), seed: 7 });
    const other = await synthLlm({ preset: 'tiny', out: path.join(dir, 'other.gguf'), seed: 8 });
    const sha = (p: string): string => createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    expect(sha(again.path)).toBe(sha(tiny.path));
    expect(sha(other.path)).not.toBe(sha(tiny.path));
  });

  it('plans the 0.5b preset with Qwen2-0.5B shapes (written only with LLM2CLIP_SLOW_TESTS=1: 774 MB)', () => {
    const h = { name: 'x', contextLength: 32768, nEmbd: 896, nLayer: 24, nFf: 4864, nHead: 14, nHeadKv: 2, headDim: 64, ropeTheta: 1e6, rmsEps: 1e-6, vocabSize: 32000 };
    const params = llamaTensors(h, { output: false }).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    // Qwen2-0.5B has 494M parameters with its 151936-token vocabulary; with 32000 tokens: 494M − 119936×896.
    // (and without Qwen2's q/k/v biases, which the llama graph does not need for random weights).
    expect(params).toBe(494_032_768 - 119_936 * 896 - 24 * (896 + 128 + 128));
  });

  it('rejects bad options', async () => {
    await expect(synthLlm({ preset: 'huge' as never, out: path.join(dir, 'x.gguf') })).rejects.toThrow(/unknown LLM preset "huge"/);
    await expect(synthLlm({ preset: 'tiny', out: path.join(dir, 'x.gguf'), seed: -1 })).rejects.toThrow(/seed must be a non-negative integer/);
    await expect(synthLlm({ preset: 'tiny', out: path.join(dir, 'x.gguf'), dtype: 'Q4' as never })).rejects.toThrow(/dtype must be F32 or F16/);
    await expect(synthLlm({ preset: 'tiny', out: path.join(dir, 'missing', 'x.gguf') })).rejects.toThrow(/does not exist/);
  });
});

const SLOW = process.env.LLM2CLIP_SLOW_TESTS === '1';
describe.skipIf(!SLOW)(`synth-llm 0.5b in node-llama-cpp${SLOW ? '' : ' (skipped: set LLM2CLIP_SLOW_TESTS=1 to write the 774 MB model)'}`, () => {
  it('loads with Qwen2-0.5B shapes, F16, tied, and a non-degenerate next-token distribution', async () => {
    const r = await synthLlm({ preset: '0.5b', out: path.join(dir, 'half.gguf') });
    const m = await (await cpuLlama()).loadModel({ modelPath: r.path });
    try {
      const a = m.fileInfo.architectureMetadata;
      expect([a.embedding_length, a.block_count, a.attention?.head_count, a.attention?.head_count_kv, a.feed_forward_length]).toEqual([896, 24, 14, 2, 4864]);
      expect(m.fileInfo.metadata.general.file_type).toBe(1);
      expect(m.fileInfo.tensorInfo!.some((t) => t.name === 'output.weight')).toBe(false);
      expect(m.tokenize(SENTENCE)).toHaveLength(9);
      const ctx = await m.createContext({ contextSize: 64, threads: (await cpuLlama()).cpuMathCores });
      const ids = m.tokenize(SENTENCE);
      const res = await ctx.getSequence().controlledEvaluate([...ids.slice(0, -1), [ids[ids.length - 1]!, { generateNext: { probabilities: true } }]]);
      const top = [...res.at(-1)!.next.probabilities!.values()][0]!;
      // Tied unit-variance embeddings would give ~1.0 here (the model only repeating its last token).
      expect(top).toBeLessThan(0.2);
      await ctx.dispose();
    } finally {
      await m.dispose();
    }
  });
});
