/**
 * The runtime noun of the first pipeline stage: a converted tower directory loaded into onnxruntime.
 * `encode` takes images (or already-preprocessed pixels) and returns LLaVA patch features and the
 * pooled LLM2CLIP image embedding, batching runs of the session.
 */
import type * as ort from 'onnxruntime-node';
import { Tensor } from 'onnxruntime-node';
import { join } from 'node:path';
import { ImageError } from '../image/errors.js';
import { preprocess, type ImageInput, type ImageLimits } from '../image/preprocess.js';
import { ADAPTER_ONNX, readManifest, TOWER_ONNX, type TowerManifest } from './manifest.js';
import { createSession, outputData, SessionError, type SessionOptions } from './session.js';
import type { PreprocessSpec } from './spec.js';

export interface TowerOutput {
  readonly count: number;
  /** [count, patchTokens, width] */
  readonly patchFeatures: Float32Array;
  readonly patchTokens: number;
  readonly width: number;
  /** [count, embedDim], not normalised. */
  readonly imageEmbeds: Float32Array;
  readonly embedDim: number;
}

export interface EncodeOptions {
  /** Images per session run (default 1). */
  readonly batch?: number;
  /** Override the manifest's resize mode for these images. */
  readonly resizeMode?: 'crop' | 'pad';
  readonly limits?: ImageLimits;
}

export class VisionTower {
  private constructor(
    readonly dir: string,
    readonly manifest: TowerManifest,
    private readonly session: ort.InferenceSession,
  ) {}

  static async load(dir: string, opts: SessionOptions = {}): Promise<VisionTower> {
    const manifest = readManifest(dir);
    const session = await createSession(join(dir, TOWER_ONNX), opts);
    return new VisionTower(dir, manifest, session);
  }

  get preprocessSpec(): PreprocessSpec {
    return this.manifest.preprocess;
  }

  /** Pixels per image: 3·S·S. */
  get pixelCount(): number {
    return 3 * this.manifest.imageSize * this.manifest.imageSize;
  }

  async preprocess(input: ImageInput, opts: Pick<EncodeOptions, 'resizeMode' | 'limits'> = {}): Promise<Float32Array> {
    const spec = opts.resizeMode ? { ...this.preprocessSpec, resizeMode: opts.resizeMode } : this.preprocessSpec;
    return preprocess(input, spec, opts.limits);
  }

  async encode(inputs: readonly ImageInput[], opts: EncodeOptions = {}): Promise<TowerOutput> {
    const px = new Float32Array(inputs.length * this.pixelCount);
    for (let i = 0; i < inputs.length; i++) {
      try {
        px.set(await this.preprocess(inputs[i]!, opts), i * this.pixelCount);
      } catch (e) {
        if (!(e instanceof ImageError)) throw e;
        throw new ImageError(e.code, `${describeInput(inputs[i]!, i)}: ${e.message}`, { cause: e, inputIndex: i });
      }
    }
    return this.encodePixels(px, inputs.length, opts);
  }

  /** `pixels` is [count, 3, S, S], already normalised. */
  async encodePixels(pixels: Float32Array, count: number, opts: Pick<EncodeOptions, 'batch'> = {}): Promise<TowerOutput> {
    const m = this.manifest;
    if (!Number.isInteger(count) || count < 1) throw new SessionError(`image count must be a positive integer, got ${count}`);
    if (pixels.length !== count * this.pixelCount) {
      throw new SessionError(`pixels hold ${pixels.length} values; ${count} image(s) of [3,${m.imageSize},${m.imageSize}] need ${count * this.pixelCount}`);
    }
    const batch = opts.batch ?? 1;
    if (!Number.isInteger(batch) || batch < 1) throw new SessionError(`batch must be a positive integer, got ${batch}`);
    const featPer = m.patchTokens * m.width;
    const patchFeatures = new Float32Array(count * featPer);
    const imageEmbeds = new Float32Array(count * m.embedDim);
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const slice = pixels.subarray(start * this.pixelCount, (start + n) * this.pixelCount);
      const out = await this.session.run({ pixel_values: new Tensor('float32', slice, [n, 3, m.imageSize, m.imageSize]) });
      patchFeatures.set(outputData(out, 'patch_features'), start * featPer);
      imageEmbeds.set(outputData(out, 'image_embeds'), start * m.embedDim);
    }
    return { count, patchFeatures, patchTokens: m.patchTokens, width: m.width, imageEmbeds, embedDim: m.embedDim };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** LLM2CLIP's text adapter: LLM sentence embeddings [n, D] → the image-embedding space [n, P]. */
export class TextAdapter {
  private constructor(
    readonly inputDim: number,
    readonly embedDim: number,
    private readonly session: ort.InferenceSession,
  ) {}

  static async load(dir: string, opts: SessionOptions = {}): Promise<TextAdapter> {
    const manifest = readManifest(dir);
    if (!manifest.adapter) throw new SessionError(`${dir}: this tower was converted from a checkpoint without the text adapter`);
    const session = await createSession(join(dir, ADAPTER_ONNX), opts);
    return new TextAdapter(manifest.adapter.inputDim, manifest.adapter.embedDim, session);
  }

  async adapt(embeds: Float32Array, count: number): Promise<Float32Array> {
    if (!Number.isInteger(count) || count < 1 || embeds.length !== count * this.inputDim) {
      throw new SessionError(`LLM embeddings hold ${embeds.length} values; expected ${count} × ${this.inputDim}`);
    }
    const out = await this.session.run({ llm_embeds: new Tensor('float32', embeds, [count, this.inputDim]) });
    return outputData(out, 'text_embeds');
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** Names an input in an error without echoing a whole data URL or buffer. */
function describeInput(input: ImageInput, index: number): string {
  if (typeof input !== 'string') return `image #${index} (${input.length} bytes)`;
  if (input.startsWith('data:')) return `image #${index} (data URL)`;
  return input;
}

export function l2normalize(v: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(v.length);
  for (let r = 0; r < v.length / dim; r++) {
    let s = 0;
    for (let i = 0; i < dim; i++) s += v[r * dim + i]! ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let i = 0; i < dim; i++) out[r * dim + i] = v[r * dim + i]! * inv;
  }
  return out;
}
