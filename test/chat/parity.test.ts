// Image-embedding parity through the pipeline: an embedder whose "image" rows are the LLM's own
// token_embd rows for a token span X must give the same next-token logits, and the same greedy text,
// as node-llama-cpp evaluating the prompt with X's token ids in place of the image. The reference prompt
// comes from llama.cpp tokenizing the rendered string (its <image> control token replaced by X), not
// from the pipeline's prompt builder; it is evaluated with the same batch splits (text before, span,
// text after), since llama.cpp's results drift ~1e-4 relative when a span is split differently.
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { VisionLanguageModel, type ImageEmbedder } from '../../src/chat/index.js';
import { prefillPrompt } from '../../src/chat/generate.js';
import { normalizeChat } from '../../src/chat/messages.js';
import { planPrompt, renderPrompt } from '../../src/chat/prompt.js';
import { readTokenEmbeddings } from '../../src/gguf/synth.js';
import { readLastLogits } from '../../src/llm/index.js';
import { dataUrl, imagePart, pngBytes, prepareChatFixture, type ChatFixture } from './fixtures.js';

const TOL = 1e-5;

let f: ChatFixture;
let model: LlamaModel;
let X: Token[]; // the span standing in for an image
let img: string;
const contexts: LlamaContext[] = [];
const question = 'what is in the picture?';

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Rows of X whatever the image: the identity of "projected features" for the parity check. */
function tokenRowsEmbedder(): ImageEmbedder {
  const rows = readTokenEmbeddings(f.llm.path, X);
  return { identity: 'token-rows-X', tokensPerImage: X.length, outputDim: f.llm.hparams.nEmbd, embed: async () => rows, dispose: async () => undefined };
}

/** llama.cpp's tokenization of the ChatML prompt, split at its <image> token into [before, after]. */
function referenceSplit(): { before: Token[]; after: Token[] } {
  const ids = model.tokenize(`<|im_start|>user\n<image>\n${question}<|im_end|>\n<|im_start|>assistant\n`, true);
  const at = ids.indexOf(f.llm.tokens.image as Token);
  expect(ids.filter((t) => t === f.llm.tokens.image)).toHaveLength(1);
  return { before: [model.tokens.bos!, ...ids.slice(0, at)], after: ids.slice(at + 1) };
}

async function freshSequence(): Promise<LlamaContextSequence> {
  const c = await model.createContext({ contextSize: 256, batchSize: 128 });
  contexts.push(c);
  return c.getSequence();
}

/** Evaluates the reference: before and X as two plain evaluations, then `after` with logits of its last token. */
async function referenceLogits(seq: LlamaContextSequence): Promise<Float32Array> {
  const { before, after } = referenceSplit();
  await seq.evaluateWithoutGeneratingNewTokens(before);
  await seq.evaluateWithoutGeneratingNewTokens(X);
  await seq.controlledEvaluate([...after.slice(0, -1), [after[after.length - 1]!, { generateNext: { token: true } }]]);
  return (await readLastLogits(seq))!;
}

beforeAll(async () => {
  f = await prepareChatFixture();
  model = await f.llama.loadModel({ modelPath: f.llm.path });
  X = model.tokenize(' the cat sat on the mat and the dog is red and the square is blue').slice(0, 16);
  expect(X).toHaveLength(16);
  img = dataUrl(await pngBytes(10, 200, 10));
});

afterAll(async () => {
  for (const c of contexts) await c.dispose();
  await model?.dispose();
  await f?.cleanup();
});

describe('pipeline parity: injected token rows ≡ token ids', () => {
  it(`prefill: next-token logits equal within ${TOL}`, async () => {
    const chat = normalizeChat([{ role: 'user', content: [imagePart(img), { type: 'text', text: question }] }]);
    const plan = planPrompt(renderPrompt(model, chat, 'chatml'), ['X'], X.length, f.llm.tokens.image as Token);
    const { before, after } = referenceSplit();
    // the pipeline's prompt is the reference prompt with placeholders where X goes
    expect(plan.tokens).toEqual([...before, ...new Array(X.length).fill(f.llm.tokens.image), ...after]);

    const seqP = await freshSequence();
    const rows = readTokenEmbeddings(f.llm.path, X);
    const finalRun = await prefillPrompt(seqP, plan, 0, () => rows, f.llm.tokens.image as Token);
    expect(finalRun).toEqual(after);
    await seqP.controlledEvaluate([...finalRun.slice(0, -1), [finalRun[finalRun.length - 1]!, { generateNext: { token: true } }]]);
    const logitsP = (await readLastLogits(seqP))!;
    const logitsT = await referenceLogits(await freshSequence());
    const d = maxAbsDiff(logitsP, logitsT);
    console.log(`pipeline prefill vs token ids: max|Δlogit| = ${d.toExponential(3)}`);
    expect(d).toBeLessThanOrEqual(TOL);

    // control: different rows (another span) must change the logits, or the check proves nothing
    const seqC = await freshSequence();
    const other = readTokenEmbeddings(f.llm.path, model.tokenize(' yes no one two three four five six seven eight nine ten eleven twelve thirteen').slice(0, 16));
    const runC = await prefillPrompt(seqC, plan, 0, () => other, f.llm.tokens.image as Token);
    await seqC.controlledEvaluate([...runC.slice(0, -1), [runC[runC.length - 1]!, { generateNext: { token: true } }]]);
    expect(maxAbsDiff((await readLastLogits(seqC))!, logitsT)).toBeGreaterThan(0.1);
  });

  it('end to end: VisionLanguageModel.chat greedy text equals greedy generation from the token ids', async () => {
    const vlm = await VisionLanguageModel.create({ model, embedder: tokenRowsEmbedder(), template: 'chatml', contextSize: 256 });
    try {
      const r = await vlm.chat([{ role: 'user', content: [imagePart(img), { type: 'text', text: question }] }], { temperature: 0, maxTokens: 12 }).result;
      const seqT = await freshSequence();
      const { before, after } = referenceSplit();
      await seqT.evaluateWithoutGeneratingNewTokens(before);
      await seqT.evaluateWithoutGeneratingNewTokens(X);
      const greedy: Token[] = [];
      for await (const t of seqT.evaluate(after, { temperature: 0 })) {
        greedy.push(t);
        if (greedy.length === 12) break;
      }
      expect(r.usage.completionTokens).toBe(greedy.length);
      expect(r.text).toBe(model.detokenize(greedy, true));
      expect(r.text.length).toBeGreaterThan(0);
    } finally {
      await vlm.dispose();
    }
  });
});
