import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { convertCheckpoint, locateCheckpoint, nearbyConfig } from '../../src/vision/convert.js';
import { synthCheckpoint } from '../../src/vision/synth.js';
import { openaiTensors } from '../../src/vision/synth-weights.js';

let work: string;
let evaPt: string;
let evaCfg: string;
beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'llm2clip-convert-'));
  const r = await synthCheckpoint({ arch: 'eva02', preset: 'tiny', outDir: join(work, 'eva'), seed: 3 });
  evaPt = r.checkpoint;
  evaCfg = r.config!;
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('locateCheckpoint', () => {
  it('in a downloaded repo folder prefers the official LLM2CLIP-*.pt, then model.safetensors, then pytorch_model.bin', () => {
    const d = join(work, 'repo');
    mkdirSync(d);
    for (const f of ['pytorch_model.bin', 'model.safetensors', 'LLM2CLIP-EVA02-L-14-336.pt', 'config.json']) writeFileSync(join(d, f), '');
    expect(locateCheckpoint(d)).toBe(join(d, 'LLM2CLIP-EVA02-L-14-336.pt'));
    rmSync(join(d, 'LLM2CLIP-EVA02-L-14-336.pt'));
    expect(locateCheckpoint(d)).toBe(join(d, 'model.safetensors'));
    rmSync(join(d, 'model.safetensors'));
    expect(locateCheckpoint(d)).toBe(join(d, 'pytorch_model.bin'));
    rmSync(join(d, 'pytorch_model.bin'));
    expect(() => locateCheckpoint(d)).toThrow(/holds no checkpoint files/);
    expect(() => locateCheckpoint(join(work, 'missing'))).toThrow(/no such file or directory/);
  });
});

describe('config discovery', () => {
  it("skips a nearby config.json that is not this tower's config (EVA02 repos ship one for their HF port) and warns", () => {
    const d = join(work, 'hfrepo');
    mkdirSync(d);
    copyFileSync(evaPt, join(d, 'LLM2CLIP-EVA02-tiny.pt'));
    writeFileSync(join(d, 'config.json'), JSON.stringify({ architectures: ['LLM2CLIPModel'], vision_config: { hidden_size: 64 } }));
    const warnings: string[] = [];
    expect(nearbyConfig(join(d, 'LLM2CLIP-EVA02-tiny.pt'), 'eva02', (m) => warnings.push(m))).toBeUndefined();
    expect(warnings).toEqual([expect.stringMatching(/ignoring .*config\.json: it describes an OpenAI-CLIP tower, the checkpoint holds eva02/)]);
    writeFileSync(join(d, 'config.json'), '{"model_type": "llm2clip"}');
    warnings.length = 0;
    expect(nearbyConfig(join(d, 'LLM2CLIP-EVA02-tiny.pt'), 'eva02', (m) => warnings.push(m))).toBeUndefined();
    expect(warnings[0]).toMatch(/not a tower config/);
    copyFileSync(evaCfg, join(d, 'LLM2CLIP-EVA02-tiny.json'));
    expect(nearbyConfig(join(d, 'LLM2CLIP-EVA02-tiny.pt'), 'eva02', () => undefined)?.heads).toBe(4);
  });

  it('an explicit --config is authoritative and may name a released model', async () => {
    await expect(convertCheckpoint(evaPt, { outDir: join(work, 'o1'), config: 'LLM2CLIP-EVA02-L-14-336' })).rejects.toThrow(
      /built-in config LLM2CLIP-EVA02-L-14-336: config says vision_cfg.width 1024 but the checkpoint has 64/,
    );
    await expect(convertCheckpoint(evaPt, { outDir: join(work, 'o2'), config: 'no-such-model' })).rejects.toThrow(/not a released model name/);
  });
});

describe('unused tensors', () => {
  it('refuses a checkpoint carrying weights the graph would ignore, naming them', async () => {
    const g = { imageSize: 32, patchSize: 8, width: 64, layers: 3, heads: 4, embedDim: 40, adapterDim: 48 };
    const d = join(work, 'extra');
    mkdirSync(d);
    const tensors = openaiTensors(g, 1, false).map((t) => ({ name: t.name, shape: t.shape, dtype: 'F32' as const, data: t.fill }));
    tensors.push({ name: 'vision_model.encoder.layers.1.layer_scale', shape: [64], dtype: 'F32', data: () => new Float32Array(64) });
    writeSafetensors(join(d, 'model.safetensors'), tensors);
    writeFileSync(join(d, 'config.json'), JSON.stringify({ vision_config: { num_attention_heads: 4 } }));
    await expect(convertCheckpoint(d, { outDir: join(work, 'o3') })).rejects.toThrow(/tower graph does not use these tensors.*vision_model\.encoder\.layers\.1\.layer_scale/);
  });
});
