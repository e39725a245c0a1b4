/**
 * Image -> normalised [3,S,S] float32 tensor, matching the official Python pipelines bit for bit on the
 * uint8 stage (given identical decoded pixels):
 * - crop: the LLM2CLIP/EVA-CLIP eval transform (`eva_clip/transform.py`, `image_transform(is_train=False)`):
 *   Resize(S, BICUBIC) -> CenterCrop(S) -> _convert_to_rgb -> ToTensor -> Normalize. The image reaches Resize
 *   in the mode PIL opened it in, and Pillow's Image.resize then does not always run BICUBIC on RGB:
 *   "P" and "1" are resized with NEAREST; "RGBA"/"LA" are premultiplied ("RGBa"/"La"), resized, and
 *   unpremultiplied, so fully transparent pixels come out black and edges darken; "CMYK" is resized before
 *   the (nonlinear) RGB conversion. "L" and "RGB" are unaffected. See `resizeCropMode`.
 *   Note HF CLIPImageProcessor centre-crops with floor((H-S)/2) instead of torchvision's round-half-even, so
 *   the two differ by one row/column when H-S = 3 (mod 4); we follow torchvision.
 * - pad: LLaVA opens images with `.convert('RGB')`, then `expand2square(img, tuple(int(x*255) for x in mean))`
 *   -> CLIPImageProcessor, which on a square image is a BICUBIC resize to S×S; so here RGB comes first. The
 *   canvas is never materialised (a 20000×50 strip would be 20000² pixels); rows are synthesised on demand,
 *   which gives the same pixels.
 * Normalisation is ((x/255) - mean)/std with every step rounded to float32, as torch does it; HF's
 * float64 rescale gives the same float32 for all 256 inputs (checked when the fixtures were made).
 */
import type { PreprocessSpec, Vec3 } from '../vision/spec.js';
import { decodeToPilMode, type ImageInput, type ImageLimits } from './decode.js';
import { ImageError } from './errors.js';
import { checkModeImage, cmykToRgb, modeToRgb8, premultipliedRows, unpremultiplyToRgb, type ModeImage } from './pilmodes.js';
import { resizeBicubic, resizeBicubicRows, resizeNearest, type OutputWindow, type RawImage, type RowSource } from './resample.js';

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

/** torchvision Resize(S) output size (short side to S, long side truncated) and CenterCrop(S) window. */
export function resizeCropGeometry(width: number, height: number, size: number): { width: number; height: number; window: OutputWindow } {
  const [nw, nh] = width <= height ? [size, Math.trunc((size * height) / width)] : [Math.trunc((size * width) / height), size];
  const window = { left: roundHalfEven((nw - size) / 2), top: roundHalfEven((nh - size) / 2), width: size, height: size };
  return { width: nw, height: nh, window };
}

/**
 * The eva_clip crop pipeline up to the uint8 stage: Resize(S, BICUBIC) in the image's own PIL mode (as
 * Pillow's Image.resize runs it for that mode), CenterCrop(S), then convert('RGB'). Returns S×S RGB.
 */
export function resizeCropMode(img: ModeImage, size: number): RawImage {
  checkModeImage(img);
  const { width: nw, height: nh, window: win } = resizeCropGeometry(img.width, img.height, size);
  if (nw === img.width && nh === img.height) {
    // torchvision returns the image untouched (and Image.resize would copy it): a plain crop, then convert.
    return modeToRgb8({ ...resizeBicubic(img, nw, nh, win), mode: img.mode });
  }
  switch (img.mode) {
    case 'RGB':
      return resizeBicubic(img, nw, nh, win);
    case 'P': case '1':
      return resizeNearest(img, nw, nh, win);
    case 'L':
      return modeToRgb8({ ...resizeBicubic(img, nw, nh, win), mode: 'L' });
    case 'CMYK':
      return { width: size, height: size, channels: 3, data: cmykToRgb(resizeBicubic(img, nw, nh, win).data, size * size) };
    case 'RGBA': case 'LA':
      return unpremultiplyToRgb(resizeBicubicRows(premultipliedRows(img), nw, nh, win));
  }
}

/** torchvision Resize(S) (short side to S, long side truncated) + CenterCrop(S), on 8-bit RGB. */
export function resizeCropRgb8(img: RawImage, size: number): RawImage {
  checkRgb(img);
  return resizeCropMode({ ...img, mode: 'RGB' }, size);
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

/**
 * The uint8 [S,S,3] stage of the pipeline for an already decoded image: RGB (a RawImage with 3 channels), or
 * pixels in a PIL mode's layout (a ModeImage, e.g. from decodeToPilMode), which crop mode resizes in that mode.
 */
export function toSquareRgb8(img: RawImage | ModeImage, spec: PreprocessSpec): RawImage {
  checkSpec(spec);
  const moded: ModeImage = 'mode' in img ? img : { ...img, mode: 'RGB' };
  if (spec.resizeMode === 'crop') return resizeCropMode(moded, spec.imageSize);
  return padResizeRgb8(modeToRgb8(moded), spec.imageSize, spec.mean);
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
  return toSquareRgb8(await decodeToPilMode(input, limits), spec);
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
