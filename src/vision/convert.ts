/**
 * `llm2clip convert`: checkpoint (+ config) → tower directory (tower.onnx, tower.json, adapter.onnx).
 * Streams tensors one at a time into the ONNX external-data file, so peak memory stays near the largest
 * tensor rather than the whole model.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve as resolvePath } from 'node:path';
import { openCheckpoint } from '../formats/checkpoint.js';
import { CheckpointError } from '../formats/tensor.js';
import { builtinByName } from './builtin.js';
import { ConfigError, readTowerConfig, type TowerConfig } from './config.js';
import { buildAdapterOnnx } from './graph-adapter.js';
import { buildTowerOnnx } from './graph-tower.js';
import { makeManifest, writeManifest, type TowerManifest } from './manifest.js';
import { resolveTower } from './resolve.js';
import { OPENAI_MEAN, OPENAI_STD } from './spec.js';

export interface ConvertOptions {
  readonly outDir: string;
  /** Path of a config file, or the name of a released model (e.g. LLM2CLIP-EVA02-L-14-336). */
  readonly config?: string;
  readonly dtype?: 'fp32' | 'fp16';
  readonly resizeMode?: 'crop' | 'pad';
  readonly onProgress?: (stage: string, done: number, total: number) => void;
}

const CHECKPOINT_FILES = ['model.safetensors', 'pytorch_model.bin'];

/** A checkpoint path may be the file itself or a Hugging Face-style directory. */
export function locateCheckpoint(path: string): string {
  if (!existsSync(path)) throw new CheckpointError(`${path}: no such file or directory`);
  if (!statSync(path).isDirectory()) return path;
  for (const f of CHECKPOINT_FILES) if (existsSync(join(path, f))) return join(path, f);
  if (existsSync(join(path, 'model.safetensors.index.json'))) {
    throw new CheckpointError(`${path}: sharded safetensors checkpoints are not supported; the released LLM2CLIP towers are single files`);
  }
  const weights = readdirSync(path).filter((f) => ['.pt', '.pth', '.bin', '.safetensors'].includes(extname(f)));
  if (weights.length === 1) return join(path, weights[0]!);
  throw new CheckpointError(`${path}: directory holds ${weights.length === 0 ? 'no' : 'several'} checkpoint files (${weights.join(', ') || 'none of .safetensors/.pt/.pth/.bin'}); name the file`);
}

/** --config, else a config file beside the checkpoint, else none (resolve falls back to built-in configs by shape). */
export function locateConfig(checkpoint: string, config?: string): TowerConfig | undefined {
  if (config !== undefined) {
    const b = builtinByName(config);
    if (b && !existsSync(config)) {
      return {
        source: `built-in config ${b.name}`, arch: b.arch, imageSize: b.imageSize, patchSize: b.patchSize, width: b.width,
        layers: b.layers, heads: b.width / b.headWidth, embedDim: b.embedDim,
        ...(b.arch === 'eva02' ? { rope: true, ptHwSeqLen: 16, intpFreq: true, subln: true, naiveSwiglu: true } : { activation: 'quick_gelu' as const }),
      };
    }
    if (!existsSync(config)) throw new ConfigError(`--config ${config}: no such file and not a released model name`);
    return readTowerConfig(config);
  }
  const dir = dirname(checkpoint);
  const stem = basename(checkpoint, extname(checkpoint));
  for (const c of [join(dir, `${stem}.json`), join(dir, 'config.json')]) if (existsSync(c)) return readTowerConfig(c);
  return undefined;
}

export async function sha256File(path: string, onProgress?: (done: number, total: number) => void): Promise<string> {
  const total = statSync(path).size;
  const h = createHash('sha256');
  let done = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 8 << 20 })) {
    h.update(chunk as Buffer);
    done += (chunk as Buffer).length;
    onProgress?.(done, total);
  }
  return h.digest('hex');
}

export async function convertCheckpoint(path: string, opts: ConvertOptions): Promise<TowerManifest> {
  const file = locateCheckpoint(path);
  const cfg = locateConfig(file, opts.config);
  const reader = openCheckpoint(file);
  try {
    const tower = resolveTower(reader, cfg);
    const dtype = opts.dtype ?? 'fp32';
    mkdirSync(opts.outDir, { recursive: true });
    const progress = opts.onProgress;
    await buildTowerOnnx(tower.spec, tower.weights, opts.outDir, {
      dtype,
      onProgress: progress ? (done, total) => progress('tower', done, total) : undefined,
    });
    if (tower.adapter) {
      await buildAdapterOnnx(tower.adapter.spec, tower.adapter.weights, opts.outDir, {
        dtype,
        onProgress: progress ? (done, total) => progress('adapter', done, total) : undefined,
      });
    }
    const sha256 = await sha256File(file, progress ? (d, t) => progress('sha256', d, t) : undefined);
    const manifest = makeManifest({
      spec: tower.spec,
      dtype,
      preprocess: { imageSize: tower.spec.imageSize, mean: OPENAI_MEAN, std: OPENAI_STD, resizeMode: opts.resizeMode ?? 'crop' },
      source: { file: resolvePath(file), sha256, bytes: statSync(file).size, ...(tower.builtin ? { builtin: tower.builtin } : {}) },
      adapter: tower.adapter?.spec,
    });
    writeManifest(opts.outDir, manifest);
    return manifest;
  } finally {
    reader.close();
  }
}
