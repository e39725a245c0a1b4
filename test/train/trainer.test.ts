/**
 * The projector trainer (python3 -m projector.train) end to end on CPU, on shards from the TS features
 * command: a tiny world (12 coloured images, "what colour is the picture?" → "it is red."), the tiny
 * tower, and a tiny Qwen2-arch LLM written by llama.py's save_hf_llama and converted by our convertLlm.
 *
 *  1. Stage 2 (projector + LLM) from the random LLM, then stage 1 (fresh projector, other seed, LLM frozen,
 *     LLaVA's lr 1e-3) on the fine-tuned LLM: each lowers the loss (first step → last step) ≥ 10×.
 *     (Stage 1 against a *random* frozen LLM cannot do much — a projector only steers a model that has
 *     learnt something — hence the stage-2 LLM, as in the staged demo recipe.)
 *  2. Resume: stopping after step 30 of 60 and resuming gives bit-identical weights and losses.
 *  3. The trained projector loads in the TS Projector (onnxruntime) and matches PyTorch (≤ 1e-5 rel. L2).
 *  4. Train/serve consistency: llama.py's logits equal node-llama-cpp's on the converted GGUF (F32, F32 KV
 *     cache, no flash attention; ≤ 1e-4 abs, measured ~1e-5) for a token sequence, and for a whole training row with its
 *     projected image spliced in (PyTorch) vs injected (node-llama-cpp).
 *  5. The trained chain answers through VisionLanguageModel (tower ONNX → projector → injection → generation).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaModel, type Token } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Projector } from '../../projector/runtime.js';
import { readProjectorManifest } from '../../projector/spec.js';
import { VisionLanguageModel } from '../../src/chat/vlm.js';
import { cmdFeaturesDataset } from '../../src/cli/train-commands.js';
import { readNpy, writeNpy } from '../../src/formats/npy.js';
import { convertLlm } from '../../src/gguf/convert-llm.js';
import { injectEmbeddings, readLastLogits } from '../../src/llm/index.js';
import type { ShardRow } from '../../src/train/shards.js';
import { buildTrainWorld, py, pythonTorchMissing, type TrainWorld } from './fixture.js';

const missing = pythonTorchMissing();
const report: string[] = [];

interface LogLine {
  step: number;
  loss: number;
  lr: number;
  samples_per_s: number;
}
const readLog = (dir: string): LogLine[] =>
  fs.readFileSync(path.join(dir, 'train_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LogLine);

function centredLogSoftmax(x: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) m = Math.max(m, x[i]!);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i]! - m);
  const out = Float64Array.from(x, (v) => v - m - Math.log(s));
  const mean = out.reduce((a, b) => a + b, 0) / out.length;
  return out.map((v) => v - mean);
}
function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

describe.skipIf(missing !== undefined)(`projector trainer${missing ? ` — SKIPPED: ${missing}` : ''}`, () => {
  let w: TrainWorld;
  let shards: string;
  let llama: Llama;
  const run = (out: string, args: string[]) =>
    py('projector.train', ['--shards', shards, '--out', out, '--batch-size', '4', '--threads', '1', '--log-every', '1', '--quiet', ...args]);
  const stage2 = () => path.join(w.dir, 'stage2');
  const stage1 = () => path.join(w.dir, 'stage1');
  const stage1Args = () => ['--llm', path.join(stage2(), 'llm'), '--seed', '1', '--max-steps', '60', '--save-every', '30'];
  let gguf2: string;

  beforeAll(async () => {
    w = await buildTrainWorld();
    shards = path.join(w.dir, 'shards');
    const err = process.stderr.write;
    process.stderr.write = () => true; // the progress bar
    try {
      await cmdFeaturesDataset(['--dataset', w.dataset, '--images', w.images, '--tower', w.tower, '--llm', w.gguf, '--template', 'chatml', '--out', shards, '--shard-size', '5']);
    } finally {
      process.stderr.write = err;
    }
    llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: 1 });
  });
  afterAll(() => {
    if (w) fs.rmSync(w.dir, { recursive: true, force: true });
    console.log(`trainer test:\n  ${report.join('\n  ')}`);
  });

  it('stage 2 (projector + LLM) from a random LLM lowers the loss ≥ 10× in 60 steps', () => {
    const t0 = performance.now();
    run(stage2(), ['--llm', w.llmDir, '--stage', '2', '--lr', '1e-2', '--max-steps', '60']);
    const log = readLog(stage2());
    expect(log).toHaveLength(60);
    const factor = log[0]!.loss / log[59]!.loss;
    report.push(`stage 2: loss ${log[0]!.loss.toFixed(3)} → ${log[59]!.loss.toFixed(4)} (${factor.toFixed(0)}×), ${(performance.now() - t0).toFixed(0)} ms incl. Python start, ` +
      `${log[59]!.samples_per_s.toFixed(0)} samples/s`);
    expect(factor).toBeGreaterThanOrEqual(10);
    expect(fs.existsSync(path.join(stage2(), 'llm', 'model.safetensors'))).toBe(true);
    expect(fs.existsSync(path.join(stage2(), 'llm', 'tokenizer.json'))).toBe(true);
  });

  it('stage 1 (fresh projector, LLM frozen, lr 1e-3) lowers the loss ≥ 10× in 60 steps', () => {
    run(stage1(), stage1Args());
    const log = readLog(stage1());
    const factor = log[0]!.loss / log[59]!.loss;
    const sps = log.slice(5).reduce((a, l) => a + l.samples_per_s, 0) / (log.length - 5);
    report.push(`stage 1: loss ${log[0]!.loss.toFixed(3)} → ${log[59]!.loss.toFixed(4)} (${factor.toFixed(0)}×), ~${sps.toFixed(0)} samples/s (1 thread)`);
    expect(factor).toBeGreaterThanOrEqual(10);
    const m = readProjectorManifest(stage1());
    expect(m).toMatchObject({ type: 'mlp2x_gelu', inputDim: 64, hiddenDim: 64, outputDim: 64, tokensPerImage: 16, resizeMode: 'crop' });
    expect(m.tower).toMatchObject({ arch: 'openai', width: 64, patchTokens: 16, tap: 1 });
    expect(m.tower!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m.llm).toEqual({ nEmbd: 64, name: 'llm' });
  });

  it('stopping at step 30 and resuming reproduces the uninterrupted run bit for bit', () => {
    const out = path.join(w.dir, 'stage1-resumed');
    run(out, [...stage1Args(), '--stop-after', '30']);
    expect(fs.existsSync(path.join(out, 'projector.safetensors'))).toBe(false);
    expect(fs.readdirSync(path.join(out, 'checkpoints'))).toEqual(['step-0000030']);
    run(out, [...stage1Args(), '--resume']);
    const a = fs.readFileSync(path.join(stage1(), 'projector.safetensors'));
    const b = fs.readFileSync(path.join(out, 'projector.safetensors'));
    report.push(`resume: final projector.safetensors ${a.equals(b) ? 'byte-identical' : 'DIFFERENT'} (${a.length} bytes); losses of steps 31–60 identical`);
    expect(b.equals(a)).toBe(true);
    expect(readLog(out).map((l) => l.loss)).toEqual(readLog(stage1()).map((l) => l.loss));
    // a changed setting is refused rather than silently mixed in
    expect(() => run(out, [...stage1Args(), '--lr', '2e-3', '--resume'])).toThrow(/different settings: lr/);
  });

  it('stage 2 resumes bit for bit too (LLM weights and both AdamW groups in the checkpoint)', () => {
    const args = ['--llm', w.llmDir, '--stage', '2', '--lr', '1e-2', '--llm-lr', '5e-3', '--max-steps', '12', '--save-every', '6', '--seed', '3'];
    const a = path.join(w.dir, 's2-full');
    const b = path.join(w.dir, 's2-resumed');
    run(a, args);
    run(b, [...args, '--stop-after', '6']);
    run(b, [...args, '--resume']);
    for (const f of ['projector.safetensors', 'llm/model.safetensors']) {
      expect(fs.readFileSync(path.join(b, f)).equals(fs.readFileSync(path.join(a, f))), f).toBe(true);
    }
    report.push('stage-2 resume: projector and LLM byte-identical after 6 + 6 steps');
  });

  it('trains from float16 feature shards too (same first-step loss within 1e-3 relative)', async () => {
    const f16 = path.join(w.dir, 'shards-f16');
    const err = process.stderr.write;
    process.stderr.write = () => true;
    try {
      await cmdFeaturesDataset(['--dataset', w.dataset, '--images', w.images, '--tower', w.tower, '--llm', w.gguf, '--template', 'chatml', '--out', f16, '--shard-size', '5', '--feature-dtype', 'f16']);
    } finally {
      process.stderr.write = err;
    }
    const out = path.join(w.dir, 'stage1-f16');
    py('projector.train', ['--shards', f16, '--out', out, '--batch-size', '4', '--threads', '1', '--log-every', '1', '--quiet', ...stage1Args().slice(0, 4), '--max-steps', '3']);
    const a = readLog(out)[0]!.loss;
    const b = readLog(stage1())[0]!.loss;
    expect(Math.abs(a - b) / b).toBeLessThan(1e-3);
  });

  it('the trained projector runs in the TS runtime with PyTorch\'s outputs (≤ 1e-5 relative)', async () => {
    const feats = readNpy(path.join(shards, 'shard-00000.npy'));
    const x = feats.data.subarray(0, 3 * 16 * 64);
    const inFile = path.join(w.dir, 'feats.npy');
    const outFile = path.join(w.dir, 'proj.npy');
    writeNpy(inFile, [3 * 16, 64], x);
    py('projector.train.tools', ['--no-fast-cpu', 'project', '--projector', stage1(), '--features', inFile, '--out', outFile]);
    const want = readNpy(outFile).data;
    const p = await Projector.load(stage1());
    const got = await p.project(x, 3 * 16);
    await p.dispose();
    let num = 0;
    let den = 0;
    for (let i = 0; i < got.length; i++) {
      num += (got[i]! - want[i]!) ** 2;
      den += want[i]! ** 2;
    }
    const rel = Math.sqrt(num / den);
    report.push(`TS Projector vs PyTorch: relative L2 ${rel.toExponential(2)}`);
    expect(rel).toBeLessThanOrEqual(1e-5);
  });

  async function parityContext(model: LlamaModel): Promise<LlamaContext> {
    return model.createContext({
      contextSize: 256, batchSize: 256, sequences: 1, threads: 1, flashAttention: false,
      experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
    });
  }

  it('llama.py logits equal node-llama-cpp logits on the converted GGUF (≤ 1e-4), before and after stage 2', async () => {
    gguf2 = path.join(w.dir, 'stage2.gguf');
    await convertLlm({ dir: path.join(stage2(), 'llm'), out: gguf2 });
    for (const [label, hf, file] of [['random init', w.llmDir, w.gguf], ['stage-2 fine-tuned', path.join(stage2(), 'llm'), gguf2]] as const) {
      const model = await llama.loadModel({ modelPath: file });
      const ids = model.tokenize('<|im_start|>user\nwhat colour is the picture?<|im_end|>\n<|im_start|>assistant\nit is red.<|im_end|>', true) as number[];
      expect(ids.length).toBeGreaterThan(15);
      const outFile = path.join(w.dir, 'logits.npy');
      py('projector.train.tools', ['logits', '--llm', hf, '--ids', ids.join(','), '--out', outFile]);
      const ref = readNpy(outFile);
      const V = ref.shape[1]!;
      const ctx = await parityContext(model);
      const seq = ctx.getSequence();
      const res = await seq.controlledEvaluate(ids.map((t) => [t as Token, { generateNext: { probabilities: true } }] as const));
      let worst = 0;
      res.forEach((r, i) => {
        const probs = r!.next.probabilities!;
        const lp = new Float64Array(V);
        for (const [tok, p] of probs) lp[tok] = Math.log(p);
        const mean = lp.reduce((a, b) => a + b, 0) / V;
        worst = Math.max(worst, maxAbs(lp.map((v) => v - mean), centredLogSoftmax(ref.data.subarray(i * V, (i + 1) * V))));
      });
      const last = (await readLastLogits(seq))!;
      const rawLast = maxAbs(last, ref.data.subarray((ids.length - 1) * V));
      await ctx.dispose();
      await model.dispose();
      report.push(`llama.py vs node-llama-cpp (${label}, ${ids.length} tokens): max |Δ centred log-prob| ${worst.toExponential(2)}, last-position raw logits ${rawLast.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-4);
      expect(rawLast).toBeLessThanOrEqual(1e-4);
    }
  });

  /** PyTorch logits of shard row `index` (images spliced in) vs node-llama-cpp: text evaluated, each image injected. */
  async function rowParity(dir: string, index: number): Promise<{ row: ShardRow; worst: number; atImages: number }> {
    const shard = JSON.parse(fs.readFileSync(path.join(dir, 'shard-00000.json'), 'utf8')) as { rows: ShardRow[] };
    const row = shard.rows[index]!;
    const outFile = path.join(w.dir, 'row-logits.npy');
    py('projector.train.tools', ['row-logits', '--shards', dir, '--llm', path.join(stage2(), 'llm'), '--projector', stage1(), '--row', String(index), '--out', outFile]);
    const ref = readNpy(outFile);
    const V = ref.shape[1]!;
    const npy = readNpy(path.join(dir, 'shard-00000.npy')).data;
    const p = await Projector.load(stage1());
    const projected = await Promise.all(row.images.map((i) => p.project(npy.subarray(i * 1024, (i + 1) * 1024), 16)));
    await p.dispose();
    const model = await llama.loadModel({ modelPath: gguf2 });
    const ctx = await parityContext(model);
    const seq = ctx.getSequence();
    const compare = (i: number, lp: Float64Array) => maxAbs(lp, centredLogSoftmax(ref.data.subarray(i * V, (i + 1) * V)));
    const evalText = async (tokens: number[], from: number): Promise<number> => {
      if (tokens.length === 0) return 0;
      const res = await seq.controlledEvaluate(tokens.map((t) => [t as Token, { generateNext: { probabilities: true } }] as const));
      let worst = 0;
      res.forEach((r, k) => {
        const lp = new Float64Array(V);
        for (const [tok, pr] of r!.next.probabilities!) lp[tok] = Math.log(pr);
        const mean = lp.reduce((a, b) => a + b, 0) / V;
        worst = Math.max(worst, compare(from + k, lp.map((v) => v - mean)));
      });
      return worst;
    };
    const order = row.imageStarts.map((s, k) => [s, k] as const).sort((a, b) => a[0] - b[0]);
    let worst = 0;
    let atImages = 0;
    let at = 0;
    for (const [s, k] of order) {
      worst = Math.max(worst, await evalText(row.tokens.slice(at, s), at));
      const inj = await injectEmbeddings(seq, projected[k]!, { placeholderToken: row.tokens[s] as Token, wantLogits: true });
      atImages = Math.max(atImages, maxAbs(inj.logits!, ref.data.subarray((s + 15) * V, (s + 16) * V)));
      at = s + 16;
    }
    worst = Math.max(worst, await evalText(row.tokens.slice(at), at));
    await ctx.dispose();
    await model.dispose();
    return { row, worst, atImages };
  }

  it('a training row: PyTorch with the image spliced in = node-llama-cpp with the image injected (≤ 1e-4)', async () => {
    const { row, worst, atImages } = await rowParity(shards, 0);
    report.push(`training row ${row.id} (${row.tokens.length} positions, image at ${row.imageStarts[0]}): max |Δ centred log-prob| ${worst.toExponential(2)}, raw logits after the image ${atImages.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(1e-4);
    expect(atImages).toBeLessThanOrEqual(1e-4);
  });

  it('a two-image, two-answer row (LLaVA-OneVision image list): PyTorch = node-llama-cpp (≤ 1e-4), and it trains', async () => {
    const two = w.samples.slice(0, 4).map((s, i) => {
      const other = w.samples[(i + 5) % w.samples.length]!;
      return { id: `two-${i}`, image: [other.image, s.image], conversations: [{ from: 'human', value: `<image>\n<image>\nwhat colour is the second picture?` }, { from: 'gpt', value: s.conversations[1]!.value }, { from: 'human', value: 'and the first?' }, { from: 'gpt', value: other.conversations[1]!.value }] };
    });
    const dataset = path.join(w.dir, 'two.json');
    fs.writeFileSync(dataset, JSON.stringify(two));
    const dir = path.join(w.dir, 'shards-two');
    const err = process.stderr.write;
    process.stderr.write = () => true;
    try {
      await cmdFeaturesDataset(['--dataset', dataset, '--images', w.images, '--tower', w.tower, '--llm', w.gguf, '--template', 'chatml', '--out', dir, '--shard-size', '8']);
    } finally {
      process.stderr.write = err;
    }
    const { row, worst, atImages } = await rowParity(dir, 1);
    expect(row.images).toHaveLength(2);
    expect(row.images[0]).not.toBe(row.images[1]);
    expect(row.labels).toHaveLength(2);
    report.push(`two-image row ${row.id} (${row.tokens.length} positions, images at ${row.imageStarts.join(', ')}): max |Δ centred log-prob| ${worst.toExponential(2)}, raw logits after each image ≤ ${atImages.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(1e-4);
    expect(atImages).toBeLessThanOrEqual(1e-4);
    // and it trains: a few stage-1 steps on two-image rows run and lower the loss
    const out = path.join(w.dir, 'stage1-two');
    py('projector.train', ['--shards', dir, '--out', out, '--batch-size', '4', '--threads', '1', '--log-every', '1', '--quiet', '--llm', path.join(stage2(), 'llm'), '--init-projector', stage1(), '--max-steps', '20', '--lr', '1e-3', '--seed', '2']);
    const log = readLog(out);
    expect(log.at(-1)!.loss).toBeLessThan(log[0]!.loss);
  });

  it('the trained chain answers in the real runtime (tower ONNX → projector → injection → generation)', async () => {
    const vlm = await VisionLanguageModel.load({ tower: w.tower, projector: stage1(), llm: gguf2, template: 'chatml', llama, contextSize: 128 });
    let right = 0;
    const wrong: string[] = [];
    try {
      for (const s of w.samples) {
        const url = `data:image/png;base64,${fs.readFileSync(path.join(w.images, s.image)).toString('base64')}`;
        const r = await vlm.chat([{ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: 'what colour is the picture?' }] }], { temperature: 0, maxTokens: 12 }).result;
        const want = s.conversations[1]!.value;
        if (r.text === want && r.finishReason === 'stop') right++;
        else wrong.push(`${s.id}: ${JSON.stringify(r.text)}`);
      }
    } finally {
      await vlm.dispose();
    }
    report.push(`runtime answers on the training images: ${right}/${w.samples.length}${wrong.length ? ` (wrong: ${wrong.join('; ')})` : ''}`);
    expect(right).toBeGreaterThanOrEqual(w.samples.length - 1);
  });
});
