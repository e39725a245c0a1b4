/**
 * `npm run bench:chat`: time to first token of a one-image chat, split into image encode (tower +
 * projector) and prefill (prompt evaluation up to the first sampled token), and decode tokens/s, through
 * VisionLanguageModel. Prints one JSON document.
 *
 * Cases:
 * - tiny: synthetic OpenAI-arch tiny tower (16 patch tokens) → random projector → synth-llm tiny (F32).
 * - 0.5b: synth-llm 0.5b (Qwen2-0.5B shapes in the llama arch, F16, random weights) behind a random-weight
 *   OpenAI L-14-336 tower (synth-checkpoint + convert, fp32) and a random 1024→896 projector: 576 image
 *   tokens, so image encode is a real L-14-336 forward pass. Both files are cached under --work.
 *
 * Every measured run uses a new image (no feature-cache hit; only the text before the image is reused
 * from the KV, reported as cachedTokens). The first run of each case is a warm-up and reported apart.
 *
 * Flags: --cases tiny,0.5b  --runs 3  --max-tokens 32  --gpu auto|off  --threads N (0.5b; tiny always 1)
 *        --work DIR (default models/cache/bench-chat)  --fresh (re-synthesise the 0.5b GGUF even if present)
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

import { getLlama, type Llama } from 'node-llama-cpp';
import sharp from 'sharp';

import { synthProjector } from '../projector/synth.js';
import { VisionLanguageModel, type ChatResult } from '../src/chat/index.js';
import { synthLlm } from '../src/gguf/synth.js';
import { convertCheckpoint } from '../src/vision/convert.js';
import { synthCheckpoint } from '../src/vision/synth.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
}

function posInt(name: string, def: number): number {
  const v = Number(arg(name, String(def)));
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${arg(name, '')}`);
  return v;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

async function png(i: number): Promise<Buffer> {
  const c = { r: (i * 67) % 256, g: (i * 131) % 256, b: (i * 29) % 256 };
  return sharp({ create: { width: 64, height: 64, channels: 3, background: c } }).png().toBuffer();
}

async function runCase(vlm: VisionLanguageModel, runs: number, maxTokens: number) {
  const one = async (i: number): Promise<ChatResult> => {
    const url = `data:image/png;base64,${(await png(i)).toString('base64')}`;
    const stream = vlm.chat([{ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: 'what is in the picture?' }] }], {
      maxTokens,
      temperature: 0.8,
      seed: i,
    });
    for await (const _ of stream);
    return stream.result;
  };
  const warm = await one(1000);
  const measured: ChatResult[] = [];
  for (let i = 0; i < runs; i++) measured.push(await one(i));
  const pick = (r: ChatResult) => ({
    promptTokens: r.usage.promptTokens,
    imageTokens: r.usage.imageTokens,
    cachedTokens: r.usage.cachedTokens,
    completionTokens: r.usage.completionTokens,
    finishReason: r.finishReason,
    imageEncodeMs: round(r.usage.imageEncodeMs),
    prefillMs: round(r.usage.prefillMs),
    timeToFirstTokenMs: round(r.usage.timeToFirstTokenMs),
    decodeTokensPerSecond: r.usage.decodeTokensPerSecond === null ? null : round(r.usage.decodeTokensPerSecond),
  });
  const rows = measured.map(pick);
  const med = (k: 'imageEncodeMs' | 'prefillMs' | 'timeToFirstTokenMs') => round(median(rows.map((r) => r[k])));
  const tps = rows.map((r) => r.decodeTokensPerSecond).filter((x): x is number => x !== null);
  return {
    median: {
      imageEncodeMs: med('imageEncodeMs'),
      prefillMs: med('prefillMs'),
      timeToFirstTokenMs: med('timeToFirstTokenMs'),
      prefillTokensPerSecond: round(median(rows.map((r) => ((r.promptTokens - r.cachedTokens) * 1000) / r.prefillMs))),
      decodeTokensPerSecond: tps.length ? round(median(tps)) : null,
    },
    warmup: pick(warm),
    runs: rows,
  };
}

async function tinyCase(work: string, llama: Llama, runs: number, maxTokens: number) {
  const dir = join(work, 'tiny');
  const ck = await synthCheckpoint({ arch: 'openai', preset: 'tiny', outDir: join(dir, 'ckpt'), seed: 1 });
  const m = await convertCheckpoint(ck.checkpoint, { outDir: join(dir, 'tower'), onWarning: () => undefined });
  const llm = await synthLlm({ preset: 'tiny', out: join(dir, 'tiny.gguf'), seed: 1 });
  synthProjector({ outDir: join(dir, 'projector'), inputDim: m.width, outputDim: llm.hparams.nEmbd, seed: 1 });
  const vlm = await VisionLanguageModel.load({ tower: join(dir, 'tower'), projector: join(dir, 'projector'), llm: llm.path, llama, contextSize: 1024 });
  try {
    return {
      case: 'tiny',
      llm: { preset: 'tiny', nEmbd: llm.hparams.nEmbd, layers: llm.hparams.nLayer, dtype: llm.dtype, threads: 1 },
      imageSource: `tower ${m.arch} tiny (${m.imageSize} px, ${m.patchTokens} patches, width ${m.width}) → mlp2x_gelu projector ${m.width}→${llm.hparams.nEmbd}`,
      ...(await runCase(vlm, runs, maxTokens)),
    };
  } finally {
    await vlm.dispose();
  }
}

async function halfBCase(work: string, llama: Llama, threads: number, runs: number, maxTokens: number, fresh: boolean) {
  const dir = join(work, '0.5b');
  mkdirSync(dir, { recursive: true });
  const gguf = join(dir, 'synth-0.5b-f16.gguf');
  const towerDir = join(dir, 'tower-l-14-336');
  const t0 = performance.now();
  const reused = existsSync(gguf) && existsSync(join(towerDir, 'tower.json')) && !fresh;
  if (!reused) {
    await synthLlm({ preset: '0.5b', out: gguf, seed: 1 });
    const ck = await synthCheckpoint({ arch: 'openai', preset: 'l-14-336', outDir: join(dir, 'ckpt'), seed: 1, adapter: false });
    await convertCheckpoint(ck.checkpoint, { outDir: towerDir, onWarning: () => undefined });
    rmSync(join(dir, 'ckpt'), { recursive: true, force: true });
  }
  const synthMs = performance.now() - t0;
  synthProjector({ outDir: join(dir, 'projector'), inputDim: 1024, outputDim: 896, hiddenDim: 896, seed: 1 });
  const vlm = await VisionLanguageModel.load({ tower: towerDir, projector: join(dir, 'projector'), llm: gguf, llama, contextSize: 2048 });
  try {
    return {
      case: '0.5b',
      llm: { preset: '0.5b', nEmbd: 896, layers: 24, dtype: 'F16', threads, gguf, reusedExistingFiles: reused, ...(reused ? {} : { synthesiseMs: Math.round(synthMs) }) },
      imageSource: 'tower openai L-14-336 (random weights, fp32, 576 patches, width 1024) → mlp2x_gelu projector 1024→896→896',
      ...(await runCase(vlm, runs, maxTokens)),
    };
  } finally {
    await vlm.dispose();
  }
}

async function main(): Promise<void> {
  const cases = arg('cases', 'tiny,0.5b').split(',');
  for (const c of cases) if (c !== 'tiny' && c !== '0.5b') throw new Error(`--cases: unknown case ${c} (tiny, 0.5b)`);
  const runs = posInt('runs', 3);
  const maxTokens = posInt('max-tokens', 32);
  const threads = posInt('threads', cpus().length);
  const gpuArg = arg('gpu', 'auto');
  if (gpuArg !== 'auto' && gpuArg !== 'off') throw new Error('--gpu must be auto or off');
  const work = arg('work', join('models', 'cache', 'bench-chat'));
  mkdirSync(work, { recursive: true });
  const fresh = process.argv.includes('--fresh');

  // One node-llama-cpp instance per case, disposed before the next case starts: a live instance from
  // the previous case measurably slowed the next one on a 2-core machine.
  let gpu: unknown = null;
  const withLlama = async <T>(maxThreads: number, body: (llama: Llama) => Promise<T>): Promise<T> => {
    const l = await getLlama({ gpu: gpuArg === 'off' ? false : 'auto', build: 'never', progressLogs: false, maxThreads });
    gpu = l.gpu;
    try {
      return await body(l);
    } finally {
      await l.dispose();
    }
  };
  const results = [];
  if (cases.includes('tiny')) results.push(await withLlama(1, (l) => tinyCase(work, l, runs, maxTokens)));
  if (cases.includes('0.5b')) results.push(await withLlama(threads, (l) => halfBCase(work, l, threads, runs, maxTokens, fresh)));
  const doc = {
    bench: 'chat',
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, llamaGpu: gpu },
    settings: { runs, maxTokens, temperature: 0.8, note: 'medians over runs; each run uses a new image; timeToFirstToken = load/hash image + render + queue + encode + prefill' },
    results,
  };
  process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
}

await main();
