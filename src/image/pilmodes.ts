/**
 * Pixel math of the PIL modes an image can be opened in, as pure functions: conversion to RGB (what
 * `convert('RGB')` does) and the premultiplication Pillow wraps around resampling images with alpha.
 * Formulas are those of Pillow 9.4's libImaging/Convert.c, checked against it by the fixtures.
 */
import type { RawImage, RowSource } from './resample.js';

/**
 * The mode Pillow 9.4's `Image.open` gives an image, as far as preprocessing cares. Channel layouts:
 * - 'RGB' 3; 'L' 1 (grey); 'CMYK' 4; 'RGBA' 4 and 'LA' 2 (colour as stored, alpha last, not premultiplied);
 * - 'P' and '1' are held as their RGB expansion (3 channels): PIL resizes them with NEAREST, which picks
 *   whole pixels, so the palette lookup of `convert('RGB')` can happen before or after it with the same result.
 */
export type PilMode = '1' | 'L' | 'P' | 'RGB' | 'RGBA' | 'LA' | 'CMYK';

export const MODE_CHANNELS: Readonly<Record<PilMode, number>> = { '1': 3, P: 3, L: 1, RGB: 3, RGBA: 4, LA: 2, CMYK: 4 };

/** Pixels in the layout of a PIL mode (see PilMode). */
export interface ModeImage extends RawImage {
  readonly mode: PilMode;
}

export function checkModeImage(img: ModeImage): void {
  const c = MODE_CHANNELS[img.mode];
  if (c === undefined) throw new RangeError(`unknown PIL mode ${String(img.mode)}`);
  if (img.channels !== c || img.data.length < img.width * img.height * c) {
    throw new RangeError(`a mode ${img.mode} image needs ${c} channels and ${img.width * img.height * c} bytes`);
  }
}

/** PIL's MULDIV255: round(a * b / 255) in integers. */
export function mulDiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

/** PIL Convert.c cmyk2rgb: R = clip(255 - K - C*(255-K)/255) with PIL's rounding division by 255. */
export function cmykToRgb(src: Uint8Array, pixels: number, stride = 4): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const nk = 255 - src[i * stride + 3]!;
    for (let ch = 0; ch < 3; ch++) {
      const v = nk - mulDiv255(src[i * stride + ch]!, nk);
      out[i * 3 + ch] = v < 0 ? 0 : v;
    }
  }
  return out;
}

/**
 * Convert.c rgbA2rgba / lA2la for one row: colour = MULDIV255(colour, alpha), alpha kept. `c` is 4 (RGBA) or
 * 2 (LA: PIL stores La as L,L,L,a and premultiplies the grey once, which is the same thing).
 */
export function premultiplyRow(src: Uint8Array, srcOff: number, dst: Uint8Array, width: number, c: 2 | 4): void {
  const colour = c - 1;
  for (let i = 0, s = srcOff, d = 0; i < width; i++, s += c, d += c) {
    const a = src[s + colour]!;
    for (let ch = 0; ch < colour; ch++) dst[d + ch] = mulDiv255(src[s + ch]!, a);
    dst[d + colour] = a;
  }
}

/**
 * Convert.c rgba2rgbA / la2lA followed by dropping alpha (RGBA->RGB) or replicating grey (LA->RGB): a colour
 * whose alpha is 0 or 255 is copied, otherwise it becomes CLIP8(255 * c / alpha) with integer division.
 */
export function unpremultiplyToRgb(img: RawImage): RawImage {
  const c = img.channels;
  if (c !== 2 && c !== 4) throw new RangeError(`premultiplied images have 2 or 4 channels, got ${c}`);
  const pixels = img.width * img.height;
  const src = img.data;
  const out = new Uint8Array(pixels * 3);
  for (let i = 0, s = 0, o = 0; i < pixels; i++, s += c, o += 3) {
    const a = src[s + c - 1]!;
    for (let ch = 0; ch < 3; ch++) {
      const v = src[s + (c === 4 ? ch : 0)]!;
      out[o + ch] = a === 0 || a === 255 ? v : Math.min(255, Math.trunc((255 * v) / a));
    }
  }
  return { width: img.width, height: img.height, channels: 3, data: out };
}

/** Rows of `img` (RGBA or LA) premultiplied on demand, as Pillow's convert to 'RGBa' / 'La' would give them. */
export function premultipliedRows(img: RawImage): RowSource {
  const c = img.channels;
  if (c !== 2 && c !== 4) throw new RangeError(`premultiplied images have 2 or 4 channels, got ${c}`);
  const stride = img.width * c;
  const buf = new Uint8Array(stride);
  return {
    width: img.width, height: img.height, channels: c,
    row: (y) => {
      premultiplyRow(img.data, y * stride, buf, img.width, c);
      return buf;
    },
  };
}

/** `convert('RGB')` of pixels in a mode's layout (alpha is dropped, keeping the colour stored under it). */
export function modeToRgb8(img: ModeImage): RawImage {
  checkModeImage(img);
  const { width, height, data } = img;
  const pixels = width * height;
  const rgb = (d: Uint8Array): RawImage => ({ width, height, channels: 3, data: d });
  switch (img.mode) {
    case 'RGB': case 'P': case '1':
      return rgb(data.subarray(0, pixels * 3));
    case 'CMYK':
      return rgb(cmykToRgb(data, pixels));
    default: {
      const c = img.channels; // L 1, LA 2, RGBA 4
      const out = new Uint8Array(pixels * 3);
      for (let i = 0, s = 0, o = 0; i < pixels; i++, s += c, o += 3) {
        if (c === 4) {
          out[o] = data[s]!;
          out[o + 1] = data[s + 1]!;
          out[o + 2] = data[s + 2]!;
        } else {
          out[o] = out[o + 1] = out[o + 2] = data[s]!;
        }
      }
      return rgb(out);
    }
  }
}
