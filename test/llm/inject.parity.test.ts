// Acceptance (issue 3): injecting the LLM's own token_embd rows for a token span gives
// the same next-token logits as evaluating those token ids, max |Δ| ≤ 1e-5 — at the
// start of a sequence, after text, followed by more text, and on two sequences at once.
// Token paths (T) and embedding paths (E) use the same decode splits, since llama.cpp's
// results drift ~1e-4 relative when a span is split into batches differently.
import { LlamaCompletion, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { injectEmbeddings } from '../../src/llm/index.js';
import { argmax, evalTokensForLogits, greedy, loadTinyModel, maxAbsDiff, prepareTinyLlm, tokenEmbeddingRows, type TinyLlm } from './helpers.js';

const TOL = 1e-5;

describe('injectEmbeddings parity (synth-llm tiny, CPU)', () => {
  let fixture: TinyLlm;
  let ggufPath: string;
  let model: LlamaModel;
  let image: Token; // placeholder id
  let P: Token[]; // text before (with BOS)
  let X: Token[]; // span whose embedding rows stand in for an image
  let S: Token[]; // text after
  const contexts: LlamaContext[] = [];
  const report: string[] = [];

  const newContext = async (sequences = 1): Promise<LlamaContext> => {
    const c = await model.createContext({ contextSize: 256, sequences, batchSize: 128 });
    contexts.push(c);
    return c;
  };
  const rows = (tokens: Token[]): Float32Array => tokenEmbeddingRows(ggufPath, tokens);
  const record = (label: string, d: number): void => {
    report.push(`${label}: max|Δ| = ${d.toExponential(3)}`);
    expect(d).toBeLessThanOrEqual(TOL);
  };

  beforeAll(async () => {
    fixture = await prepareTinyLlm();
    ggufPath = fixture.path;
    model = await loadTinyModel(ggufPath);
    image = fixture.imageToken;
    expect(model.tokenize('<image>', true)).toEqual([image]);
    P = [model.tokens.bos!, ...model.tokenize('hello world, this is')];
    X = model.tokenize(' the cat sat on the mat and the dog');
    S = model.tokenize(' what is in the picture?');
  });

  afterAll(async () => {
    for (const c of contexts) await c.dispose();
    await model?.dispose();
    fixture?.cleanup();
    console.log(`parity (tolerance ${TOL}):\n  ${report.join('\n  ')}`);
  });

  it('at the start of a sequence', async () => {
    const span = [model.tokens.bos!, ...X];
    const seqE = (await newContext()).getSequence();
    const seqT = (await newContext()).getSequence();
    const res = await injectEmbeddings(seqE, rows(span), { placeholderToken: image, wantLogits: true });
    expect(res).toMatchObject({ startPosition: 0, count: span.length });
    expect(seqE.nextTokenIndex).toBe(span.length);
    expect(seqE.contextTokens).toEqual(new Array(span.length).fill(image));
    const logitsT = await evalTokensForLogits(seqT, span);
    record('start of sequence', maxAbsDiff(res.logits!, logitsT));
    expect(argmax(res.logits!)).toBe(argmax(logitsT));
  });

  it('chunked to the batch size, against a token path split the same way', async () => {
    const opts = { contextSize: 256, batchSize: 16 };
    const [cE, cT] = [await model.createContext(opts), await model.createContext(opts)];
    contexts.push(cE, cT);
    const [seqE, seqT] = [cE.getSequence(), cT.getSequence()];
    const span = [...P, ...X, ...S, ...X, ...S].slice(0, 40); // 16 + 16 + 8 rows
    const res = await injectEmbeddings(seqE, rows(span), { placeholderToken: image, wantLogits: true });
    record('chunked (3 decodes of ≤16 rows)', maxAbsDiff(res.logits!, await evalTokensForLogits(seqT, span)));
    record('chunked, text following', maxAbsDiff(await evalTokensForLogits(seqE, S), await evalTokensForLogits(seqT, S)));
  });

  it('after text, then followed by more text and greedy generation', async () => {
    const seqE = (await newContext()).getSequence();
    const seqT = (await newContext()).getSequence();
    await seqE.evaluateWithoutGeneratingNewTokens(P);
    const meterBefore = seqE.tokenMeter.getState();
    const res = await injectEmbeddings(seqE, rows(X), { placeholderToken: image, wantLogits: true });
    expect(res).toMatchObject({ startPosition: P.length, count: X.length });
    expect(seqE.tokenMeter.usedInputTokens - meterBefore.usedInputTokens).toBe(X.length - 1);
    expect(seqE.tokenMeter.usedOutputTokens - meterBefore.usedOutputTokens).toBe(1);

    await seqT.evaluateWithoutGeneratingNewTokens(P);
    const logitsT = await evalTokensForLogits(seqT, X);
    record('after text', maxAbsDiff(res.logits!, logitsT));
    // control: other rows must give clearly different logits, or the comparison proves nothing
    const seqC = (await newContext()).getSequence();
    await seqC.evaluateWithoutGeneratingNewTokens(P);
    const other = await injectEmbeddings(seqC, rows(X.map((t) => (t + 1) as Token)), { placeholderToken: image, wantLogits: true });
    const control = maxAbsDiff(other.logits!, logitsT);
    report.push(`control (rows of other tokens): max|Δ| = ${control.toFixed(3)}`);
    expect(control).toBeGreaterThan(0.1);

    const afterE = await evalTokensForLogits(seqE, S);
    const afterT = await evalTokensForLogits(seqT, S);
    record('text following the injection', maxAbsDiff(afterE, afterT));
    expect(seqE.contextTokens).toEqual([...P, ...new Array(X.length).fill(image), ...S]);

    const genE = await greedy(seqE, argmax(afterE) as Token, 8);
    const genT = await greedy(seqT, argmax(afterT) as Token, 8);
    expect(genE).toEqual(genT);
    expect(seqE.nextTokenIndex).toBe(seqT.nextTokenIndex);
  });

  it('on two sequences of one context at once, interleaved with token decoding', async () => {
    const texts = [
      { p: P, x: X, s: S },
      {
        p: [model.tokens.bos!, ...model.tokenize('describe this image')],
        x: model.tokenize(' a big red dog and a small blue cat'),
        s: model.tokenize(' it was there?'),
      },
    ];
    const run = async (seq: LlamaContextSequence, t: (typeof texts)[number], inject: boolean) => {
      await seq.evaluateWithoutGeneratingNewTokens(t.p);
      const atImage = inject
        ? (await injectEmbeddings(seq, rows(t.x), { placeholderToken: image, wantLogits: true })).logits!
        : await evalTokensForLogits(seq, t.x);
      // continue with node-llama-cpp's sampler (its probabilities come from the same logits)
      const next = await seq.controlledEvaluate([...t.s.slice(0, -1), [t.s[t.s.length - 1]!, { generateNext: { token: true } }]]);
      const first = next[next.length - 1]?.next?.token;
      const gen = await greedy(seq, first!, 6);
      return { atImage, gen: [first, ...gen] };
    };
    // references: each token path alone on its own context
    const refs = [];
    for (const t of texts) refs.push(await run((await newContext()).getSequence(), t, false));

    const shared = await newContext(3);
    const [e0, e1] = [shared.getSequence(), shared.getSequence()];
    const bystander = shared.getSequence(); // plain token generation racing the injections
    const [r0, r1, by] = await Promise.all([
      run(e0, texts[0]!, true),
      run(e1, texts[1]!, true),
      greedy(bystander, model.tokens.bos!, 12),
    ]);
    record('two sequences at once: sequence 0', maxAbsDiff(r0.atImage, refs[0]!.atImage));
    record('two sequences at once: sequence 1', maxAbsDiff(r1.atImage, refs[1]!.atImage));
    expect(r0.gen).toEqual(refs[0]!.gen);
    expect(r1.gen).toEqual(refs[1]!.gen);
    expect(by).toEqual(await greedy((await newContext()).getSequence(), model.tokens.bos!, 12));
  });

  it('LlamaCompletion continues after the injected prefix without re-evaluating it', async () => {
    const seqE = (await newContext()).getSequence();
    const seqT = (await newContext()).getSequence();
    await seqE.evaluateWithoutGeneratingNewTokens(P);
    await injectEmbeddings(seqE, rows(X), { placeholderToken: image });
    await seqT.evaluateWithoutGeneratingNewTokens([...P, ...X]);
    const before = seqE.tokenMeter.usedInputTokens;
    const opts = { maxTokens: 10, temperature: 0 };
    // LlamaCompletion prepends BOS itself: the prompt must render the sequence's history
    // exactly (placeholders included) for the prefix, and so the image, to be reused.
    const textE = await new LlamaCompletion({ contextSequence: seqE }).generateCompletion(
      [...P.slice(1), ...new Array<Token>(X.length).fill(image), ...S],
      opts,
    );
    const textT = await new LlamaCompletion({ contextSequence: seqT }).generateCompletion([...P.slice(1), ...X, ...S], opts);
    expect(seqE.contextTokens.slice(0, P.length + X.length)).toEqual([...P, ...new Array(X.length).fill(image)]);
    expect(textE).toBe(textT);
    // only the suffix (plus the re-evaluated last prompt token) was fed as input
    expect(seqE.tokenMeter.usedInputTokens - before).toBeLessThanOrEqual(S.length);
  });
});
