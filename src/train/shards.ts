/**
 * Training shards for the projector trainer (projector/train): every sample of a LLaVA-format dataset
 * rendered to token ids with the chat pipeline's own code (render.ts) and its image run through the
 * tower once.
 *
 * OUT/manifest.json            what the shards were made from (tower, LLM, template, dataset hashes)
 * OUT/shard-00000.npy          float32 [images, tokensPerImage, width]: tower patch features
 * OUT/shard-00000.json         {rows: [{id, images, tokens, imageStarts, labels}]}; `images` index the
 *                              shard's .npy, one per image of the sample in order, and imageStarts[k]
 *                              is where image k's rows begin (samples sharing an image file share its
 *                              features). Version 1 rows had one `image` and `imageStart`.
 *
 * Each shard's .npy and then its .json are written to temporary names and renamed, so a shard whose
 * .json exists is complete; a rerun with the same inputs skips those (resume). All samples are
 * validated and tokenized before the first image is encoded, so input errors surface at once.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from 'node-llama-cpp';

import { choosePlaceholder } from '../chat/placeholder.js';
import type { TemplateChoice } from '../chat/prompt.js';
import { f32ArrayToF16 } from '../formats/half.js';
import { npyHeader } from '../formats/npy.js';
import { ImageError } from '../image/errors.js';
import { sha256File } from '../vision/convert.js';
import { VisionTower } from '../vision/tower.js';
import { DatasetError, readLlavaDataset, sampleImages, sampleToChat } from './llava.js';
import { renderTrainingRow, type TrainingRow } from './render.js';

export const DEFAULT_SHARD_SIZE = 128;
export const SHARD_MANIFEST = 'manifest.json';
export const shardName = (i: number): string => `shard-${String(i).padStart(5, '0')}`;

export interface ShardRow extends TrainingRow {
  readonly id: string;
  /** indices into the shard's feature array, one per image of the sample */
  readonly images: number[];
}

export const SHARD_VERSION = 2;

export interface ShardManifest {
  format: 'llm2clip-train-shards';
  version: typeof SHARD_VERSION;
  dataset: { file: string; sha256: string; samples: number; skipped: { id: string; reason: string }[] };
  images: string;
  tower: {
    dir: string;
    arch: 'openai' | 'eva02';
    width: number;
    patchTokens: number;
    tap: number;
    sha256: string;
    dtype: 'fp32' | 'fp16';
    imageSize: number;
    resizeMode: 'crop' | 'pad';
  };
  llm: { file: string; sha256: string; name: string; nEmbd: number; nVocab: number };
  template: TemplateChoice;
  placeholder: number;
  tokensPerImage: number;
  /** storage of the .npy features: f32 (exact) or f16 (half the disk; features rounded to float16) */
  featureDtype: 'f32' | 'f16';
  shardSize: number;
  shards: { name: string; rows: number; images: number; tokens: number; labelTokens: number }[];
  complete: boolean;
}

export interface BuildShardsOptions {
  dataset: string;
  images: string;
  tower: string;
  llm: string;
  out: string;
  template?: TemplateChoice;
  shardSize?: number;
  /** images per tower run */
  batch?: number;
  resizeMode?: 'crop' | 'pad';
  /** feature storage, default f32 */
  featureDtype?: 'f32' | 'f16';
  /** skip samples that fail validation (missing image, no <image>, bad conversation) instead of stopping */
  skipInvalid?: boolean;
  towerSession?: { executionProvider?: 'cpu' | 'cuda' | 'tensorrt' | 'dml' | 'coreml' | 'webgpu'; threads?: number };
  /** an existing node-llama-cpp instance (not disposed) */
  llama?: Llama;
  onProgress?: (done: number, total: number, skippedShards: number) => void;
  onWarning?: (msg: string) => void;
}

export interface BuildShardsResult {
  manifest: ShardManifest;
  /** shards written by this call (the rest were already complete) */
  written: number;
}

interface PlannedSample {
  id: string;
  files: string[];
  row: TrainingRow;
}

/** Fields that must match for a resumed run to continue an existing output directory. */
function identity(m: ShardManifest): string {
  return JSON.stringify([m.dataset.sha256, m.tower.sha256, m.tower.dtype, m.tower.tap, m.tower.resizeMode, m.llm.sha256, m.template, m.placeholder, m.shardSize, m.featureDtype]);
}

function writeAtomic(file: string, data: string | Buffer): void {
  const tmp = `${file}.partial`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

function imageFile(imagesDir: string, rel: string, id: string): string {
  const root = path.resolve(imagesDir);
  const file = path.resolve(root, rel);
  if (file !== root && !file.startsWith(root + path.sep)) throw new DatasetError(`sample ${JSON.stringify(id)}: image path ${JSON.stringify(rel)} leaves the --images directory`);
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new DatasetError(`sample ${JSON.stringify(id)}: image ${file} does not exist`);
  }
  if (!st.isFile()) throw new DatasetError(`sample ${JSON.stringify(id)}: image ${file} is not a file`);
  return file;
}

export async function buildFeatureShards(o: BuildShardsOptions): Promise<BuildShardsResult> {
  const shardSize = o.shardSize ?? DEFAULT_SHARD_SIZE;
  if (!Number.isInteger(shardSize) || shardSize < 1) throw new DatasetError(`shard size must be a positive integer, got ${shardSize}`);
  const warn = o.onWarning ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
  if (!fs.existsSync(o.images) || !fs.statSync(o.images).isDirectory()) throw new DatasetError(`--images ${o.images}: not a directory`);
  const { samples, bytes } = readLlavaDataset(o.dataset);

  const llama = o.llama ?? (await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error }));
  let model: LlamaModel | undefined;
  let tower: VisionTower | undefined;
  try {
    // The vocabulary is all tokenization needs: a multi-GB GGUF loads in a moment.
    model = await llama.loadModel({ modelPath: o.llm, vocabOnly: true });
    tower = await VisionTower.load(o.tower, o.towerSession ?? {});
    const tm = tower.manifest;
    const template = o.template ?? 'gguf';
    const placeholder = choosePlaceholder(model).token;
    const ctx = { model, template, tokensPerImage: tm.patchTokens, placeholder };

    // Pass 1: validate and tokenize everything before any tower work.
    const planned: PlannedSample[] = [];
    const skipped: { id: string; reason: string }[] = [];
    for (const s of samples) {
      try {
        const files = sampleImages(s).map((rel) => imageFile(o.images, rel, s.id));
        planned.push({ id: s.id, files, row: renderTrainingRow(ctx, sampleToChat(s), s.id) });
      } catch (e) {
        if (!(e instanceof DatasetError) || !o.skipInvalid) throw e;
        skipped.push({ id: s.id, reason: e.message });
        warn(`skipping ${e.message}`);
      }
    }
    if (planned.length === 0) throw new DatasetError(`${o.dataset}: no usable samples`);

    const meta = model.fileInfo.metadata as { general?: { name?: unknown } } | undefined;
    const gname = meta?.general?.name;
    const manifest: ShardManifest = {
      format: 'llm2clip-train-shards',
      version: SHARD_VERSION,
      dataset: { file: path.resolve(o.dataset), sha256: createHash('sha256').update(bytes).digest('hex'), samples: samples.length, skipped },
      images: path.resolve(o.images),
      tower: {
        dir: path.resolve(o.tower),
        arch: tm.arch,
        width: tm.width,
        patchTokens: tm.patchTokens,
        tap: tm.tapLayer,
        sha256: tm.source.sha256,
        dtype: tm.dtype,
        imageSize: tm.imageSize,
        resizeMode: o.resizeMode ?? tm.preprocess.resizeMode,
      },
      llm: {
        file: path.resolve(o.llm),
        sha256: await sha256File(o.llm),
        name: typeof gname === 'string' && gname.length > 0 ? gname : path.basename(o.llm).replace(/\.gguf$/i, ''),
        nEmbd: nEmbdOf(model),
        nVocab: [...model.iterateAllTokens()].length,
      },
      template,
      placeholder,
      tokensPerImage: tm.patchTokens,
      featureDtype: o.featureDtype ?? 'f32',
      shardSize,
      shards: [],
      complete: false,
    };

    fs.mkdirSync(o.out, { recursive: true });
    const manifestPath = path.join(o.out, SHARD_MANIFEST);
    if (fs.existsSync(manifestPath)) {
      let old: ShardManifest;
      try {
        old = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as ShardManifest;
      } catch (e) {
        throw new DatasetError(`${manifestPath}: not valid JSON (${(e as Error).message}); remove it or choose another --out`);
      }
      if (old.format === manifest.format && old.version !== manifest.version) {
        throw new DatasetError(`${o.out} holds shards of format version ${String(old.version)} (this llm2clip writes version ${manifest.version}); choose another --out or empty it`);
      }
      if (old.format !== manifest.format || identity(old) !== identity(manifest)) {
        throw new DatasetError(`${o.out} holds shards made from other inputs (dataset, tower, LLM, template or shard size differ); choose another --out or empty it`);
      }
    }
    writeAtomic(manifestPath, JSON.stringify(manifest, null, 2) + '\n');

    const nShards = Math.ceil(planned.length / shardSize);
    const totalImages = countImages(planned, shardSize);
    const batch = o.batch ?? 8;
    const f16 = manifest.featureDtype === 'f16';
    const featBytes = tm.patchTokens * tm.width * (f16 ? 2 : 4);
    const header = (n: number): Buffer => featureHeader([n, tm.patchTokens, tm.width], f16);
    let written = 0;
    let done = 0;
    let resumed = 0;
    for (let k = 0; k < nShards; k++) {
      const part = planned.slice(k * shardSize, (k + 1) * shardSize);
      const name = shardName(k);
      const jsonPath = path.join(o.out, `${name}.json`);
      const npyPath = path.join(o.out, `${name}.npy`);
      let files = [...new Set(part.flatMap((p) => p.files))];
      const complete = (n: number): boolean =>
        fs.existsSync(jsonPath) && fs.existsSync(npyPath) && fs.statSync(npyPath).size === header(n).length + n * featBytes;
      if (fs.existsSync(jsonPath)) {
        const old = JSON.parse(fs.readFileSync(jsonPath, 'utf8')) as { rows: ShardRow[]; images?: number; skipped?: { id: string; reason: string }[] };
        const nImages = old.images ?? files.length;
        if (complete(nImages)) {
          manifest.shards.push(shardEntry(name, old.rows, nImages));
          skipped.push(...(old.skipped ?? []));
          done += files.length;
          resumed++;
          o.onProgress?.(done, totalImages, resumed);
          continue;
        }
      }
      // Encode in batches; with skipInvalid a failing batch is retried image by image and bad images dropped.
      const feats = new Map<string, Float32Array>();
      const shardSkipped: { id: string; reason: string }[] = [];
      const encode = async (batchFiles: string[]): Promise<void> => {
        try {
          const r = await tower!.encode(batchFiles.map((f) => fs.readFileSync(f)), { batch, ...(o.resizeMode ? { resizeMode: o.resizeMode } : {}) });
          batchFiles.forEach((f, j) => feats.set(f, r.patchFeatures.subarray(j * tm.patchTokens * tm.width, (j + 1) * tm.patchTokens * tm.width)));
        } catch (e) {
          const idx = (e as { inputIndex?: number }).inputIndex;
          if (!(e instanceof ImageError)) throw e;
          if (o.skipInvalid && batchFiles.length > 1) {
            for (const f of batchFiles) await encode([f]);
            return;
          }
          const f = batchFiles[idx ?? 0]!;
          const ids = part.filter((p) => p.files.includes(f)).map((p) => p.id);
          const msg = `sample ${JSON.stringify(ids[0])}: image ${f}: ${e.message}`;
          if (!o.skipInvalid) throw new DatasetError(msg, { cause: e });
          for (const id of ids) shardSkipped.push({ id, reason: msg });
          warn(`skipping ${msg}`);
        }
      };
      for (let i = 0; i < files.length; i += batch) {
        const chunk = files.slice(i, i + batch);
        await encode(chunk);
        done += chunk.length;
        o.onProgress?.(done, totalImages, resumed);
      }
      files = files.filter((f) => feats.has(f));
      const rows: ShardRow[] = part.filter((p) => p.files.every((f) => feats.has(f))).map((p) => ({ id: p.id, images: p.files.map((f) => files.indexOf(f)), ...p.row }));
      const tmp = `${npyPath}.partial`;
      const fd = fs.openSync(tmp, 'w');
      try {
        fs.writeSync(fd, header(files.length));
        for (const f of files) {
          const x = f16 ? f32ArrayToF16(feats.get(f)!) : feats.get(f)!;
          fs.writeSync(fd, Buffer.from(x.buffer, x.byteOffset, x.byteLength));
        }
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, npyPath);
      writeAtomic(jsonPath, JSON.stringify({ format: 'llm2clip-train-shard', version: SHARD_VERSION, name, features: `${name}.npy`, images: files.length, skipped: shardSkipped, rows }) + '\n');
      skipped.push(...shardSkipped);
      const entry = shardEntry(name, rows, files.length);
      manifest.shards.push(entry);
      writeAtomic(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
      written++;
    }
    manifest.complete = true;
    writeAtomic(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
    return { manifest, written };
  } finally {
    await tower?.dispose();
    await model?.dispose();
    if (!o.llama) await llama.dispose();
  }
}

/** A '<f4' or '<f2' .npy header (numpy's layout: same length either way, data 64-byte aligned). */
function featureHeader(shape: readonly number[], f16: boolean): Buffer {
  const h = npyHeader(shape);
  if (!f16) return h;
  const at = h.indexOf("'<f4'");
  h.write("'<f2'", at, 'latin1');
  return h;
}

/** n_embd from the GGUF metadata (a vocabulary-only model reports 0 as its embedding size). */
function nEmbdOf(model: LlamaModel): number {
  const n = (model.fileInfo.architectureMetadata as { embedding_length?: unknown }).embedding_length;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new DatasetError(`${model.filename ?? 'LLM'}: the GGUF has no embedding_length`);
  return n;
}

function shardEntry(name: string, rows: readonly ShardRow[], images: number): ShardManifest['shards'][number] {
  return {
    name,
    rows: rows.length,
    images,
    tokens: rows.reduce((a, r) => a + r.tokens.length, 0),
    labelTokens: rows.reduce((a, r) => a + r.labels.reduce((b, [s, e]) => b + e - s, 0), 0),
  };
}

/** Distinct images across the planned shards (for a progress total before encoding). */
export function countImages(rows: readonly { files: readonly string[] }[], shardSize: number): number {
  let n = 0;
  for (let k = 0; k * shardSize < rows.length; k++) n += new Set(rows.slice(k * shardSize, (k + 1) * shardSize).flatMap((r) => r.files)).size;
  return n;
}
