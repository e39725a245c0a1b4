/**
 * `npm run bench:vision`: random-weight L-14-336 towers of both architectures in onnxruntime-node (CPU).
 * Prints one JSON document: ms/image and images/s per batch size, peak RSS of each stage (each stage runs
 * in its own process so its peak is its own), this machine's measured fp32 MatMul throughput in the same
 * ORT build, and the tower's FLOP count, giving the fraction of MatMul throughput the tower reaches.
 *
 * Flags: --archs openai,eva02  --batches 1,4  --dtype fp32|fp16  --work DIR (default models/cache/bench)
 *        --reuse (keep towers converted by an earlier run; by default every run re-synthesises and re-converts,
 *        so the numbers always belong to the current graph builder)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { OnnxGraph } from '../src/onnx/graph.js';
import { convertCheckpoint } from '../src/vision/convert.js';
import { readManifest } from '../src/vision/manifest.js';
import { synthCheckpoint } from '../src/vision/synth.js';
import { VisionTower } from '../src/vision/tower.js';
import type { Arch } from '../src/vision/spec.js';

const self = fileURLToPath(import.meta.url);

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function peakRssMiB(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

/**
 * The FLOP floor per image (multiply-add = 2; matmuls and attention only, norms/activations are noise):
 * every block up to and including the tap needs all tokens; blocks after the tap only feed image_embeds,
 * which needs the CLS row, so the last block needs keys/values of all tokens but everything else for one row.
 */
export function towerFlops(m: { arch: Arch; imageSize: number; patchSize: number; width: number; layers: number; mlpWidth: number; embedDim: number; tapLayer: number }): number {
  const G = Math.floor(m.imageSize / m.patchSize);
  const T = G * G + 1;
  const W = m.width;
  const mlpMats = m.arch === 'eva02' ? 3 : 2;
  const block = (rows: number) => 2 * rows * W * 2 * W /* q, out */ + 2 * 2 * rows * T * W /* scores, weighted sum */ + 2 * rows * W * m.mlpWidth * mlpMats;
  const kv = 2 * T * W * 2 * W;
  const patch = 2 * G * G * W * 3 * m.patchSize * m.patchSize;
  let total = patch + 2 * W * m.embedDim;
  for (let l = 0; l < m.layers; l++) total += kv + block(l <= m.tapLayer || l < m.layers - 1 ? T : 1);
  return total;
}

async function matmulWorker(dir: string): Promise<void> {
  const n = 2048;
  mkdirSync(dir, { recursive: true });
  const g = new OnnxGraph({ onnxPath: join(dir, 'matmul.onnx') });
  const a = g.input('a', [n, n]);
  const w = new Float32Array(n * n).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  g.output(g.matMul(a, g.weight('b', w, [n, n])), 'c', [n, n]);
  await g.finish();
  const s = await ort.InferenceSession.create(join(dir, 'matmul.onnx'), { graphOptimizationLevel: 'all', executionMode: 'sequential', interOpNumThreads: 1 });
  const x = new ort.Tensor('float32', new Float32Array(n * n).fill(0.25), [n, n]);
  const times: number[] = [];
  for (let i = 0; i < 13; i++) {
    const t0 = performance.now();
    await s.run({ a: x });
    if (i >= 3) times.push(performance.now() - t0);
  }
  const ms = median(times);
  process.stdout.write(JSON.stringify({ n, ms: +ms.toFixed(2), gflops: +((2 * n ** 3) / ms / 1e6).toFixed(1) }));
}

async function convertWorker(arch: Arch, dir: string, dtype: 'fp32' | 'fp16'): Promise<void> {
  const src = join(dir, 'checkpoint');
  const ck = await synthCheckpoint({ arch, preset: 'l-14-336', outDir: src, seed: 1 });
  const t0 = performance.now();
  const m = await convertCheckpoint(ck.checkpoint, { outDir: join(dir, `tower-${dtype}`), dtype });
  process.stdout.write(JSON.stringify({ convertSeconds: +((performance.now() - t0) / 1000).toFixed(1), checkpointBytes: m.source.bytes, peakRssMiB: peakRssMiB() }));
}

async function runWorker(towerDir: string, batches: number[]): Promise<void> {
  const t0 = performance.now();
  const tower = await VisionTower.load(towerDir);
  const loadSeconds = (performance.now() - t0) / 1000;
  const S = tower.manifest.imageSize;
  const results = [];
  for (const b of batches) {
    const px = new Float32Array(b * 3 * S * S).map((_, i) => Math.sin(i * 0.001));
    const warm = b === 1 ? 3 : 1;
    const reps = b === 1 ? 5 : 3;
    const times: number[] = [];
    for (let i = 0; i < warm + reps; i++) {
      const t = performance.now();
      await tower.encodePixels(px, b, { batch: b });
      if (i >= warm) times.push(performance.now() - t);
    }
    const ms = median(times);
    results.push({ batch: b, msPerImage: +(ms / b).toFixed(1), imagesPerSecond: +((1000 * b) / ms).toFixed(3), runs: reps });
  }
  await tower.dispose();
  process.stdout.write(JSON.stringify({ loadSeconds: +loadSeconds.toFixed(1), results, peakRssMiB: peakRssMiB() }));
}

function child(args: string[]): any {
  const out = execFileSync(process.execPath, [self, ...args], { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
  return JSON.parse(out.toString());
}

async function main(): Promise<void> {
  const mode = arg('worker', '');
  const work = arg('work', join('models', 'cache', 'bench'));
  const dtype = arg('dtype', 'fp32') as 'fp32' | 'fp16';
  if (mode === 'matmul') return matmulWorker(join(work, 'matmul'));
  if (mode === 'convert') return convertWorker(arg('arch', 'openai') as Arch, arg('dir', ''), dtype);
  if (mode === 'run') return runWorker(arg('dir', ''), arg('batches', '1,4').split(',').map(Number));

  const archs = arg('archs', 'openai,eva02').split(',') as Arch[];
  const batches = arg('batches', '1,4');
  const matmul = child(['--worker', 'matmul', '--work', work]);
  const towers = [];
  for (const arch of archs) {
    const dir = join(work, `${arch}-l-14-336`);
    const towerDir = join(dir, `tower-${dtype}`);
    let convert: unknown = 'reused';
    if (!process.argv.includes('--reuse') || !existsSync(join(towerDir, 'tower.json'))) {
      rmSync(dir, { recursive: true, force: true });
      convert = child(['--worker', 'convert', '--arch', arch, '--dir', dir, '--dtype', dtype]);
    }
    const m = readManifest(towerDir);
    const flops = towerFlops(m);
    const run = child(['--worker', 'run', '--dir', towerDir, '--batches', batches]);
    const results = run.results.map((r: { msPerImage: number }) => {
      const gflops = flops / r.msPerImage / 1e6;
      return { ...r, effectiveGflops: +gflops.toFixed(1), fractionOfMatmul: +(gflops / matmul.gflops).toFixed(3) };
    });
    towers.push({ arch, preset: 'l-14-336', dtype, gflopPerImage: +(flops / 1e9).toFixed(1), convert, loadSeconds: run.loadSeconds, peakRssMiB: run.peakRssMiB, results });
  }
  const report = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, onnxruntime: ort.env.versions.common },
    matmulFp32: matmul,
    towers,
  };
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
}

await main();
