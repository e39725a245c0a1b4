// Image batching: concurrent embeds share one tower run and give the rows the unbatched library embedder
// gives; a bad image fails alone; batches respect the size cap; prefetched encodes are handed to the later
// embed call; and through the server, images of queued requests are encoded together.
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { TowerProjectorEmbedder } from '../../src/chat/index.js';
import { sha256Hex } from '../../src/chat/images.js';
import { BatchingEmbedder, type BatchingOptions } from '../../server/batching-embedder.js';
import { TowerWorker } from '../../server/tower-worker.js';
import { dataUrl, imagePart, pngBytes } from '../chat/fixtures.js';
import { post, startTestServer, syntheticModel } from './helpers.js';

let model: Awaited<ReturnType<typeof syntheticModel>>;
let reference: TowerProjectorEmbedder;
let images: Buffer[];
const embedders: BatchingEmbedder[] = [];

beforeAll(async () => {
  model = await syntheticModel();
  reference = await TowerProjectorEmbedder.load(model.tower, model.projector, { threads: 1 });
  images = await Promise.all(Array.from({ length: 10 }, (_, i) => pngBytes((i * 53) % 256, (i * 97) % 256, (i * 31) % 256)));
});

afterAll(async () => {
  for (const e of embedders) await e.dispose();
  await reference?.dispose();
  await model?.cleanup();
});

async function open(o: Partial<BatchingOptions> = {}): Promise<BatchingEmbedder> {
  const e = await BatchingEmbedder.load(model.tower, model.projector, { threads: 1 }, { windowMs: 30, maxBatch: 16, maxPrefetch: 64, recentCapacity: 100, ...o });
  embedders.push(e);
  return e;
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

describe('batching embedder', () => {
  it('encodes concurrent images in one tower run with the same rows as one-by-one encoding', async () => {
    const e = await open();
    expect(e.identity).toBe(reference.identity);
    const rows = await Promise.all(images.slice(0, 6).map((b) => e.embed(b)));
    expect(e.runs).toEqual([6]);
    for (const [i, r] of rows.entries()) {
      const ref = await reference.embed(images[i]!);
      expect(r.length).toBe(e.tokensPerImage * e.outputDim);
      expect(maxDiff(r, ref)).toBeLessThan(1e-4);
    }
  });

  it('fails only the bad image of a batch', async () => {
    const e = await open();
    const results = await Promise.allSettled([e.embed(images[0]!), e.embed(Buffer.from('not an image')), e.embed(images[1]!)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(e.runs).toEqual([2]);
  });

  it('caps batches at maxBatch, and runs one image at a time when batching is off', async () => {
    const capped = await open({ maxBatch: 4 });
    await Promise.all(images.map((b) => capped.embed(b)));
    expect(capped.runs.reduce((a, b) => a + b, 0)).toBe(10);
    expect(Math.max(...capped.runs)).toBeLessThanOrEqual(4);
    const off = await open({ maxBatch: 1, windowMs: 0, maxPrefetch: 0 });
    await Promise.all(images.slice(0, 5).map((b) => off.embed(b)));
    expect(off.runs).toEqual([1, 1, 1, 1, 1]);
  });

  it('hands a prefetched encode to the later embed call and does not prefetch recent images again', async () => {
    const e = await open();
    const b = images[7]!;
    e.prefetch(b, sha256Hex(b));
    const rows = await e.embed(b);
    expect(e.runs).toEqual([1]);
    expect(maxDiff(rows, await reference.embed(b))).toBeLessThan(1e-4);
    const copy = Buffer.from(b); // same content, another request's bytes
    e.prefetch(copy, sha256Hex(copy));
    await new Promise((r) => setTimeout(r, 60));
    expect(e.runs).toEqual([1]);
  });
});

describe('tower worker', () => {
  it('reports a tower it cannot load, and a failed run, as errors', async () => {
    await expect(TowerWorker.start({ onnxPath: '/nonexistent/tower.onnx', imageSize: 32 })).rejects.toThrow(/\/nonexistent\/tower.onnx: onnxruntime could not load/);
    const w = await TowerWorker.start({ onnxPath: path.join(model.tower, 'tower.onnx'), imageSize: 32, threads: 1 });
    try {
      await expect(w.run(new Float32Array(5), 1)).rejects.toThrow(/the vision tower failed/);
      expect((await w.run(new Float32Array(2 * 3 * 32 * 32), 2)).length).toBe(2 * 16 * 64);
    } finally {
      await w.close();
    }
    await expect(w.run(new Float32Array(3 * 32 * 32), 1)).rejects.toThrow(/stopped/);
  });
});

describe('batching in the server', () => {
  it('encodes the images of queued requests together', async () => {
    const t = await startTestServer(model, { parallel: 1, imageBatchWindowMs: 30 });
    try {
      const urls = images.slice(0, 8).map((b) => dataUrl(b));
      const rs = await Promise.all(urls.map((u) => post(`${t.url}/v1/chat/completions`, { messages: [{ role: 'user', content: [imagePart(u), { type: 'text', text: 'hi' }] }], max_tokens: 2 })));
      expect(rs.map((r) => r.status)).toEqual(Array(8).fill(200));
      const runs = t.server.context.model!.embedder.runs;
      expect(runs.reduce((a, b) => a + b, 0)).toBe(8);
      expect(runs.length).toBeLessThan(8);
      const m = await (await fetch(`${t.url}/metrics`)).text();
      expect(m).toMatch(new RegExp(`llm2clip_image_batch_size_count ${runs.length}\\b`));
      expect(m).toMatch(/llm2clip_images_encoded_total 8/);
    } finally {
      await t.close();
    }
  });
});
