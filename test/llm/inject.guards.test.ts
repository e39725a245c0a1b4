// Guards of the injection bridge: every refusal is typed and leaves the sequence as it was.
import { spawnSync } from 'node:child_process';
import path from 'node:path';

import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  ContextSpaceError,
  EmbeddingShapeError,
  InjectionError,
  NativeAddonError,
  SequenceDisposedError,
  defaultNativeAddonPath,
  injectEmbeddings,
  injectionInfo,
  loadNativeAddon,
} from '../../src/llm/index.js';
import { internalsOf, nodeLlamaCppLocks } from '../../src/llm/nlcInternals.js';
import { loadTinyModel, prepareTinyLlm, tokenEmbeddingRows, type TinyLlm } from './helpers.js';

describe('native addon', () => {
  it('explains how to build it when it is missing', () => {
    expect(() => loadNativeAddon(path.join(path.dirname(defaultNativeAddonPath()), 'nope.node'))).toThrow(/run npm install/);
  });

  it('has no DT_NEEDED on libllama (it uses the binding node-llama-cpp loaded)', (ctx) => {
    const r = spawnSync('readelf', ['-d', defaultNativeAddonPath()], { encoding: 'utf8' });
    if (r.status !== 0) return ctx.skip();
    const needed = r.stdout.split('\n').filter((l) => l.includes('(NEEDED)'));
    expect(needed.length).toBeGreaterThan(0);
    expect(needed.filter((l) => /libllama|libggml/.test(l))).toEqual([]);
  });

  it('uses the lifecycle-utils instance node-llama-cpp locks with', async () => {
    await expect(nodeLlamaCppLocks()).resolves.toHaveProperty('acquireLock');
  });
});

describe('injectEmbeddings guards', () => {
  let fixture: TinyLlm;
  let ggufPath: string;
  let model: LlamaModel;
  let context: LlamaContext;
  let image: Token;
  let width: number;
  const text = (s: string): Token[] => [model.tokens.bos!, ...model.tokenize(s)];
  const state = (seq: LlamaContextSequence) => {
    const i = internalsOf(seq);
    return {
      next: seq.nextTokenIndex,
      tokens: seq.contextTokens,
      kv: loadNativeAddon().seqPosRange(i.ctx._ctx, i.model._model, i.seq._sequenceId),
    };
  };

  beforeAll(async () => {
    fixture = await prepareTinyLlm();
    ggufPath = fixture.path;
    model = await loadTinyModel(ggufPath);
    context = await model.createContext({ contextSize: 256, sequences: 4, batchSize: 16 });
    image = fixture.imageToken;
  });
  afterAll(async () => {
    await context?.dispose();
    await model?.dispose();
    fixture?.cleanup();
  });

  it('reports the input width and the binding it attached to', async () => {
    const seq = context.getSequence();
    const info = injectionInfo(seq);
    width = info.nEmbdInp;
    expect(info.nEmbdInp).toBe(model.embeddingVectorSize);
    expect(info.nVocab).toBe(model.fileInfo.metadata.tokenizer.ggml.tokens.length);
    expect(path.basename(info.libllamaPath)).toMatch(/^libllama\./);
    expect(loadNativeAddon().info().loadedLibllamas).toContain(info.libllamaPath);
    await seq.dispose();
  });

  it('chunks to the batch size and counts every row', async () => {
    const seq = context.getSequence();
    const tokens = Array.from({ length: 40 }, (_, i) => (10 + i) as Token); // > batchSize 16: 3 decode calls
    const res = await injectEmbeddings(seq, tokenEmbeddingRows(ggufPath, tokens), { placeholderToken: image });
    expect(res).toEqual({ startPosition: 0, count: 40 });
    expect(state(seq)).toEqual({ next: 40, tokens: new Array(40).fill(image), kv: [0, 39] });
    await seq.dispose();
  });

  it('rejects rows of the wrong width', async () => {
    const seq = context.getSequence();
    await seq.evaluateWithoutGeneratingNewTokens(text('hello world'));
    const before = state(seq);
    for (const n of [width - 1, width + 1, 0]) {
      const err = await injectEmbeddings(seq, new Float32Array(n), { placeholderToken: image }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EmbeddingShapeError);
      expect(err).toMatchObject({ code: 'WIDTH', expectedWidth: width, length: n });
    }
    expect(state(seq)).toEqual(before);
    await seq.dispose();
  });

  it('rejects a placeholder that is not a token of the model', async () => {
    const seq = context.getSequence();
    const err = await injectEmbeddings(seq, new Float32Array(width), { placeholderToken: 1e6 as Token }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InjectionError);
    expect(err).toMatchObject({ code: 'ARGUMENT' });
    await seq.dispose();
  });

  it('refuses when the context is too small, without shifting it, and fills it exactly', async () => {
    const seq = context.getSequence();
    await seq.evaluateWithoutGeneratingNewTokens(text('hello world, the cat sat on the mat'));
    const before = state(seq);
    const free = seq.contextSize - 1 - seq.nextTokenIndex; // node-llama-cpp keeps one position free
    const err = await injectEmbeddings(seq, new Float32Array((free + 1) * width), { placeholderToken: image }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContextSpaceError);
    expect(err).toMatchObject({ code: 'CONTEXT_FULL', needed: free + 1, free });
    expect(state(seq)).toEqual(before);
    const res = await injectEmbeddings(seq, new Float32Array(free * width).fill(0.01), { placeholderToken: image });
    expect(res.count).toBe(free);
    expect(seq.nextTokenIndex).toBe(seq.contextSize - 1);
    await seq.dispose();
  });

  it('refuses a disposed sequence and a disposed context', async () => {
    const seq = context.getSequence();
    await seq.dispose();
    await expect(injectEmbeddings(seq, new Float32Array(width), { placeholderToken: image })).rejects.toBeInstanceOf(SequenceDisposedError);

    const other = await model.createContext({ contextSize: 256 });
    const seq2 = other.getSequence();
    await other.dispose();
    await expect(injectEmbeddings(seq2, new Float32Array(width), { placeholderToken: image })).rejects.toMatchObject({ code: 'DISPOSED' });
  });

  it('aborts while waiting for the locks, leaving the sequence untouched', async () => {
    const seq = context.getSequence();
    await seq.evaluateWithoutGeneratingNewTokens(text('hello'));
    const before = state(seq);
    const pre = new AbortController();
    pre.abort(new Error('pre-aborted'));
    await expect(injectEmbeddings(seq, new Float32Array(width), { placeholderToken: image, signal: pre.signal })).rejects.toThrow('pre-aborted');

    const locks = await nodeLlamaCppLocks();
    const held = await locks.acquireLock([internalsOf(seq).seq._lock, 'evaluate']); // as if an evaluation were running
    const ac = new AbortController();
    const pending = injectEmbeddings(seq, new Float32Array(width), { placeholderToken: image, signal: ac.signal });
    ac.abort(new Error('user cancelled'));
    await expect(pending).rejects.toThrow('user cancelled');
    held.dispose();
    expect(state(seq)).toEqual(before);
    await seq.dispose();
  });

  it('native layer: refuses a start position that is not the next KV position, rolls back a cancelled decode, checks types', async () => {
    const addon = loadNativeAddon();
    const seq = context.getSequence();
    const i = internalsOf(seq);
    const [id, ctx, mdl] = [i.seq._sequenceId, i.ctx._ctx, i.model._model];
    await seq.evaluateWithoutGeneratingNewTokens(text('hello world'));
    const next = seq.nextTokenIndex;
    const rows = new Float32Array(20 * width);
    await expect(addon.decodeEmbeddings(ctx, mdl, id, next + 1, rows, 20, false, new Int32Array(1))).rejects.toMatchObject({
      code: 'ERR_LLM2CLIP_POSITION',
    });
    await expect(addon.decodeEmbeddings(ctx, mdl, id, next, rows, 20, false, new Int32Array([1]))).rejects.toMatchObject({
      code: 'ERR_LLM2CLIP_ABORTED',
      rolledBack: true,
    });
    expect(addon.seqPosRange(ctx, mdl, id)).toEqual([0, next - 1]);
    expect(() => addon.attach(mdl, mdl)).toThrow(/not an AddonContext/);
    expect(() => addon.attach({}, mdl)).toThrow(/not a wrapped native object/);
    await seq.dispose();
  });

  it('refuses objects that are not node-llama-cpp sequences', async () => {
    const fake = { _sequenceId: 0 } as unknown as LlamaContextSequence;
    await expect(injectEmbeddings(fake, new Float32Array(width), { placeholderToken: image })).rejects.toBeInstanceOf(NativeAddonError);
  });
});
