/**
 * `llm2clip features --dataset`: LLaVA samples → training shards, with the chat pipeline's own prompt code
 * (no Python needed). The central check: the positions before each answer are exactly the prompt the
 * serving pipeline builds for the same conversation (OpenAI-shaped messages → normalizeChat →
 * renderPrompt → planPrompt), and the labels are the answer tokens plus the token that ends the turn.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { normalizeChat, type ChatMessage } from '../../src/chat/messages.js';
import { choosePlaceholder } from '../../src/chat/placeholder.js';
import { planPrompt, renderPrompt, type TemplateChoice } from '../../src/chat/prompt.js';
import { cmdFeaturesDataset, isDatasetFeatures } from '../../src/cli/train-commands.js';
import { f16ArrayToF32, f32ArrayToF16 } from '../../src/formats/half.js';
import { readNpy } from '../../src/formats/npy.js';
import { synthLlm } from '../../src/gguf/synth.js';
import { sampleToChat, llavaSampleSchema } from '../../src/train/llava.js';
import { renderTrainingRow } from '../../src/train/render.js';
import { buildFeatureShards, type ShardRow } from '../../src/train/shards.js';
import { VisionTower } from '../../src/vision/tower.js';
import { buildImageWorld, type ImageWorld } from './fixture.js';

let w: ImageWorld;
let gguf: string;
let llama: Llama;
let model: LlamaModel;
const quiet = { onWarning: () => undefined };

beforeAll(async () => {
  w = await buildImageWorld();
  gguf = (await synthLlm({ preset: 'tiny', out: path.join(w.dir, 'tiny.gguf'), seed: 7 })).path;
  llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: 1 });
  model = await llama.loadModel({ modelPath: gguf, vocabOnly: true });
});
afterAll(async () => {
  await model?.dispose();
  if (w) fs.rmSync(w.dir, { recursive: true, force: true });
});

const PNG_URL = 'data:image/png;base64,AAAA';

/** The serving-side prompt for OpenAI-shaped messages. */
function servingPrompt(messages: ChatMessage[], template: TemplateChoice): number[] {
  const chat = normalizeChat(messages);
  const plan = planPrompt(renderPrompt(model, chat, template), chat.images.map((_, i) => `k${i}`), 16, choosePlaceholder(model).token);
  return [...plan.tokens] as number[];
}

function row(sample: unknown, template: TemplateChoice) {
  const s = llavaSampleSchema.parse(sample);
  return renderTrainingRow({ model, template, tokensPerImage: 16, placeholder: choosePlaceholder(model).token }, sampleToChat(s), s.id);
}

const sample = (convs: [string, string][]) => ({ id: 'x', image: 'a.png', conversations: convs.map(([from, value]) => ({ from, value })) });

describe('training rows', () => {
  it.each(['chatml', 'vicuna_v1', 'llava_v1', 'gguf'] as const)('%s: the prompt is the serving prompt; labels are the answer and the end-of-turn token', (template) => {
    const r = row(sample([['human', '<image>\nwhat colour is it?'], ['gpt', 'it is red.']]), template);
    expect(r.labels).toHaveLength(1);
    const [s, e] = r.labels[0]!;
    const prompt = servingPrompt([{ role: 'user', content: [{ type: 'image_url', image_url: { url: PNG_URL } }, { type: 'text', text: 'what colour is it?' }] }], template);
    expect(r.tokens.slice(0, s)).toEqual(prompt);
    expect(e).toBe(r.tokens.length);
    const answer = model.detokenize(r.tokens.slice(s, e - 1) as never, true);
    expect(answer.trim()).toBe('it is red.');
    expect(model.isEogToken(r.tokens[e - 1] as never)).toBe(true);
    expect(r.imageStarts).toHaveLength(1);
    expect(r.tokens.slice(r.imageStarts[0], r.imageStarts[0]! + 16)).toEqual(new Array(16).fill(choosePlaceholder(model).token));
  });

  it('multi-turn: one row, each answer labelled, each prompt prefix equal to the serving prompt for that history', () => {
    const r = row(sample([['human', 'what colour is it?\n<image>'], ['gpt', 'red.'], ['human', 'and the mark?'], ['gpt', 'blue.']]), 'chatml');
    expect(r.labels).toHaveLength(2);
    const img = { type: 'image_url' as const, image_url: { url: PNG_URL } };
    const m1: ChatMessage[] = [{ role: 'user', content: [img, { type: 'text', text: 'what colour is it?' }] }];
    expect(r.tokens.slice(0, r.labels[0]![0])).toEqual(servingPrompt(m1, 'chatml'));
    const m2: ChatMessage[] = [...m1, { role: 'assistant', content: 'red.' }, { role: 'user', content: 'and the mark?' }];
    expect(r.tokens.slice(0, r.labels[1]![0])).toEqual(servingPrompt(m2, 'chatml'));
    expect(model.detokenize(r.tokens.slice(...r.labels[1]!) as never, true)).toBe('blue.<|im_end|>');
  });

  it('several images (LLaVA-OneVision list): markers stay in place, one span each, the prompt is the serving prompt', () => {
    const r = row({ ...sample([['human', '<image>\n<image>\nwhich one is red?'], ['gpt', 'the first.'], ['human', 'and <image> this one?'], ['gpt', 'blue.']]), image: ['a.png', 'b.png', 'c.png'] }, 'chatml');
    const img = { type: 'image_url' as const, image_url: { url: PNG_URL } };
    const m1: ChatMessage[] = [{ role: 'user', content: [img, img, { type: 'text', text: 'which one is red?' }] }];
    expect(r.tokens.slice(0, r.labels[0]![0])).toEqual(servingPrompt(m1, 'chatml'));
    const m2: ChatMessage[] = [...m1, { role: 'assistant', content: 'the first.' }, { role: 'user', content: [{ type: 'text', text: 'and' }, img, { type: 'text', text: 'this one?' }] }];
    expect(r.tokens.slice(0, r.labels[1]![0])).toEqual(servingPrompt(m2, 'chatml'));
    expect(r.imageStarts).toHaveLength(3);
    const ph = choosePlaceholder(model).token;
    for (const s0 of r.imageStarts) expect(r.tokens.slice(s0, s0 + 16)).toEqual(new Array(16).fill(ph));
    expect(r.imageStarts[1]! - r.imageStarts[0]!).toBeGreaterThanOrEqual(16);
    expect(r.imageStarts[2]!).toBeGreaterThan(r.labels[0]![1]);
  });

  it('refuses samples it cannot place or label, naming the sample', () => {
    expect(() => row(sample([['human', 'no image here'], ['gpt', 'ok']]), 'chatml')).toThrow(/sample "x": no <image> marker/);
    expect(() => row(sample([['human', '<image> <image>'], ['gpt', 'ok']]), 'chatml')).toThrow(/2 <image> markers for 1 image/);
    expect(() => row({ ...sample([['human', '<image> and <image>'], ['gpt', 'ok']]), image: ['a.png', 'b.png', 'c.png'] }, 'chatml')).toThrow(/2 <image> markers for 3 images/);
    expect(() => llavaSampleSchema.parse({ id: 'x', image: [], conversations: [{ from: 'human', value: '<image>' }, { from: 'gpt', value: 'ok' }] })).toThrow(/image list is empty/);
    expect(() => row(sample([['gpt', '<image>'], ['human', 'ok']]), 'chatml')).toThrow(/turns must alternate/);
    expect(() => row(sample([['human', '<image>'], ['gpt', 'ok'], ['human', 'more?']]), 'chatml')).toThrow(/ends with a human turn/);
    expect(() => row(sample([['human', '<image>'], ['robot', 'ok']]), 'chatml')).toThrow(/expected "human" or "gpt"/);
    expect(() => llavaSampleSchema.parse({ id: 'x', conversations: [] })).toThrow();
  });
});

describe('features --dataset', () => {
  const args = (out: string, extra: string[] = []) => ['--dataset', w.dataset, '--images', w.images, '--tower', w.tower, '--llm', gguf, '--template', 'chatml', '--out', out, '--shard-size', '5', ...extra];

  it('is recognised by --dataset, writes shards whose features are the tower\'s, and resumes', async () => {
    expect(isDatasetFeatures(['--tower', 't', '--dataset', 'd'])).toBe(true);
    expect(isDatasetFeatures(['--tower', 't', 'a.png'])).toBe(false);
    const out = path.join(w.dir, 'shards');
    const r = await buildFeatureShards({ ...quiet, dataset: w.dataset, images: w.images, tower: w.tower, llm: gguf, out, template: 'chatml', shardSize: 5, llama });
    expect(r.written).toBe(3);
    const m = r.manifest;
    expect(m).toMatchObject({ complete: true, template: 'chatml', tokensPerImage: 16, llm: { nEmbd: 64 }, tower: { width: 64, patchTokens: 16, arch: 'openai' } });
    expect(m.shards.map((s) => s.rows)).toEqual([5, 5, 2]);
    const shard = JSON.parse(fs.readFileSync(path.join(out, 'shard-00001.json'), 'utf8')) as { rows: ShardRow[] };
    const feats = readNpy(path.join(out, 'shard-00001.npy'));
    expect(feats.shape).toEqual([5, 16, 64]);
    const tower = await VisionTower.load(w.tower);
    const r0 = shard.rows[0]!;
    const want = (await tower.encode([fs.readFileSync(path.join(w.images, w.samples.find((s) => s.id === r0.id)!.image))])).patchFeatures;
    await tower.dispose();
    expect(r0.images).toHaveLength(1);
    expect(Array.from(feats.data.subarray(r0.images[0]! * 1024, (r0.images[0]! + 1) * 1024))).toEqual(Array.from(want));

    // Resume: complete shards are kept; a missing one is rebuilt identically.
    const before = fs.readFileSync(path.join(out, 'shard-00001.npy'));
    fs.rmSync(path.join(out, 'shard-00001.json'));
    const again = await buildFeatureShards({ ...quiet, dataset: w.dataset, images: w.images, tower: w.tower, llm: gguf, out, template: 'chatml', shardSize: 5, llama });
    expect(again.written).toBe(1);
    expect(fs.readFileSync(path.join(out, 'shard-00001.npy')).equals(before)).toBe(true);
    await expect(cmdFeaturesDataset(args(out, ['--template', 'vicuna_v1']).filter((_, i, a) => !(a[i] === 'chatml' || a[i + 1] === 'chatml')))).rejects.toThrow(
      /holds shards made from other inputs/,
    );
    // shards of the older row format are not resumed into the new one
    const mPath = path.join(out, 'manifest.json');
    fs.writeFileSync(mPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(mPath, 'utf8')), version: 1 }));
    await expect(buildFeatureShards({ ...quiet, dataset: w.dataset, images: w.images, tower: w.tower, llm: gguf, out, template: 'chatml', shardSize: 5, llama })).rejects.toThrow(
      /holds shards of format version 1 \(this llm2clip writes version 2\)/,
    );
  });

  it('stores features as float16 on request (half the disk, values rounded to float16)', async () => {
    const out = path.join(w.dir, 'shards-f16');
    const r = await buildFeatureShards({ ...quiet, dataset: w.dataset, images: w.images, tower: w.tower, llm: gguf, out, template: 'chatml', shardSize: 5, featureDtype: 'f16', llama });
    expect(r.manifest.featureDtype).toBe('f16');
    const a = readNpy(path.join(out, 'shard-00000.npy'));
    const b = readNpy(path.join(w.dir, 'shards', 'shard-00000.npy'));
    expect(a.shape).toEqual(b.shape);
    expect(Array.from(a.data)).toEqual(Array.from(f16ArrayToF32(f32ArrayToF16(b.data))));
    expect(fs.statSync(path.join(out, 'shard-00000.npy')).size).toBeLessThan(fs.statSync(path.join(w.dir, 'shards', 'shard-00000.npy')).size * 0.6);
    const again = await buildFeatureShards({ ...quiet, dataset: w.dataset, images: w.images, tower: w.tower, llm: gguf, out, template: 'chatml', shardSize: 5, featureDtype: 'f16', llama });
    expect(again.written).toBe(0);
  });

  it('reports bad inputs clearly, or skips them with --skip-invalid', async () => {
    const bad = (name: string, content: string): string => {
      const f = path.join(w.dir, name);
      fs.writeFileSync(f, content);
      return f;
    };
    const run = (dataset: string, extra: Partial<Parameters<typeof buildFeatureShards>[0]> = {}) =>
      buildFeatureShards({ ...quiet, dataset, images: w.images, tower: w.tower, llm: gguf, out: path.join(w.dir, `o-${path.basename(dataset)}`), template: 'chatml', llama, ...extra });
    await expect(run(bad('broken.json', '[{"id": 1,'))).rejects.toThrow(/broken.json: not valid JSON/);
    await expect(run(bad('obj.json', '{"id": 1}'))).rejects.toThrow(/expected a JSON array/);
    const missing = [...w.samples, { ...w.samples[0]!, id: 'ghost', image: 'nope.png' }];
    await expect(run(bad('missing.json', JSON.stringify(missing)))).rejects.toThrow(/sample "ghost": image .*nope.png does not exist/);
    const escape = [{ ...w.samples[0]!, id: 'esc', image: '../data.json' }];
    await expect(run(bad('escape.json', JSON.stringify(escape)))).rejects.toThrow(/leaves the --images directory/);
    const noImage = [...w.samples, { id: 'plain', image: w.samples[0]!.image, conversations: [{ from: 'human', value: 'hi' }, { from: 'gpt', value: 'hello' }] }];
    await expect(run(bad('noimage.json', JSON.stringify(noImage)))).rejects.toThrow(/sample "plain": no <image> marker/);
    const dup = [w.samples[0], w.samples[0]];
    await expect(run(bad('dup.json', JSON.stringify(dup)))).rejects.toThrow(/duplicate id/);

    // A corrupt image surfaces while encoding; --skip-invalid drops it (and the text-only sample) instead.
    fs.writeFileSync(path.join(w.images, 'corrupt.png'), Buffer.from('not a png at all'));
    const withCorrupt = [...noImage, { ...w.samples[1]!, id: 'corrupt', image: 'corrupt.png' }];
    await expect(run(bad('corrupt.json', JSON.stringify([...w.samples, withCorrupt[withCorrupt.length - 1]])))).rejects.toThrow(/sample "corrupt": image .*corrupt.png/);
    const r = await run(bad('corrupt2.json', JSON.stringify(withCorrupt)), { skipInvalid: true, shardSize: 4 });
    expect(r.manifest.dataset.skipped.map((s) => s.id).sort()).toEqual(['corrupt', 'plain']);
    expect(r.manifest.shards.reduce((a, s) => a + s.rows, 0)).toBe(w.samples.length);
  });
});
