/**
 * Bit-exact reimplementation of PIL's `Image.resize(size, Image.BICUBIC)` for 8-bit images, written from the
 * algorithm's definition and checked against Pillow 9.4 (test/image/resample.test.ts):
 *
 * - separable: a horizontal pass over the needed input rows, then a vertical pass; a pass whose size does not
 *   change is skipped (for this kernel a same-size pass is the identity anyway);
 * - kernel: Keys cubic with a = -0.5, support 2, stretched by max(scale, 1) when downscaling (antialias);
 * - output pixel i samples around center = (i + 0.5) * scale over input pixels [trunc(center - support + 0.5),
 *   trunc(center + support + 0.5)) clamped to the image, weights normalised to sum 1 in double precision;
 * - weights are then fixed point with 22 fractional bits, rounded half away from zero; sums start at 1 << 21
 *   (so the final shift rounds) and each pass clamps to 0..255, so the intermediate image is 8-bit too.
 *
 * Every floating-point operation is written in the same order as the reference so the doubles (and hence the
 * fixed-point weights) are identical; x86-64 builds of Pillow do not contract them into FMAs.
 *
 * Also PIL's NEAREST (`resizeNearest`), which Image.resize uses instead of BICUBIC for modes "1" and "P".
 */

/** Row-major interleaved 8-bit pixels (HWC). */
export interface RawImage {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  readonly data: Uint8Array;
}

/** Rows of an image that may not exist in memory (e.g. a padded canvas); `row(y)` may reuse its buffer. */
export interface RowSource {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  row(y: number): Uint8Array;
}

/** A rectangle of the resized output. Only these pixels are computed; each equals the full resize's pixel. */
export interface OutputWindow {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
}

const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;
const ROUND_START = 1 << (PRECISION_BITS - 1);
const CLIP_LIMIT = 1 << (PRECISION_BITS + 8);

function bicubic(x: number): number {
  if (x < 0) x = -x;
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
}

interface Coefficients {
  /** Stride of `weights` per output pixel. */
  readonly ksize: number;
  /** Per output pixel: first input index, number of taps. */
  readonly bounds: Int32Array;
  readonly weights: Int32Array;
}

/** Fixed-point weights for output pixels first..first+count-1 of an inSize -> outSize resize. */
function coefficients(inSize: number, outSize: number, first: number, count: number): Coefficients {
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const ss = 1 / filterscale;
  const bounds = new Int32Array(count * 2);
  const weights = new Int32Array(count * ksize);
  const w = new Float64Array(ksize);
  for (let i = 0; i < count; i++) {
    const center = (first + i + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    const n = xmax - xmin;
    let ww = 0;
    for (let x = 0; x < n; x++) {
      w[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (let x = 0; x < n; x++) {
      const v = ww !== 0 ? w[x] / ww : w[x];
      weights[i * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    bounds[i * 2] = xmin;
    bounds[i * 2 + 1] = n;
  }
  return { ksize, bounds, weights };
}

function clip8(v: number): number {
  if (v < 0) return 0;
  if (v >= CLIP_LIMIT) return 255;
  return v >> PRECISION_BITS;
}

/** One horizontal pass of `src` (width*c) into `dst` (count*c) for output columns described by `co`. */
function horizontalRow(src: Uint8Array, dst: Uint8Array, dstOff: number, co: Coefficients, count: number, c: number): void {
  const { ksize, bounds, weights } = co;
  let o = dstOff;
  if (c === 3) {
    for (let i = 0; i < count; i++) {
      const n = bounds[i * 2 + 1];
      const k0 = i * ksize;
      let p = bounds[i * 2] * 3;
      let s0 = ROUND_START, s1 = ROUND_START, s2 = ROUND_START;
      for (let t = 0; t < n; t++, p += 3) {
        const k = weights[k0 + t];
        s0 += src[p] * k;
        s1 += src[p + 1] * k;
        s2 += src[p + 2] * k;
      }
      dst[o++] = clip8(s0);
      dst[o++] = clip8(s1);
      dst[o++] = clip8(s2);
    }
    return;
  }
  for (let i = 0; i < count; i++) {
    const n = bounds[i * 2 + 1];
    const k0 = i * ksize;
    const p0 = bounds[i * 2] * c;
    for (let ch = 0; ch < c; ch++) {
      let s = ROUND_START;
      for (let t = 0, p = p0 + ch; t < n; t++, p += c) s += src[p] * weights[k0 + t];
      dst[o++] = clip8(s);
    }
  }
}

function checkSize(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
}

/** The window (default: the whole output), checked to lie inside an outW x outH output. */
function checkWindow(window: OutputWindow | undefined, outW: number, outH: number): OutputWindow {
  checkSize('output width', outW);
  checkSize('output height', outH);
  const win = window ?? { left: 0, top: 0, width: outW, height: outH };
  checkSize('window width', win.width);
  checkSize('window height', win.height);
  if (!Number.isInteger(win.left) || !Number.isInteger(win.top) || win.left < 0 || win.top < 0 ||
      win.left + win.width > outW || win.top + win.height > outH) {
    throw new RangeError(`window ${JSON.stringify(win)} is outside the ${outW}x${outH} output`);
  }
  return win;
}

/**
 * Resize `src` to outW x outH exactly like PIL BICUBIC, computing only `window` (default: everything).
 * The result has the window's size and the source's channel count.
 */
export function resizeBicubicRows(src: RowSource, outW: number, outH: number, window?: OutputWindow): RawImage {
  const c = src.channels;
  checkSize('source width', src.width);
  checkSize('source height', src.height);
  checkSize('channels', c);
  const win = checkWindow(window, outW, outH);
  const needH = outW !== src.width;
  const needV = outH !== src.height;
  const rowLen = win.width * c;

  // Input rows the vertical pass will read, and the horizontally resized version of each.
  const vco = needV ? coefficients(src.height, outH, win.top, win.height) : undefined;
  let yFirst = win.top;
  let yEnd = win.top + win.height;
  if (vco) {
    yFirst = vco.bounds[0];
    yEnd = vco.bounds[(win.height - 1) * 2] + vco.bounds[(win.height - 1) * 2 + 1];
  }
  const hco = needH ? coefficients(src.width, outW, win.left, win.width) : undefined;
  const temp = new Uint8Array((yEnd - yFirst) * rowLen);
  for (let y = yFirst; y < yEnd; y++) {
    const row = src.row(y);
    if (row.length < src.width * c) throw new RangeError(`row ${y} is shorter than ${src.width * c} bytes`);
    if (hco) horizontalRow(row, temp, (y - yFirst) * rowLen, hco, win.width, c);
    else temp.set(row.subarray(win.left * c, win.left * c + rowLen), (y - yFirst) * rowLen);
  }
  if (!vco) return { width: win.width, height: win.height, channels: c, data: temp };

  const out = new Uint8Array(win.height * rowLen);
  const { ksize, bounds, weights } = vco;
  for (let i = 0; i < win.height; i++) {
    const n = bounds[i * 2 + 1];
    const k0 = i * ksize;
    const base = (bounds[i * 2] - yFirst) * rowLen;
    const o = i * rowLen;
    for (let x = 0; x < rowLen; x++) {
      let s = ROUND_START;
      for (let t = 0, p = base + x; t < n; t++, p += rowLen) s += temp[p] * weights[k0 + t];
      out[o + x] = clip8(s);
    }
  }
  return { width: win.width, height: win.height, channels: c, data: out };
}

/** Pure function: PIL `Image.resize((outW, outH), Image.BICUBIC)` of an 8-bit image (any channel count). */
export function resizeBicubic(src: RawImage, outW: number, outH: number, window?: OutputWindow): RawImage {
  const stride = src.width * src.channels;
  if (src.data.length < stride * src.height) {
    throw new RangeError(`image data has ${src.data.length} bytes, expected ${stride * src.height}`);
  }
  return resizeBicubicRows(
    { width: src.width, height: src.height, channels: src.channels, row: (y) => src.data.subarray(y * stride, (y + 1) * stride) },
    outW, outH, window,
  );
}

/**
 * PIL's NEAREST source index for each output pixel of an inSize -> outSize resize (Image.resize forces
 * NEAREST for modes "1" and "P"). ImagingScaleAffine starts at step / 2, with step = float32(inSize) / outSize
 * in double, and adds the step once per pixel, truncating each running sum; the accumulated rounding makes
 * about a third of size pairs differ somewhere from floor((i + 0.5) * inSize / outSize), so it is copied.
 * A sum that drifted to inSize would leave PIL's pixel at 0; that needs ~2^26 outputs, so it is clamped.
 */
export function nearestIndices(inSize: number, outSize: number): Int32Array {
  checkSize('source size', inSize);
  checkSize('output size', outSize);
  const step = Math.fround(inSize) / outSize;
  const idx = new Int32Array(outSize);
  let xo = step * 0.5;
  for (let i = 0; i < outSize; i++) {
    idx[i] = Math.min(Math.trunc(xo), inSize - 1);
    xo += step;
  }
  return idx;
}

/** Pure function: PIL `Image.resize((outW, outH), Image.NEAREST)` of an 8-bit image, computing only `window`. */
export function resizeNearest(src: RawImage, outW: number, outH: number, window?: OutputWindow): RawImage {
  const c = src.channels;
  checkSize('channels', c);
  if (src.data.length < src.width * src.height * c) {
    throw new RangeError(`image data has ${src.data.length} bytes, expected ${src.width * src.height * c}`);
  }
  const win = checkWindow(window, outW, outH);
  const xs = nearestIndices(src.width, outW).subarray(win.left, win.left + win.width);
  const ys = nearestIndices(src.height, outH).subarray(win.top, win.top + win.height);
  const out = new Uint8Array(win.width * win.height * c);
  const stride = src.width * c;
  for (let y = 0, o = 0; y < win.height; y++) {
    const base = ys[y]! * stride;
    for (let x = 0; x < win.width; x++) {
      const s = base + xs[x]! * c;
      for (let ch = 0; ch < c; ch++) out[o++] = src.data[s + ch]!;
    }
  }
  return { width: win.width, height: win.height, channels: c, data: out };
}
