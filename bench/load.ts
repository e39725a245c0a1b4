/**
 * `npm run bench:load`: N concurrent image chats (default 64, lmms-eval's default concurrency) against the
 * OpenAI-compatible server, once with image batching on and once with it off. Every chat has its own
 * image (no feature-cache hits). Zero failures are required (exit code 1 otherwise). Prints one JSON
 * document: latency p50/p95/max, throughput, image-encode timings and the tower batches that ran.
 *
 * On the demo model each chat asks a held-out demo-world question about its own picture, and the answers
 * are scored (accuracy under load); on other models the chats ask for a one-sentence description.
 * Before timing, a warm-up round of `parallel` chats runs on each fresh server.
 *
 * Model: the bundled demo model by default (models/demo), or --model-dir DIR, or --tower/--projector/--llm,
 * or --synthetic tiny|l14 (random weights, built under models/cache/bench-load): tiny = the 16-patch test
 * tower; l14 = a random OpenAI L-14-336 tower (576 patches, the real encode cost) in front of the tiny LLM.
 *
 * Flags: --concurrency 64 --max-tokens 16 --parallel 4 --modes batched,unbatched --context-size N
 *        --threads N (llama.cpp) --tower-threads N --gpu auto|off --provider cpu|cuda
 *        --batch-window-ms 8 --batch-max N (default: the server's) --image-size 336
 */
import { existsSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';

import { synthProjector } from '../projector/synth.js';
import { demoSplit } from '../src/demo/dataset.js';
import { normalizeAnswer, renderScene } from '../src/demo/world.js';
import { checkModelPaths, packageRoot, parseServeConfig } from '../server/config.js';
import { startServer } from '../server/server.js';
import { synthLlm } from '../src/gguf/synth.js';
import { convertCheckpoint } from '../src/vision/convert.js';
import { synthCheckpoint } from '../src/vision/synth.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
function int(name: string, def: number): number {
  const v = Number(arg(name) ?? def);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer, got ${arg(name)}`);
  return v;
}

const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

interface ModelPaths {
  tower: string;
  projector: string;
  llm: string;
  label: string;
  contextSize?: number;
  demo?: boolean;
}

async function synthetic(kind: string): Promise<ModelPaths> {
  const dir = join(packageRoot(), 'models', 'cache', 'bench-load', kind);
  mkdirSync(dir, { recursive: true });
  const llm = join(dir, 'tiny.gguf');
  if (!existsSync(llm)) await synthLlm({ preset: 'tiny', out: llm, seed: 1 });
  if (kind === 'tiny') {
    const tower = join(dir, 'tower');
    if (!existsSync(join(tower, 'tower.json'))) {
      const ck = await synthCheckpoint({ arch: 'openai', preset: 'tiny', outDir: join(dir, 'ckpt'), seed: 1 });
      await convertCheckpoint(ck.checkpoint, { outDir: tower, onWarning: () => undefined });
    }
    synthProjector({ outDir: join(dir, 'projector'), inputDim: 64, outputDim: 64, seed: 1 });
    return { tower, projector: join(dir, 'projector'), llm, label: 'synthetic tiny: 16-patch tower, tiny Llama (random weights)' };
  }
  if (kind === 'l14') {
    // reuse bench:chat's random L-14-336 tower when it is there (it takes minutes to synthesise)
    const shared = join(packageRoot(), 'models', 'cache', 'bench-chat', '0.5b', 'tower-l-14-336');
    let tower = join(dir, 'tower-l-14-336');
    if (existsSync(join(shared, 'tower.json'))) tower = shared;
    else if (!existsSync(join(tower, 'tower.json'))) {
      const ck = await synthCheckpoint({ arch: 'openai', preset: 'l-14-336', outDir: join(dir, 'ckpt'), seed: 1, adapter: false });
      await convertCheckpoint(ck.checkpoint, { outDir: tower, onWarning: () => undefined });
    }
    synthProjector({ outDir: join(dir, 'projector'), inputDim: 1024, outputDim: 64, seed: 1 });
    return { tower, projector: join(dir, 'projector'), llm, label: 'synthetic l14: random OpenAI L-14-336 tower (576 patches), tiny Llama', contextSize: 1024 };
  }
  throw new Error(`--synthetic must be tiny or l14, got ${kind}`);
}

async function modelPaths(): Promise<ModelPaths> {
  const syn = arg('synthetic');
  if (syn) return synthetic(syn);
  const flags = ['model-dir', 'tower', 'projector', 'llm'].flatMap((f) => (arg(f) ? [`--${f}`, arg(f)!] : []));
  const c = parseServeConfig(flags, {});
  checkModelPaths(c);
  return { tower: c.tower, projector: c.projector, llm: c.llm, label: c.demoModel ? 'demo model (models/demo)' : c.llm, demo: c.demoModel };
}

interface Job {
  image: string;
  question: string;
  /** the expected answer (demo questions), scored by exact match */
  answer?: string;
}

const DESCRIBE = 'Describe the image in one sentence.';
const pngUrl = (png: Buffer): string => `data:image/png;base64,${png.toString('base64')}`;

/** n chats, each with its own picture: held-out demo questions on the demo model, else described gradients. */
async function jobs(n: number, demo: boolean, size: number): Promise<Job[]> {
  if (demo) {
    const { scenes, questions } = demoSplit('heldout', n, 1, { questionsPerImage: 1, minObjects: 1, maxObjects: 3 });
    return Promise.all(questions.map(async (q) => ({ image: pngUrl(await renderScene(scenes.get(q.image)!)), question: q.question, answer: q.answer })));
  }
  return (await images(n, size)).map((image) => ({ image, question: DESCRIBE }));
}

/** Distinct images: colour gradients with a shape, as PNG. */
async function images(n: number, size: number): Promise<string[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">
        <defs><linearGradient id="g"><stop offset="0" stop-color="hsl(${(i * 37) % 360},70%,50%)"/><stop offset="1" stop-color="hsl(${(i * 91) % 360},60%,30%)"/></linearGradient></defs>
        <rect width="100%" height="100%" fill="url(#g)"/><circle cx="${(i * 13) % size}" cy="${(i * 29) % size}" r="${size / 5}" fill="white"/></svg>`;
      const png = await sharp(Buffer.from(svg)).png().toBuffer();
      return `data:image/png;base64,${png.toString('base64')}`;
    }),
  );
}

interface Outcome {
  ok: boolean;
  status: number;
  ms: number;
  completionTokens: number;
  correct?: boolean;
  timings?: { image_encode_ms: number; queue_ms: number; time_to_first_token_ms: number };
  error?: string;
}

async function chat(url: string, job: Job, maxTokens: number, seed: number): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: job.image } }, { type: 'text', text: job.question }] }],
        max_tokens: maxTokens,
        temperature: 0,
        seed,
      }),
    });
    const body = (await r.json()) as { choices?: { message: { content: string } }[]; usage?: { completion_tokens: number }; timings?: Outcome['timings']; error?: { message: string } };
    const ms = performance.now() - t0;
    if (r.status !== 200) return { ok: false, status: r.status, ms, completionTokens: 0, error: body.error?.message ?? 'no error message' };
    const text = body.choices?.[0]?.message.content ?? '';
    return {
      ok: true,
      status: 200,
      ms,
      completionTokens: body.usage?.completion_tokens ?? 0,
      ...(job.answer !== undefined ? { correct: normalizeAnswer(text) === normalizeAnswer(job.answer) } : {}),
      ...(body.timings ? { timings: body.timings } : {}),
    };
  } catch (e) {
    return { ok: false, status: 0, ms: performance.now() - t0, completionTokens: 0, error: (e as Error).message };
  }
}

async function runMode(mode: 'batched' | 'unbatched', m: ModelPaths, work: Job[], warm: Job[]) {
  const concurrency = work.length;
  const overrides: Record<string, unknown> = {
    tower: m.tower,
    projector: m.projector,
    llm: m.llm,
    port: 0,
    quiet: true,
    parallel: int('parallel', 4),
    maxQueue: concurrency + 8,
    imageBatching: mode === 'batched',
    imageBatchWindowMs: int('batch-window-ms', 8),
    ...(arg('batch-max') ? { imageBatchMax: int('batch-max', 4) } : {}),
    gpu: arg('gpu') ?? 'auto',
    ...(arg('threads') ? { threads: int('threads', 0) } : {}),
    ...(arg('tower-threads') ? { towerThreads: int('tower-threads', 1) } : {}),
    ...(arg('provider') ? { provider: arg('provider') } : {}),
    ...(arg('context-size') ? { contextSize: int('context-size', 0) } : m.contextSize ? { contextSize: m.contextSize } : {}),
  };
  const server = await startServer(parseServeConfig([], {}, overrides), { log: () => undefined });
  try {
    await server.ready;
    const maxTokens = int('max-tokens', 16);
    for (const w of await Promise.all(warm.map((j) => chat(server.url, j, maxTokens, 0)))) {
      if (!w.ok) throw new Error(`warm-up chat failed: ${w.status} ${w.error}`);
    }
    const embedder = server.context.model!.embedder;
    const runsBefore = embedder.runs.length;
    const t0 = performance.now();
    const outcomes = await Promise.all(work.map((job, i) => chat(server.url, job, maxTokens, i + 1)));
    const wallMs = performance.now() - t0;
    const ok = outcomes.filter((o) => o.ok);
    const lat = ok.map((o) => o.ms);
    const runs = embedder.runs.slice(runsBefore);
    const tokens = ok.reduce((a, o) => a + o.completionTokens, 0);
    const scored = ok.filter((o) => o.correct !== undefined);
    return {
      mode,
      requests: outcomes.length,
      failures: outcomes.length - ok.length,
      ...(ok.length < outcomes.length ? { failureSamples: outcomes.filter((o) => !o.ok).slice(0, 5).map((o) => `${o.status}: ${o.error}`) } : {}),
      wallSeconds: round(wallMs / 1000, 2),
      latencyMs: ok.length ? { p50: round(pct(lat, 50)), p95: round(pct(lat, 95)), max: round(Math.max(...lat)), mean: round(mean(lat)) } : null,
      throughput: { requestsPerSecond: round((ok.length * 1000) / wallMs, 2), completionTokensPerSecond: round((tokens * 1000) / wallMs, 1), completionTokens: tokens },
      timingsMean: ok.length
        ? {
            queueMs: round(mean(ok.map((o) => o.timings?.queue_ms ?? 0))),
            imageEncodeMs: round(mean(ok.map((o) => o.timings?.image_encode_ms ?? 0))),
            timeToFirstTokenMs: round(mean(ok.map((o) => o.timings?.time_to_first_token_ms ?? 0))),
          }
        : null,
      ...(scored.length ? { accuracy: { questions: scored.length, correct: scored.filter((o) => o.correct).length, percent: round((100 * scored.filter((o) => o.correct).length) / scored.length, 2) } } : {}),
      towerRuns: { count: runs.length, images: runs.reduce((a, b) => a + b, 0), meanBatch: round(mean(runs), 2), maxBatch: Math.max(0, ...runs) },
    };
  } finally {
    await server.drain(0);
  }
}

async function main(): Promise<void> {
  const concurrency = int('concurrency', 64);
  const modes = (arg('modes') ?? 'batched,unbatched').split(',');
  for (const m of modes) if (m !== 'batched' && m !== 'unbatched') throw new Error(`--modes: unknown mode ${m} (batched, unbatched)`);
  const m = await modelPaths();
  const parallel = int('parallel', 4);
  const all = await jobs(concurrency + modes.length * parallel, m.demo === true, int('image-size', 336));
  const results = [];
  for (const [i, mode] of modes.entries()) {
    // a fresh server per mode: nothing is cached from the previous one; warm-up pictures differ from the timed ones
    const warm = all.slice(concurrency + i * parallel, concurrency + (i + 1) * parallel);
    results.push(await runMode(mode as 'batched' | 'unbatched', m, all.slice(0, concurrency), warm));
  }
  const doc = {
    bench: 'load',
    model: m.label,
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version },
    settings: {
      concurrency,
      maxTokens: int('max-tokens', 16),
      parallel: int('parallel', 4),
      batchWindowMs: int('batch-window-ms', 8),
      batchMax: arg('batch-max') ? int('batch-max', 4) : `server default (${arg('provider') === 'cuda' ? 16 : 4})`,
      workload: m.demo ? 'held-out demo-world questions (1-3 objects), answers scored by exact match' : DESCRIBE,
      note: 'one image per chat, all distinct; latency = request sent to full JSON answer; unbatched = one image per tower run, encoded once the chat holds a sequence',
    },
    results,
  };
  process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  if (results.some((r) => r.failures > 0)) process.exitCode = 1;
}

await main();
