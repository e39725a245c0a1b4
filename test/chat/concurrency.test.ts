// Several chats on one context: more chats than sequences wait in the queue, aborting frees the
// sequence for the next chat, a full queue is refused, and dispose ends everything.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ChatError, VisionLanguageModel, type ChatMessage, type ChatResult } from '../../src/chat/index.js';
import { dataUrl, imagePart, pngBytes, prepareChatFixture, type ChatFixture } from './fixtures.js';

let f: ChatFixture;
let images: string[];
const opened: VisionLanguageModel[] = [];

async function open(sequences: number, maxQueue = 16): Promise<VisionLanguageModel> {
  const vlm = await VisionLanguageModel.load({ tower: f.tower, projector: f.projector, llm: f.llm.path, llama: f.llama, contextSize: 512, sequences, maxQueue });
  opened.push(vlm);
  return vlm;
}

const ask = (i: number): ChatMessage[] => [{ role: 'user', content: [imagePart(images[i % images.length]!), { type: 'text', text: `picture ${i}: what is in it?` }] }];

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 2000) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 1));
  }
}

beforeAll(async () => {
  f = await prepareChatFixture();
  images = [dataUrl(await pngBytes(200, 0, 0)), dataUrl(await pngBytes(0, 200, 0)), dataUrl(await pngBytes(0, 0, 200))];
});

afterAll(async () => {
  for (const v of opened) await v.dispose();
  await f?.cleanup();
});

describe('concurrency', () => {
  it('runs more chats than sequences; aborted ones (running or queued) free their sequence and all others finish', async () => {
    const vlm = await open(2);
    const n = 6;
    const controllers = Array.from({ length: n }, () => new AbortController());
    const streams = controllers.map((c, i) => vlm.chat(ask(i), { temperature: 0.8, seed: i, maxTokens: i === 0 ? 400 : 30, signal: c.signal }));
    await until(() => vlm.stats().pool.queued === 4); // 2 running, 4 queued
    controllers[4]!.abort(); // queued: leaves the queue
    expect(vlm.stats().pool.queued).toBe(3);
    // chat 0 is running: abort it once it has produced text
    const first: string[] = [];
    for await (const d of streams[0]!) {
      first.push(d);
      controllers[0]!.abort();
    }
    const results: ChatResult[] = await Promise.all(streams.map((s) => s.result));
    expect(results[0]!.finishReason).toBe('abort');
    expect(results[0]!.usage.completionTokens).toBeGreaterThan(0);
    expect(results[0]!.usage.completionTokens).toBeLessThan(400);
    expect(first.join('')).toBe(results[0]!.text);
    expect(results[4]!).toMatchObject({ finishReason: 'abort', text: '' });
    expect(results[4]!.usage.completionTokens).toBe(0);
    for (const i of [1, 2, 3, 5]) {
      expect(results[i]!.finishReason, `chat ${i}`).not.toBe('abort');
      expect(results[i]!.usage.completionTokens).toBeGreaterThan(0);
    }
    // queued chats waited for a sequence
    expect(Math.max(...[2, 3, 5].map((i) => results[i]!.usage.queueMs))).toBeGreaterThan(0);
    expect(vlm.stats().pool).toMatchObject({ busy: 0, queued: 0 });
    // each distinct image was encoded once, whatever the interleaving
    expect(vlm.stats().imageEncodes).toBe(3);
  });

  it('concurrent chats give the same text as the same chats run one by one', async () => {
    const vlm = await open(3);
    const opts = (i: number) => ({ temperature: 0.7, seed: 100 + i, maxTokens: 16 });
    const together = await Promise.all([0, 1, 2].map((i) => vlm.chat(ask(i), opts(i)).result));
    const solo = await open(1);
    for (const i of [0, 1, 2]) expect((await solo.chat(ask(i), opts(i)).result).text, `chat ${i}`).toBe(together[i]!.text);
  });

  it('aborting the only running chat lets the queued one run', async () => {
    const vlm = await open(1);
    const c = new AbortController();
    const long = vlm.chat(ask(0), { temperature: 0.8, seed: 1, maxTokens: 400, signal: c.signal });
    const next = vlm.chat(ask(1), { temperature: 0.8, seed: 2, maxTokens: 10 });
    await until(() => vlm.stats().pool.queued === 1);
    for await (const _ of long) c.abort();
    expect((await long.result).finishReason).toBe('abort');
    const r = await next.result;
    expect(r.finishReason).not.toBe('abort');
    expect(r.usage.completionTokens).toBeGreaterThan(0);
  });

  it('refuses chats beyond the queue bound with a clear error, and an aborted signal before start', async () => {
    const vlm = await open(1, 1);
    const c = new AbortController();
    const running = vlm.chat(ask(0), { maxTokens: 400, signal: c.signal });
    const queued = vlm.chat(ask(1), { maxTokens: 4, signal: c.signal });
    await until(() => vlm.stats().pool.queued === 1); // images load asynchronously before chats reach the pool
    const refused = vlm.chat(ask(2), { maxTokens: 4 }).result;
    await expect(refused).rejects.toThrow(ChatError);
    await expect(refused).rejects.toMatchObject({ code: 'QUEUE_FULL', message: expect.stringMatching(/1 sequences are busy and 1 chats are already waiting \(maxQueue 1\)/) });
    c.abort();
    expect((await running.result).finishReason).toBe('abort');
    expect((await queued.result).finishReason).toBe('abort');
    const pre = new AbortController();
    pre.abort();
    expect(await vlm.chat(ask(0), { signal: pre.signal }).result).toMatchObject({ finishReason: 'abort', text: '' });
    expect(vlm.stats().pool).toMatchObject({ busy: 0, queued: 0 });
  });

  it('dispose aborts running chats, rejects queued ones and refuses new ones', async () => {
    const vlm = await open(1);
    const running = vlm.chat(ask(0), { maxTokens: 400 });
    const queued = vlm.chat(ask(1), { maxTokens: 4 });
    for await (const _ of running) break; // wait for the first delta
    await vlm.dispose();
    expect((await running.result).finishReason).toBe('abort');
    await expect(queued.result).rejects.toMatchObject({ code: 'DISPOSED' });
    await expect(vlm.chat(ask(0)).result).rejects.toMatchObject({ code: 'DISPOSED' });
  });
});
