// Bad inputs fail with errors that name the problem, before any expensive work.
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { synthProjector } from '../../projector/synth.js';
import { ChatError, ChatInputError, VisionLanguageModel, bytesLoader, type ChatMessage } from '../../src/chat/index.js';
import { dataUrl, imagePart, pngBytes, prepareChatFixture, type ChatFixture } from './fixtures.js';

let f: ChatFixture;
let vlm: VisionLanguageModel;
let png: Buffer;

const withImage = (url: string, text = 'what is it?'): ChatMessage[] => [{ role: 'user', content: [imagePart(url), { type: 'text', text }] }];

beforeAll(async () => {
  f = await prepareChatFixture();
  vlm = await VisionLanguageModel.load({ tower: f.tower, projector: f.projector, llm: f.llm.path, llama: f.llama, contextSize: 64 });
  png = await pngBytes(1, 2, 3);
});

afterAll(async () => {
  await vlm?.dispose();
  await f?.cleanup();
});

describe('images', () => {
  it.each([
    ['https://example.com/cat.png', /image 0: "https:\/\/example.com\/cat.png" is not a data: URL.*never read/],
    ['/etc/passwd', /image 0: "\/etc\/passwd" is not a data: URL/],
    ['file:///etc/passwd', /is not a data: URL/],
  ])('refuses %s by default without reading it', async (url, message) => {
    const embed = vi.spyOn(vlm.embedder, 'embed');
    await expect(vlm.chat(withImage(url)).result).rejects.toMatchObject({ name: 'ChatError', code: 'IMAGE', message: expect.stringMatching(message) });
    expect(embed).not.toHaveBeenCalled();
  });

  it('refuses malformed data URLs and undecodable image bytes, naming the image', async () => {
    await expect(vlm.chat(withImage('data:image/png;base64,%%%')).result).rejects.toMatchObject({ code: 'IMAGE', message: expect.stringMatching(/^image 0: malformed data URL/) });
    await expect(vlm.chat(withImage('data:text/plain;base64,AAAA')).result).rejects.toMatchObject({ code: 'IMAGE', message: expect.stringMatching(/media type "text\/plain"/) });
    const notAnImage = `data:image/png;base64,${Buffer.from('definitely not a png').toString('base64')}`;
    const second: ChatMessage[] = [{ role: 'user', content: [imagePart(dataUrl(png)), imagePart(notAnImage), { type: 'text', text: 'compare' }] }];
    await expect(vlm.chat(second).result).rejects.toMatchObject({ code: 'IMAGE', message: expect.stringMatching(/^image 1: (?!image #)/) });
  });

  it('a caller-provided loader decides which references are readable', async () => {
    const v = await VisionLanguageModel.load({
      tower: f.tower, projector: f.projector, llm: f.llm.path, llama: f.llama, contextSize: 256,
      imageLoader: bytesLoader(new Map([['cli-image:0', png]])),
    });
    try {
      expect((await v.chat(withImage('cli-image:0'), { maxTokens: 2 }).result).usage.imagesEncoded).toBe(1);
      await expect(v.chat(withImage(dataUrl(png))).result).rejects.toMatchObject({ code: 'IMAGE', message: expect.stringMatching(/not one of the images this caller provided/) });
    } finally {
      await v.dispose();
    }
  });

  it('too many images for the context fail before any image is encoded', async () => {
    const embed = vi.spyOn(vlm.embedder, 'embed');
    const url = dataUrl(png);
    const four: ChatMessage[] = [{ role: 'user', content: [imagePart(url), imagePart(url), imagePart(url), imagePart(url), { type: 'text', text: 'compare' }] }];
    const capacity = vlm.sequenceCapacity;
    const images = Math.ceil(capacity / 16) + 1;
    const many: ChatMessage[] = [{ role: 'user', content: [...Array.from({ length: images }, () => imagePart(url)), { type: 'text', text: 'compare' }] }];
    expect((await vlm.chat(four, { maxTokens: 1 }).result).usage.imageTokens).toBe(64);
    embed.mockClear();
    await expect(vlm.chat(many).result).rejects.toMatchObject({
      code: 'CONTEXT_FULL',
      message: expect.stringMatching(new RegExp(`needs \\d+ positions \\(${images} image\\(s\\) × 16 rows \\+ \\d+ text tokens\\), but a sequence holds ${capacity}`)),
    });
    expect(embed).not.toHaveBeenCalled();
  });
});

describe('models', () => {
  it('refuses a projector whose output width is not the LLM n_embd', async () => {
    await expect(VisionLanguageModel.load({ tower: f.tower, projector: f.narrowProjector, llm: f.llm.path, llama: f.llama })).rejects.toMatchObject({
      code: 'WIDTH',
      message: expect.stringMatching(/projector produces 32-wide rows but the LLM's embeddings are 64 wide/),
    });
  });

  it('refuses a projector whose input width is not the tower width', async () => {
    const dir = path.join(f.dir, 'projector-48');
    synthProjector({ outDir: dir, inputDim: 48, outputDim: 64 });
    await expect(VisionLanguageModel.load({ tower: f.tower, projector: dir, llm: f.llm.path, llama: f.llama })).rejects.toMatchObject({
      code: 'WIDTH',
      message: expect.stringMatching(/takes 48-wide features but tower .* produces 64-wide patch features/),
    });
  });

  it('refuses a template whose special tokens the vocabulary lacks, at load and per chat', async () => {
    await expect(VisionLanguageModel.load({ tower: f.tower, projector: f.projector, llm: f.llm.path, llama: f.llama, template: 'llama3' })).rejects.toMatchObject({
      code: 'TEMPLATE',
      message: expect.stringMatching(/template llama3 needs the special token "<\|begin_of_text\|>"/),
    });
    await expect(vlm.chat([{ role: 'user', content: 'hi' }], { template: 'llama3' }).result).rejects.toMatchObject({ code: 'TEMPLATE' });
  });
});

describe('messages and options', () => {
  it.each([
    [{ maxTokens: 0 }, /^options\.maxTokens: /],
    [{ temperature: -1 }, /^options\.temperature: /],
    [{ topP: 0 }, /^options\.topP: /],
    [{ seed: 1.5 }, /^options\.seed: /],
    [{ stop: [''] }, /^options\.stop\[0\]: stop strings must not be empty/],
    [{ template: 'alpaca' }, /^options\.template: /],
    [{ temprature: 0.5 }, /^options: .*temprature/],
  ])('refuses options %j', async (opts, message) => {
    await expect(vlm.chat([{ role: 'user', content: 'hi' }], opts as never).result).rejects.toMatchObject({ code: 'OPTIONS', message: expect.stringMatching(message) });
  });

  it.each([
    [{ type: 'nonsense' }, /^options\.jsonSchema\.type: "nonsense" is not one of/],
    [{ type: 'string', pattern: '^[a-z]+$' }, /^options\.jsonSchema: keyword "pattern" is not supported here/],
    [{ type: 'object', properties: { n: { type: 'integer', minimum: 3 } } }, /^options\.jsonSchema\.properties\.n: keyword "minimum" is not supported/],
    [{ type: 'object', properties: { a: { type: 'string' } }, required: ['b'] }, /^options\.jsonSchema\.required: must list names from properties/],
    [{ type: 'array', items: { $ref: '#/$defs/x' } }, /^options\.jsonSchema\.items\.\$ref: no \$defs entry named "x"/],
    [{ enum: [] }, /^options\.jsonSchema\.enum: must be a non-empty array/],
  ])('refuses JSON schema %j instead of silently not enforcing it', async (jsonSchema, message) => {
    await expect(vlm.chat([{ role: 'user', content: 'hi' }], { jsonSchema }).result).rejects.toMatchObject({ code: 'OPTIONS', message: expect.stringMatching(message) });
  });

  it('refuses malformed conversations with ChatInputError', async () => {
    await expect(vlm.chat([]).result).rejects.toThrow(ChatInputError);
    await expect(vlm.chat([{ role: 'assistant', content: [imagePart(dataUrl(png))] }] as never).result).rejects.toThrow(/images are only allowed in user messages/);
    await expect(vlm.chat([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }]).result).rejects.toThrow(/must end with a user message/);
  });

  it('the iterator rethrows what rejects the result', async () => {
    const s = vlm.chat(withImage('https://example.com/x.png'));
    await expect((async () => {
      for await (const _ of s);
    })()).rejects.toBeInstanceOf(ChatError);
  });
});
