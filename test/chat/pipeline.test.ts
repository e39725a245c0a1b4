// Generation behaviour of the multimodal pipeline on tiny synthetic models: seeds, stop strings, max
// tokens, JSON-schema output with an image in the prompt, and KV reuse across turns (counted with
// node-llama-cpp's own token meter and an independent llama.cpp tokenization of the prompts).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { VisionLanguageModel, type ChatMessage, type ChatResult } from '../../src/chat/index.js';
import type { ChatStream } from '../../src/chat/stream.js';
import { dataUrl, imagePart, pngBytes, prepareChatFixture, type ChatFixture } from './fixtures.js';

let f: ChatFixture;
let red: string;
let blue: string;
const opened: VisionLanguageModel[] = [];

async function open(opts: { sequences?: number; contextSize?: number; template?: 'chatml' | 'gguf' } = {}): Promise<VisionLanguageModel> {
  const vlm = await VisionLanguageModel.load({ tower: f.tower, projector: f.projector, llm: f.llm.path, llama: f.llama, contextSize: 512, ...opts });
  opened.push(vlm);
  return vlm;
}

async function collect(stream: ChatStream<ChatResult>): Promise<{ deltas: string[]; result: ChatResult }> {
  const deltas: string[] = [];
  for await (const d of stream) deltas.push(d);
  return { deltas, result: await stream.result };
}

const ask = (img: string, text = 'what is in the picture?'): ChatMessage[] => [
  { role: 'user', content: [imagePart(img), { type: 'text', text }] },
];

beforeAll(async () => {
  f = await prepareChatFixture();
  red = dataUrl(await pngBytes(220, 20, 20));
  blue = dataUrl(await pngBytes(20, 20, 220));
});

afterAll(async () => {
  for (const v of opened) await v.dispose();
  await f?.cleanup();
});

describe('sampling', () => {
  it('the same seed gives the same text (fresh model, reused KV); different seeds give different texts', async () => {
    const [a, b] = [await open(), await open()];
    const opts = { temperature: 0.9, maxTokens: 24, seed: 42 };
    const first = (await a.chat(ask(red), opts).result).text;
    expect((await b.chat(ask(red), opts).result).text).toBe(first);
    const again = await a.chat(ask(red), opts).result; // prompt now mostly reused from the KV
    expect(again.usage.cachedTokens).toBeGreaterThan(0);
    expect(again.text).toBe(first);
    const others = [];
    for (const seed of [43, 44, 45]) others.push((await b.chat(ask(red), { ...opts, seed }).result).text);
    expect(others.filter((t) => t !== first).length).toBeGreaterThanOrEqual(2);
    expect(new Set(others).size).toBeGreaterThanOrEqual(2);
  });

  it('reports the seed it drew when none was given', async () => {
    const vlm = await open();
    const r = await vlm.chat(ask(red), { temperature: 0.9, maxTokens: 12 }).result;
    expect(Number.isInteger(r.seed)).toBe(true);
    expect((await vlm.chat(ask(red), { temperature: 0.9, maxTokens: 12, seed: r.seed }).result).text).toBe(r.text);
  });
});

describe('stopping', () => {
  it('a stop string cuts the text before it, in the stream as well, and ends with finish "stop"', async () => {
    const vlm = await open();
    const free = await vlm.chat(ask(red), { temperature: 0, maxTokens: 40 }).result;
    expect(free.finishReason).toBe('length');
    // pick a stop string from the middle of the free-running text (an independent reference)
    const clean = [...free.text].map((ch, i) => (ch !== '\ufffd' && ch.trim() !== '' ? i : -1)).filter((i) => i > free.text.length / 3);
    const at = clean.find((i) => free.text.slice(i, i + 3).length === 3 && !free.text.slice(i, i + 3).includes('\ufffd'))!;
    const stop = free.text.slice(at, at + 3);
    const expected = free.text.slice(0, free.text.indexOf(stop));
    const { deltas, result } = await collect(vlm.chat(ask(red), { temperature: 0, maxTokens: 40, stop: [stop] }));
    expect(result).toMatchObject({ finishReason: 'stop', stopString: stop, text: expected });
    expect(deltas.join('')).toBe(expected);
    expect(result.usage.completionTokens).toBeLessThan(free.usage.completionTokens);
  });

  it('maxTokens ends with finish "length" after exactly that many tokens', async () => {
    const vlm = await open();
    const r = await vlm.chat(ask(red), { temperature: 0, maxTokens: 5 }).result;
    expect(r.finishReason).toBe('length');
    expect(r.usage.completionTokens).toBe(5);
  });

  it('generation is capped by the free space of the sequence instead of shifting the context', async () => {
    const vlm = await open({ contextSize: 64 });
    const r = await vlm.chat(ask(red), { temperature: 0, maxTokens: 500 }).result;
    expect(r.finishReason).toBe('length');
    // node-llama-cpp pads the context (64 → its minimum) and keeps one position free
    const capacity = vlm.context.contextSize - 1;
    expect(vlm.sequenceCapacity).toBe(capacity);
    // the last sampled token is never evaluated, so the sequence ends exactly full
    expect(r.usage.completionTokens).toBe(capacity + 1 - r.usage.promptTokens);
    expect(vlm.stats().sequences[0]!.nextTokenIndex).toBe(capacity);
  });
});

describe('JSON schema', () => {
  const schema = {
    type: 'object',
    properties: {
      color: { enum: ['red', 'green', 'blue'] },
      round: { type: 'boolean' },
      label: { type: 'string', maxLength: 6 },
    },
  } as const;

  it('output with an image in the prompt parses and validates against the schema', async () => {
    const vlm = await open();
    for (const seed of [1, 2, 3]) {
      const { deltas, result } = await collect(vlm.chat(ask(red, 'describe the picture as JSON'), { jsonSchema: schema, temperature: 0.8, seed, maxTokens: 200 }));
      expect(result.usage.imageTokens).toBe(16);
      expect(result.finishReason).toBe('stop');
      expect(deltas.join('')).toBe(result.text);
      // independent validation: JSON.parse and hand-written checks, not node-llama-cpp's parser
      const parsed = JSON.parse(result.text) as Record<string, unknown>;
      expect(Object.keys(parsed).sort()).toEqual(['color', 'label', 'round']);
      expect(['red', 'green', 'blue']).toContain(parsed.color);
      expect(typeof parsed.round).toBe('boolean');
      expect(typeof parsed.label).toBe('string');
      expect((parsed.label as string).length).toBeLessThanOrEqual(6);
      expect(result.json).toEqual(parsed);
    }
  });
});

describe('KV reuse across turns', () => {
  /** llama.cpp's own tokenization of the rendered ChatML prompt, with <image> expanded to 16 placeholders. */
  function referenceTokens(vlm: VisionLanguageModel, turns: { role: string; text: string }[]): number[] {
    const s = turns.map((t) => `<|im_start|>${t.role}\n${t.text}<|im_end|>\n`).join('') + '<|im_start|>assistant\n';
    const ids = vlm.model.tokenize(s, true);
    const image = f.llm.tokens.image;
    return [f.llm.tokens.bos, ...ids.flatMap((t) => (t === image ? new Array<number>(16).fill(image) : [t]))];
  }
  const lcp = (a: readonly number[], b: readonly number[]): number => {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return i;
  };

  it('a follow-up turn evaluates only the new tokens and does not re-encode the image; another image is not reused', async () => {
    const vlm = await open({ sequences: 1, template: 'chatml' });
    const embed = vi.spyOn(vlm.embedder, 'embed');
    const meter = (): number => vlm.stats().sequences[0]!.inputTokens + vlm.stats().sequences[0]!.outputTokens;
    const q1 = '<image>\nwhat is in the picture?';
    const ref1 = referenceTokens(vlm, [{ role: 'user', text: q1 }]);

    // maxTokens 1: the one sampled token is never evaluated, so the sequence holds exactly the prompt
    const r1 = await vlm.chat(ask(red), { temperature: 0, maxTokens: 1 }).result;
    expect(r1.usage.promptTokens).toBe(ref1.length);
    expect(r1.usage.cachedTokens).toBe(0);
    expect(meter()).toBe(ref1.length);
    expect(embed).toHaveBeenCalledTimes(1);

    // turn 2 repeats turn 1 and adds an answer and a question: only what follows the common prefix is evaluated
    const answer = 'the cat sat on the mat';
    const turn2: ChatMessage[] = [...ask(red), { role: 'assistant', content: answer }, { role: 'user', content: 'and the color?' }];
    const ref2 = referenceTokens(vlm, [
      { role: 'user', text: q1 },
      { role: 'assistant', text: answer },
      { role: 'user', text: 'and the color?' },
    ]);
    const expectedCached = lcp(ref1, ref2);
    expect(expectedCached).toBeGreaterThan(ref1.indexOf(f.llm.tokens.image) + 16); // the image is inside the shared prefix
    const before = meter();
    const r2 = await vlm.chat(turn2, { temperature: 0, maxTokens: 8 }).result;
    expect(r2.usage.promptTokens).toBe(ref2.length);
    expect(r2.usage.cachedTokens).toBe(expectedCached);
    expect(r2.usage.evaluatedTokens).toBe(ref2.length - expectedCached);
    // node-llama-cpp's own count of decoded positions: the new prompt tokens, then the generated ones
    expect(meter() - before).toBe(ref2.length - expectedCached + r2.usage.completionTokens - 1);
    expect(r2.usage.imagesEncoded).toBe(0);
    expect(embed).toHaveBeenCalledTimes(1);
    expect(vlm.stats().imageEncodes).toBe(1);

    // turn 3 continues turn 2: its prompt starts with everything turn 2 evaluated, generated tokens excepted
    const turn3: ChatMessage[] = [...turn2, { role: 'assistant', content: 'red' }, { role: 'user', content: 'how many?' }];
    const r3 = await vlm.chat(turn3, { temperature: 0, maxTokens: 1 }).result;
    expect(r3.usage.cachedTokens).toBeGreaterThanOrEqual(r2.usage.promptTokens);
    expect(embed).toHaveBeenCalledTimes(1);

    // same text, different image: the placeholders are identical, but the record tells the images
    // apart, so only the tokens before the image are reused
    const before4 = meter();
    const r4 = await vlm.chat(ask(blue), { temperature: 0, maxTokens: 1 }).result;
    const imageStart = ref1.indexOf(f.llm.tokens.image);
    expect(r4.usage.cachedTokens).toBe(imageStart);
    expect(meter() - before4).toBe(r4.usage.promptTokens - imageStart);
    expect(embed).toHaveBeenCalledTimes(2);

    // back to the red image: evicted from the KV, but its features come from the cache
    const r5 = await vlm.chat(ask(red), { temperature: 0, maxTokens: 1 }).result;
    expect(r5.usage.cachedTokens).toBe(imageStart);
    expect(r5.usage.imagesEncoded).toBe(0);
    expect(embed).toHaveBeenCalledTimes(2);
    expect(vlm.stats().featureCache.hits).toBe(1);
  });
});
