/**
 * Image -> normalised [3,S,S] float32 tensor, matching the official Python pipelines bit for bit on the
 * uint8 stage (given identical decoded pixels):
 * - crop: torchvision eval transform Resize(S, BICUBIC) -> CenterCrop(S) -> ToTensor -> Normalize
 *   (open_clip/LLM2CLIP `image_transform(is_train=False)`). Note HF CLIPImageProcessor centre-crops with
 *   floor((H-S)/2) instead of torchvision's round-half-even, so the two differ by one row/column when
 *   H-S = 3 (mod 4); we follow torchvision.
 * - pad: LLaVA `expand2square(img, tuple(int(x*255) for x in mean))` -> CLIPImageProcessor, which on a
 *   square image is a BICUBIC resize to S×S. The canvas is never materialised (a 20000×50 strip would be
 *   20000² pixels); rows are synthesised on demand, which gives the same pixels.
 * Normalisation is ((x/255) - mean)/std with every step rounded to float32, as torch does it; HF's
 * float64 rescale gives the same float32 for all 256 inputs (checked when the fixtures were made).
 */
import type { PreprocessSpec, Vec3 } from '../vision/spec.js';
import { decodeToRgb8, type ImageInput, type ImageLimits } from './decode.js';
import { ImageError } from './errors.js';
import { resizeBicubic, resizeBicubicRows, type RawImage, type RowSource } from './resample.js';

export type { ImageInput, ImageLimits } from './decode.js';
export { ImageError } from './errors.js';

function checkSpec(spec: PreprocessSpec): void {
  const S = spec.imageSize;
  if (!Number.isInteger(S) || S < 1) throw new RangeError(`imageSize must be a positive integer, got ${S}`);
  if (spec.resizeMode !== 'crop' && spec.resizeMode !== 'pad') throw new RangeError(`unknown resizeMode ${String(spec.resizeMode)}`);
  for (let c = 0; c < 3; c++) {
    if (!Number.isFinite(spec.mean[c]) || !Number.isFinite(spec.std[c]) || spec.std[c] === 0) {
      throw new RangeError(`mean/std must be 3 finite numbers with std != 0, got ${spec.mean} / ${spec.std}`);
    }
  }
}

function checkRgb(img: RawImage): void {
  if (img.channels !== 3 || img.data.length < img.width * img.height * 3) {
    throw new RangeError(`expected an RGB image with ${img.width * img.height * 3} bytes`);
  }
}

/** Python's round() for a multiple of 0.5: ties go to the even neighbour. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** torchvision Resize(S) (short side to S, long side truncated) + CenterCrop(S), on 8-bit RGB. */
export function resizeCropRgb8(img: RawImage, size: number): RawImage {
  checkRgb(img);
  const { width: w, height: h } = img;
  const [nw, nh] = w <= h ? [size, Math.trunc((size * h) / w)] : [Math.trunc((size * w) / h), size];
  const left = roundHalfEven((nw - size) / 2);
  const top = roundHalfEven((nh - size) / 2);
  return resizeBicubic(img, nw, nh, { left, top, width: size, height: size });
}

/** The LLaVA background: tuple(int(x * 255) for x in mean). */
export function padColour(mean: Vec3): [number, number, number] {
  return mean.map((m) => Math.min(255, Math.max(0, Math.trunc(m * 255)))) as [number, number, number];
}

/** LLaVA expand2square with `padColour(mean)`, then a BICUBIC resize of the square to S×S, on 8-bit RGB. */
export function padResizeRgb8(img: RawImage, size: number, mean: Vec3): RawImage {
  checkRgb(img);
  const { width: w, height: h, data } = img;
  const side = Math.max(w, h);
  const bg = padColour(mean);
  const bgRow = new Uint8Array(side * 3);
  for (let i = 0; i < side; i++) bgRow.set(bg, i * 3);
  const stride = w * 3;
  let row: (y: number) => Uint8Array;
  if (w > h) {
    const top = (w - h) >> 1;
    row = (y) => (y >= top && y < top + h ? data.subarray((y - top) * stride, (y - top + 1) * stride) : bgRow);
  } else if (w < h) {
    const left = (h - w) >> 1;
    const buf = bgRow.slice();
    row = (y) => {
      buf.set(data.subarray(y * stride, (y + 1) * stride), left * 3);
      return buf;
    };
  } else {
    row = (y) => data.subarray(y * stride, (y + 1) * stride);
  }
  const canvas: RowSource = { width: side, height: side, channels: 3, row };
  return resizeBicubicRows(canvas, size, size);
}

/** The uint8 [S,S,3] stage of the pipeline for an already decoded RGB image. */
export function toSquareRgb8(img: RawImage, spec: PreprocessSpec): RawImage {
  checkSpec(spec);
  return spec.resizeMode === 'crop' ? resizeCropRgb8(img, spec.imageSize) : padResizeRgb8(img, spec.imageSize, spec.mean);
}

/** HWC uint8 RGB -> CHW float32 ((x/255 - mean)/std, each step rounded to float32 like torch). */
export function normalizeRgb8(img: RawImage, mean: Vec3, std: Vec3, out?: Float32Array, offset = 0): Float32Array {
  checkRgb(img);
  const plane = img.width * img.height;
  const dst = out ?? new Float32Array(3 * plane);
  if (offset + 3 * plane > dst.length) throw new RangeError('output tensor is too small');
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const m = f(mean[c]);
    const s = f(std[c]);
    const table = new Float32Array(256);
    for (let x = 0; x < 256; x++) table[x] = f(f(f(x / 255) - m) / s);
    const o = offset + c * plane;
    const src = img.data;
    for (let i = 0; i < plane; i++) dst[o + i] = table[src[i * 3 + c]!]!;
  }
  return dst;
}

/** Decode + resize/crop or pad + resize: the integer [S,S,3] image the model's float input is made from. */
export async function preprocessToRgb8(input: ImageInput, spec: PreprocessSpec, limits?: ImageLimits): Promise<RawImage> {
  checkSpec(spec);
  return toSquareRgb8(await decodeToRgb8(input, limits), spec);
}

/** Decode and preprocess one image to a [3,S,S] float32 tensor (CHW, RGB). */
export async function preprocess(input: ImageInput, spec: PreprocessSpec, limits?: ImageLimits): Promise<Float32Array> {
  return normalizeRgb8(await preprocessToRgb8(input, spec, limits), spec.mean, spec.std);
}

/** Largest number of images decoded at once by preprocessBatch (each full-size decode can be large). */
const BATCH_CONCURRENCY = 4;

/**
 * Preprocess images into one [n,3,S,S] tensor. Decodes run a few at a time; the first failure rejects with
 * an ImageError whose message and `inputIndex` name the offending input.
 */
export async function preprocessBatch(inputs: readonly ImageInput[], spec: PreprocessSpec, limits?: ImageLimits): Promise<Float32Array> {
  checkSpec(spec);
  const S = spec.imageSize;
  const each = 3 * S * S;
  const out = new Float32Array(inputs.length * each);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < inputs.length) {
      const i = next++;
      try {
        normalizeRgb8(await preprocessToRgb8(inputs[i]!, spec, limits), spec.mean, spec.std, out, i * each);
      } catch (e) {
        failed = true;
        if (e instanceof ImageError) throw new ImageError(e.code, `input ${i}: ${e.message}`, { cause: e, inputIndex: i });
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, inputs.length) }, worker));
  return out;
}
