/**
 * A complete tiny training world for the trainer tests: synthetic PNGs (sharp) with colour answers in a
 * LLaVA-format dataset, the tiny OpenAI-arch tower (synthCheckpoint + convertCheckpoint: 32 px, 16 patch
 * tokens, width 64), and a tiny Qwen2-arch LLM written by projector/train's save_hf_llama from a seeded
 * random init, with the byte-level BPE tokenizer of test/gguf/hf-fixture.ts (ChatML template, <image>
 * and <|im_end|> specials), converted to GGUF by our convertLlm.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';

import { convertLlm } from '../../src/gguf/convert-llm.js';
import { convertCheckpoint } from '../../src/vision/convert.js';
import { synthCheckpoint } from '../../src/vision/synth.js';
import { writeHfFixture } from '../gguf/hf-fixture.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const PYTHON = '/usr/bin/python3';

/** Why the Python side cannot run here, or undefined when /usr/bin/python3 has torch and numpy. */
export function pythonTorchMissing(): string | undefined {
  if (!fs.existsSync(PYTHON)) return `${PYTHON} is not installed`;
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `${PYTHON} cannot import torch and numpy`;
  return undefined;
}

/** Runs `python3 -m <module> ...args` from the repository root; throws with stderr on failure. */
export function py(module: string, args: string[], opts: { threads?: number } = {}): { stdout: string; stderr: string } {
  const r = spawnSync(PYTHON, ['-m', module, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: String(opts.threads ?? 1), PYTHONDONTWRITEBYTECODE: '1' },
    maxBuffer: 1 << 26,
  });
  if (r.error || r.status !== 0) throw new Error(`python3 -m ${module} ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

export const COLOURS: Record<string, [number, number, number]> = {
  red: [220, 30, 30],
  green: [30, 200, 40],
  blue: [30, 40, 220],
  white: [245, 245, 245],
  black: [10, 10, 10],
  yellow: [230, 220, 30],
};

export interface ImageWorld {
  dir: string;
  images: string;
  dataset: string;
  tower: string;
  samples: { id: string; image: string; conversations: { from: string; value: string }[] }[];
}

export interface TrainWorld extends ImageWorld {
  llmDir: string;
  gguf: string;
  special: Record<string, number>;
  vocabSize: number;
}

async function png(file: string, rgb: [number, number, number], variant: number): Promise<void> {
  const [r, g, b] = rgb;
  const mark = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255 - r, g: 255 - g, b: 255 - b } } }).png().toBuffer();
  await sharp({ create: { width: 40, height: 40, channels: 3, background: { r, g, b } } })
    .composite([{ input: mark, left: 4 + 10 * (variant % 3), top: 4 + 12 * Math.floor(variant / 3) }])
    .png()
    .toFile(file);
}

/** Two images per colour (different mark positions), one question each; and the tiny tower. */
export async function buildImageWorld(): Promise<ImageWorld> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm2clip-train-'));
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  const samples: ImageWorld['samples'] = [];
  let i = 0;
  for (const [name, rgb] of Object.entries(COLOURS)) {
    for (let v = 0; v < 2; v++) {
      const file = `${name}-${v}.png`;
      await png(path.join(images, file), rgb, v * 2 + (i % 2));
      samples.push({ id: `${name}-${v}`, image: file, conversations: [{ from: 'human', value: '<image>\nwhat colour is the picture?' }, { from: 'gpt', value: `it is ${name}.` }] });
      i++;
    }
  }
  const dataset = path.join(dir, 'data.json');
  fs.writeFileSync(dataset, JSON.stringify(samples, null, 1));
  const ck = await synthCheckpoint({ arch: 'openai', preset: 'tiny', outDir: path.join(dir, 'ckpt'), seed: 1 });
  const tower = path.join(dir, 'tower');
  await convertCheckpoint(ck.checkpoint, { outDir: tower, onWarning: () => undefined });
  return { dir, images, dataset, tower, samples };
}

/**
 * The image world plus a tiny Qwen2-arch LLM: tokenizer files from the GGUF tests' fixture (byte-level
 * BPE, ChatML template, <image> and <|im_end|> specials; its throwaway weights are replaced), weights
 * from projector/train's save_hf_llama (seeded random init, tied embeddings, random q/k/v biases),
 * converted to GGUF by our convertLlm.
 */
export async function buildTrainWorld(): Promise<TrainWorld> {
  const w = await buildImageWorld();
  const llmDir = path.join(w.dir, 'llm');
  const fx = writeHfFixture({ dir: llmDir, tokenizer: 'qwen2', arch: 'Qwen2ForCausalLM', seed: 3 });
  py('projector.train.tools', [
    'init-llm', '--out', llmDir, '--vocab-size', String(fx.vocabSize), '--arch', 'Qwen2ForCausalLM', '--hidden', '64', '--ffn', '128',
    '--layers', '2', '--heads', '4', '--kv-heads', '2', '--rope-theta', '10000', '--max-pos', '512', '--tied', '--fan-in', '--embed-std', '0.125',
    '--qkv-bias-std', '0.3', '--eos', String(fx.special['<|im_end|>']), '--seed', '5',
  ]);
  const gguf = path.join(w.dir, 'llm.gguf');
  await convertLlm({ dir: llmDir, out: gguf });
  return { ...w, llmDir, gguf, special: fx.special, vocabSize: fx.vocabSize };
}
