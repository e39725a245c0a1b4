/**
 * `llm2clip convert`: checkpoint (+ config) → tower directory (tower.onnx, tower.json, adapter.onnx).
 * Streams tensors one at a time into the ONNX external-data file, so peak memory stays near the largest
 * tensor rather than the whole model.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { openCheckpoint } from '../formats/checkpoint.js';
import { CheckpointError } from '../formats/tensor.js';
import { builtinByName } from './builtin.js';
import { ConfigError, readTowerConfig, type TowerConfig } from './config.js';
import { buildAdapterOnnx } from './graph-adapter.js';
import { buildTowerOnnx } from './graph-tower.js';
import { makeManifest, writeManifest, type TowerManifest } from './manifest.js';
import { detectArch, resolveTower } from './resolve.js';
import { OPENAI_MEAN, OPENAI_STD, type Arch } from './spec.js';
import { TrackedTensors } from './tracked.js';

export interface ConvertOptions {
  readonly outDir: string;
  /** Path of a config file, or the name of a released model (e.g. LLM2CLIP-EVA02-L-14-336). */
  readonly config?: string;
  readonly dtype?: 'fp32' | 'fp16';
  readonly resizeMode?: 'crop' | 'pad';
  readonly onProgress?: (stage: string, done: number, total: number) => void;
  /** Non-fatal notes (a nearby config file that was skipped). Default: stderr. */
  readonly onWarning?: (message: string) => void;
}

/**
 * A checkpoint path may be the file itself or a downloaded Hugging Face repository folder. In a folder the
 * official eva_clip `LLM2CLIP-*.pt` wins (it is the reference and the only file with the text adapter; the
 * EVA repos also ship a vision-only HF-port pytorch_model.bin), then model.safetensors, then pytorch_model.bin.
 */
export function locateCheckpoint(path: string): string {
  if (!existsSync(path)) throw new CheckpointError(`${path}: no such file or directory`);
  if (!statSync(path).isDirectory()) return path;
  const files = readdirSync(path);
  const official = files.filter((f) => /^LLM2CLIP-.*\.pt$/i.test(f));
  if (official.length === 1) return join(path, official[0]!);
  if (official.length > 1) throw new CheckpointError(`${path}: several official checkpoints (${official.join(', ')}); name the file`);
  for (const f of ['model.safetensors', 'pytorch_model.bin']) if (files.includes(f)) return join(path, f);
  if (files.includes('model.safetensors.index.json')) {
    throw new CheckpointError(`${path}: sharded safetensors checkpoints are not supported; the released LLM2CLIP towers are single files`);
  }
  const weights = files.filter((f) => ['.pt', '.pth', '.bin', '.safetensors'].includes(extname(f)));
  if (weights.length === 1) return join(path, weights[0]!);
  throw new CheckpointError(`${path}: directory holds ${weights.length === 0 ? 'no' : 'several'} checkpoint files (${weights.join(', ') || 'none of .safetensors/.pt/.pth/.bin'}); name the file`);
}

function builtinConfig(name: string): TowerConfig | undefined {
  const b = builtinByName(name);
  if (!b) return undefined;
  return {
    source: `built-in config ${b.name}`, arch: b.arch, imageSize: b.imageSize, patchSize: b.patchSize, width: b.width,
    layers: b.layers, heads: b.width / b.headWidth, embedDim: b.embedDim,
    ...(b.arch === 'eva02' ? { rope: true, ptHwSeqLen: 16, intpFreq: true, subln: true, naiveSwiglu: true } : { activation: 'quick_gelu' as const }),
  };
}

/** An explicit --config (a file, or a released model's name) is authoritative. */
export function explicitConfig(config: string): TowerConfig {
  if (existsSync(config)) return readTowerConfig(config);
  const b = builtinConfig(config);
  if (!b) throw new ConfigError(`--config ${config}: no such file and not a released model name`);
  return b;
}

/**
 * A config file found beside the checkpoint is only a candidate: HF repos of the EVA02 towers ship a
 * config.json for their remote-code port, which is not a tower config. Candidates that do not parse or
 * describe another architecture are skipped (with a warning) and the built-in configs apply.
 */
export function nearbyConfig(checkpoint: string, arch: Arch, warn: (msg: string) => void): TowerConfig | undefined {
  const dir = dirname(checkpoint);
  const stem = basename(checkpoint, extname(checkpoint));
  for (const c of [join(dir, `${stem}.json`), join(dir, 'config.json')]) {
    if (!existsSync(c)) continue;
    try {
      const cfg = readTowerConfig(c);
      if (cfg.arch === arch) return cfg;
      warn(`ignoring ${c}: it describes a${cfg.arch === 'openai' ? 'n OpenAI-CLIP' : 'n EVA02'} tower, the checkpoint holds ${arch}`);
    } catch (e) {
      warn(`ignoring ${c}: ${(e as Error).message}`);
    }
  }
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
  const explicit = opts.config !== undefined ? explicitConfig(opts.config) : undefined;
  const reader = openCheckpoint(file);
  try {
    const warn = opts.onWarning ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
    const cfg = explicit ?? nearbyConfig(file, detectArch(reader), warn);
    const tower = resolveTower(reader, cfg);
    const towerWeights = new TrackedTensors(tower.weights);
    const adapterWeights = tower.adapter ? new TrackedTensors(tower.adapter.weights) : undefined;
    const dtype = opts.dtype ?? 'fp32';
    mkdirSync(opts.outDir, { recursive: true });
    const progress = opts.onProgress;
    await buildTowerOnnx(tower.spec, towerWeights, opts.outDir, {
      dtype,
      onProgress: progress ? (done, total) => progress('tower', done, total) : undefined,
    });
    towerWeights.assertAllRead('tower');
    if (tower.adapter && adapterWeights) {
      await buildAdapterOnnx(tower.adapter.spec, adapterWeights, opts.outDir, {
        dtype,
        onProgress: progress ? (done, total) => progress('adapter', done, total) : undefined,
      });
      adapterWeights.assertAllRead('adapter');
    }
    const sha256 = await sha256File(file, progress ? (d, t) => progress('sha256', d, t) : undefined);
    const manifest = makeManifest({
      spec: tower.spec,
      dtype,
      preprocess: { imageSize: tower.spec.imageSize, mean: OPENAI_MEAN, std: OPENAI_STD, resizeMode: opts.resizeMode ?? 'crop' },
      source: { file: basename(file), sha256, bytes: statSync(file).size, ...(tower.builtin ? { builtin: tower.builtin } : {}) },
      adapter: tower.adapter?.spec,
    });
    writeManifest(opts.outDir, manifest);
    return manifest;
  } finally {
    reader.close();
  }
}
