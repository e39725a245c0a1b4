// The official openai client against the running server. On the tiny random-weight model answers carry no
// meaning, so these tests check the protocol: shapes, usage arithmetic, streaming, determinism with a
// seed, multi-turn KV reuse, JSON-schema output that parses and validates, and 4xx errors with params.
import OpenAI from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { dataUrl, imagePart, pngBytes } from '../chat/fixtures.js';
import { errorOf, longOutputFormat, post, startTestServer, syntheticModel, type TestServer } from './helpers.js';

let model: Awaited<ReturnType<typeof syntheticModel>>;
let t: TestServer;
let red: string;
let blue: string;
const TOKENS_PER_IMAGE = 16; // the tiny tower's patch tokens

type Timings = { image_tokens: number; images_encoded: number; prefill_ms: number; seed: number; time_to_first_token_ms: number };
const timingsOf = (x: unknown): Timings => (x as { timings: Timings }).timings;

beforeAll(async () => {
  model = await syntheticModel();
  t = await startTestServer(model);
  red = dataUrl(await pngBytes(220, 10, 10));
  blue = dataUrl(await pngBytes(10, 10, 220));
});

afterAll(async () => {
  await t?.close();
  await model?.cleanup();
});

const ask = (text: string, ...images: string[]): ChatCompletionMessageParam[] => [
  { role: 'user', content: [...images.map(imagePart), { type: 'text', text }] },
];

describe('openai client', () => {
  it('lists the model with image input; health is ready', async () => {
    const list = await t.client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['test-model']);
    expect((list.data[0] as unknown as { input_modalities: string[] }).input_modalities).toEqual(['text', 'image']);
    expect(await (await fetch(`${t.url}/health`)).json()).toMatchObject({ status: 'ready', model: 'test-model' });
  });

  it('answers a plain image question with usage and timings', async () => {
    const r = await t.client.chat.completions.create({ model: 'test-model', messages: ask('What is in the picture?', red), max_tokens: 8, temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.model).toBe('test-model');
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.message.role).toBe('assistant');
    expect(typeof r.choices[0]!.message.content).toBe('string');
    expect(['stop', 'length']).toContain(r.choices[0]!.finish_reason);
    const u = r.usage!;
    expect(u.prompt_tokens).toBeGreaterThan(TOKENS_PER_IMAGE);
    expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
    expect(u.completion_tokens).toBeLessThanOrEqual(8);
    expect(u.prompt_tokens_details?.cached_tokens).toBeGreaterThanOrEqual(0);
    const tm = timingsOf(r);
    expect(tm.image_tokens).toBe(TOKENS_PER_IMAGE);
    expect(tm.prefill_ms).toBeGreaterThan(0);
  });

  it('takes max_completion_tokens, a developer message, a bare image_url string, and top_p 0 as greedy', async () => {
    const r = await t.client.chat.completions.create({
      model: 'test-model',
      messages: [
        { role: 'developer', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'image_url', image_url: red as never }, { type: 'text', text: 'What is it?' }] },
      ],
      max_completion_tokens: 3,
      top_p: 0,
    });
    expect(r.usage!.completion_tokens).toBeLessThanOrEqual(3);
    expect(timingsOf(r).image_tokens).toBe(TOKENS_PER_IMAGE);
    const again = await t.client.chat.completions.create({ model: 'test-model', messages: ask('What is it?', red), max_tokens: 6, top_p: 0 });
    const third = await t.client.chat.completions.create({ model: 'test-model', messages: ask('What is it?', red), max_tokens: 6, top_p: 0 });
    expect(third.choices[0]!.message.content).toBe(again.choices[0]!.message.content);
  });

  it('is deterministic with a seed, and streaming yields the same text with a final usage chunk', async () => {
    const req = { model: 'test-model', messages: ask('Describe it.', blue), max_tokens: 12, temperature: 0.9, seed: 1234 };
    const a = await t.client.chat.completions.create(req);
    const b = await t.client.chat.completions.create(req);
    expect(b.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
    expect(timingsOf(a).seed).toBe(1234);

    const stream = await t.client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]!.id)).toBe(true);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(a.usage === undefined ? expect.anything() : { ...a.usage, prompt_tokens_details: expect.anything() });
    const finish = chunks.at(-2)!;
    expect(finish.choices[0]!.finish_reason).toBe(a.choices[0]!.finish_reason);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(a.choices[0]!.message.content);
  });

  it('streams without include_usage: no usage chunk, ends with a finish reason', async () => {
    const stream = await t.client.chat.completions.create({ model: 'test-model', messages: ask('Hi', red), max_tokens: 4, stream: true, seed: 1 });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toMatch(/^(stop|length)$/);
    expect(chunks.every((c) => c.usage === undefined)).toBe(true);
  });

  it('takes two images in one message', async () => {
    const one = await t.client.chat.completions.create({ model: 'test-model', messages: ask('Compare.', red), max_tokens: 2, seed: 3 });
    const two = await t.client.chat.completions.create({ model: 'test-model', messages: ask('Compare.', red, blue), max_tokens: 2, seed: 3 });
    expect(timingsOf(two).image_tokens).toBe(2 * TOKENS_PER_IMAGE);
    // 16 image rows plus the template's separator between the two images
    expect(two.usage!.prompt_tokens - one.usage!.prompt_tokens).toBeGreaterThanOrEqual(TOKENS_PER_IMAGE);
    expect(two.usage!.prompt_tokens - one.usage!.prompt_tokens).toBeLessThanOrEqual(TOKENS_PER_IMAGE + 4);
  });

  it('continues a multi-turn conversation, reusing the KV prefix of the first turn', async () => {
    const first = ask('What colour dominates?', blue);
    const r1 = await t.client.chat.completions.create({ model: 'test-model', messages: first, max_tokens: 6, seed: 5 });
    const second: ChatCompletionMessageParam[] = [
      { role: 'system', content: 'You are terse.' },
      ...first,
      { role: 'assistant', content: r1.choices[0]!.message.content ?? '' },
      { role: 'user', content: 'And the corner?' },
    ];
    // the system message changes the prefix: run the new conversation twice, the second run reuses it
    await t.client.chat.completions.create({ model: 'test-model', messages: second.slice(0, 2), max_tokens: 1, seed: 5 });
    const r2 = await t.client.chat.completions.create({ model: 'test-model', messages: second, max_tokens: 6, seed: 5 });
    expect(r2.usage!.prompt_tokens).toBeGreaterThan(r1.usage!.prompt_tokens);
    expect(r2.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(TOKENS_PER_IMAGE);
  });

  it('constrains output to a json_schema: it parses and validates', async () => {
    const schema = {
      type: 'object',
      properties: { colour: { enum: ['red', 'green', 'blue'] }, round: { type: 'boolean' }, tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 3 } },
      required: ['colour', 'round', 'tags'],
    };
    for (const seed of [1, 2, 3]) {
      const r = await t.client.chat.completions.create({
        model: 'test-model',
        messages: ask('Answer as JSON.', red),
        max_tokens: 200,
        seed,
        response_format: { type: 'json_schema', json_schema: { name: 'answer', schema, strict: true } },
      });
      expect(r.choices[0]!.finish_reason).toBe('stop');
      const v = JSON.parse(r.choices[0]!.message.content!) as { colour: string; round: boolean; tags: string[] };
      expect(['red', 'green', 'blue']).toContain(v.colour);
      expect(typeof v.round).toBe('boolean');
      expect(v.tags.length).toBeLessThanOrEqual(3);
      expect(v.tags.every((x) => x === 'a' || x === 'b')).toBe(true);
      expect(Object.keys(v).sort()).toEqual(['colour', 'round', 'tags']);
    }
  });

  it('json_object output starts as a JSON object', async () => {
    const r = await t.client.chat.completions.create({ model: 'test-model', messages: ask('JSON please', blue), max_tokens: 24, seed: 9, response_format: { type: 'json_object' } });
    const text = r.choices[0]!.message.content!;
    expect(text.trimStart().startsWith('{')).toBe(true);
    if (r.choices[0]!.finish_reason === 'stop') expect(typeof JSON.parse(text)).toBe('object');
  });

  it('accepts what OpenAI clients send that changes nothing here: system + developer, a refusal part, empty logit_bias, seed -1', async () => {
    const body = (extra: Record<string, unknown>, messages: unknown[]) => ({ model: 'test-model', max_tokens: 2, messages, ...extra });
    const user = { role: 'user', content: [imagePart(red), { type: 'text', text: 'Hi' }] };
    const ok = await post(`${t.url}/v1/chat/completions`, body({ logit_bias: {} }, [{ role: 'system', content: 'Be brief.' }, { role: 'developer', content: 'Use English.' }, user]));
    expect(ok.status, ok.text).toBe(200);
    const refusal = await post(`${t.url}/v1/chat/completions`, body({}, [user, { role: 'assistant', content: [{ type: 'refusal', refusal: 'I cannot.' }] }, { role: 'user', content: 'Why?' }]));
    expect(refusal.status, refusal.text).toBe(200);
    const bad = await post(`${t.url}/v1/chat/completions`, body({}, [{ role: 'user', content: [{ type: 'refusal', refusal: 'x' }] }]));
    expect(bad.status).toBe(400);
    expect(errorOf(bad.body).param).toBe('messages[0].content[0]');
    const late = await post(`${t.url}/v1/chat/completions`, body({}, [user, { role: 'assistant', content: 'a' }, { role: 'developer', content: 'x' }, { role: 'user', content: 'b' }]));
    expect(late.status).toBe(400);
    expect(errorOf(late.body).message).toMatch(/messages\[2\]: system \(and developer\) messages are only allowed before/);
    const seeds = await Promise.all([1, 2].map(() => post(`${t.url}/v1/chat/completions`, body({ seed: -1 }, [user]))));
    const drawn = seeds.map((r) => timingsOf(r.body).seed);
    expect(drawn[0]).not.toBe(drawn[1]); // -1 = a random seed, as in llama.cpp
    expect(drawn).not.toContain(4294967295);
  });

  it('maps client mistakes to 400 with the parameter path, and unknown models to 404', async () => {
    const bad = async (body: Record<string, unknown>) => {
      try {
        await t.client.chat.completions.create({ model: 'test-model', messages: ask('x', red), ...body } as never);
      } catch (e) {
        return e as InstanceType<typeof OpenAI.APIError>;
      }
      throw new Error('expected an error');
    };
    const cases: [Record<string, unknown>, number, string | null][] = [
      [{ n: 2 }, 400, 'n'],
      [{ tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] }, 400, 'tools'],
      [{ logprobs: true }, 400, 'logprobs'],
      [{ max_tokens: -1 }, 400, 'max_tokens'],
      [{ max_completion_tokens: 0 }, 400, 'max_completion_tokens'],
      [{ temperature: 7 }, 400, 'temperature'],
      [{ frobnicate: true }, 400, 'frobnicate'],
      [{ messages: ask('x', 'data:image/png;base64,@@@') }, 400, 'messages[0].content[0].image_url.url'],
      [{ messages: ask('x', red, 'http://127.0.0.1/x.png') }, 400, 'messages[0].content[1].image_url.url'],
      [{ messages: [{ role: 'assistant', content: 'hi' }] }, 400, 'messages'],
      [{ messages: [{ role: 'user', content: 'a' }, { role: 'system', content: 'b' }, { role: 'user', content: 'c' }] }, 400, 'messages[1]'],
      [{ messages: [{ role: 'tool', content: 'x', tool_call_id: 'a' }] }, 400, 'messages[0].role'],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: 'a+' } } } }, 400, 'response_format.json_schema.schema'],
      [{ messages: ask('word '.repeat(3000)) }, 400, 'messages'],
      [{ model: 'gpt-4o' }, 404, 'model'],
    ];
    for (const [body, status, param] of cases) {
      const e = await bad(body);
      expect([JSON.stringify(body).slice(0, 80), e.status]).toEqual([JSON.stringify(body).slice(0, 80), status]);
      expect(e.param).toBe(param);
      expect(e.message.length).toBeGreaterThan(5);
    }
    const batches = async () => Number(/llm2clip_image_batch_size_count (\d+)/.exec(await (await fetch(`${t.url}/metrics`)).text())![1]);
    const before = await batches();
    const fresh = dataUrl(await pngBytes(17, 99, 201)); // never seen: would need the tower
    const ctx = await bad({ messages: ask('word '.repeat(3000), fresh) });
    expect(ctx.code).toBe('context_length_exceeded');
    await new Promise((r) => setTimeout(r, 200));
    expect(await batches()).toBe(before); // refused before the image reached the tower
  });

  it('aborts generation when the client disconnects, freeing the sequence', async () => {
    const ac = new AbortController();
    const stream = await t.client.chat.completions.create(
      { model: 'test-model', messages: ask('Go on and on.', red), max_tokens: 900, stream: true, response_format: longOutputFormat(1500) },
      { signal: ac.signal },
    );
    let n = 0;
    try {
      for await (const _ of stream) if (++n === 3) ac.abort();
    } catch {
      /* aborted */
    }
    const metrics = async () => (await fetch(`${t.url}/metrics`)).text();
    for (let i = 0; i < 400 && !/llm2clip_chats_total\{finish_reason="abort"\} 1/.test(await metrics()); i++) await new Promise((r) => setTimeout(r, 10));
    expect(await metrics()).toMatch(/llm2clip_chats_total\{finish_reason="abort"\} 1/);
    expect(await metrics()).toMatch(/llm2clip_active_sequences 0/);
  });
});
