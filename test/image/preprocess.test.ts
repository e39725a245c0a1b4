import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  decodeToPilMode, decodeToRgb8, ImageError, modeToRgb8, normalizeRgb8, padColour, padResizeRgb8, preprocess, preprocessBatch,
  preprocessToRgb8, resizeBicubic, resizeCropMode, resizeCropRgb8,
} from '../../src/image/index.js';
import { OPENAI_MEAN, OPENAI_STD, type PreprocessSpec } from '../../src/vision/spec.js';
import { f32, inputPath, manifest, maxAbsDiff, synthU8, u8 } from './helpers.js';

/** Stated tolerance for float outputs vs torch; the measured error is 0 (every step is float32 like torch). */
const FLOAT_TOL = 1e-6;
/** uint8 stage vs PIL: exact for every fixture, JPEG included (see decode.test.ts for why JPEG is 0 too). */
const U8_MAX_ABS = 0;

const spec = (size: number, resizeMode: 'crop' | 'pad'): PreprocessSpec => ({ imageSize: size, mean: OPENAI_MEAN, std: OPENAI_STD, resizeMode });
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('fixtures', () => {
  it('were made with OpenAI mean/std and cover both modes at S=224 and S=33', () => {
    expect(manifest.mean).toEqual([...OPENAI_MEAN]);
    expect(manifest.std).toEqual([...OPENAI_STD]);
    for (const s of [224, 33]) for (const m of ['crop', 'pad']) expect(manifest.cases.some((c) => c.size === s && c.mode === m)).toBe(true);
  });
});

describe('normalizeRgb8 vs torch ToTensor+Normalize', () => {
  const ramp = { width: 256, height: 1, channels: 3, data: Uint8Array.from({ length: 768 }, (_, i) => Math.floor(i / 3)) };
  const table = f32(manifest.normTable); // [3,256]

  it(`all 256 values x 3 channels within ${FLOAT_TOL}`, () => {
    expect(maxAbsDiff(normalizeRgb8(ramp, OPENAI_MEAN, OPENAI_STD), table)).toBeLessThanOrEqual(FLOAT_TOL);
  });

  it('and in fact bit-exact', () => {
    expect(normalizeRgb8(ramp, OPENAI_MEAN, OPENAI_STD)).toEqual(table);
  });

  it('a float64 formula would not be bit-exact (the check can discriminate)', () => {
    const f64 = Float32Array.from({ length: 768 }, (_, i) => (i % 256 / 255 - OPENAI_MEAN[Math.floor(i / 256)]!) / OPENAI_STD[Math.floor(i / 256)]!);
    expect(f64).not.toEqual(table);
  });
});

describe('preprocess vs PIL + torch', () => {
  for (const c of manifest.cases) {
    const name = `${c.input} ${c.mode} S=${c.size}`;
    it(`${name}: uint8 stage ${c.u8 ? `max abs error <= ${U8_MAX_ABS}` : 'identical (SHA-256)'}`, async () => {
      const out = await preprocessToRgb8(inputPath(c.input), spec(c.size, c.mode));
      expect([out.width, out.height, out.channels]).toEqual([c.size, c.size, 3]);
      if (c.u8) expect(maxAbsDiff(out.data, u8(c.u8))).toBeLessThanOrEqual(U8_MAX_ABS);
      if (U8_MAX_ABS === 0) expect(sha(out.data)).toBe(c.sha256);
    });
    if (c.f32 || c.u8) {
      it(`${name}: float output within ${FLOAT_TOL} of torch`, async () => {
        const x = await preprocess(inputPath(c.input), spec(c.size, c.mode));
        expect(x.length).toBe(3 * c.size * c.size);
        // Without a stored float array, torch's output is its (exact, per-value) table applied to PIL's uint8.
        const want = c.f32 ? f32(c.f32) : normalizeRgb8({ width: c.size, height: c.size, channels: 3, data: u8(c.u8!) }, OPENAI_MEAN, OPENAI_STD);
        expect(maxAbsDiff(x, want)).toBeLessThanOrEqual(FLOAT_TOL);
      });
    }
  }

  it('the centre crop uses round-half-even like torchvision (97x61 at S=33 crops from x=10, not floor 9)', async () => {
    // 61 -> 33 gives a 52-wide resize; (52-33)/2 = 9.5 rounds to 10. HF's floor would pick 9.
    const img = await preprocessToRgb8(inputPath('rgb_97x61.png'), spec(33, 'crop'));
    const ref = u8(manifest.cases.find((c) => c.input === 'rgb_97x61.png' && c.size === 33 && c.mode === 'crop')!.u8!);
    expect(img.data).toEqual(ref);
    const full = resizeBicubic(await decodeToRgb8(inputPath('rgb_97x61.png')), 52, 33);
    const col = (x0: number) => Uint8Array.from({ length: 33 * 33 * 3 }, (_, i) => {
      const y = Math.floor(i / 99);
      return full.data[(y * 52 + x0) * 3 + (i % 99)]!;
    });
    expect(col(10)).toEqual(ref);
    expect(col(9)).not.toEqual(ref);
  });
});

describe('crop mode resizes in the mode PIL opened the image in (eva_clip: Resize -> CenterCrop -> convert RGB)', () => {
  const crops = manifest.cases.filter((c) => c.mode === 'crop');
  const pilMode = (input: string) => manifest.decode.find((d) => d.input === input)!.pilMode;
  const convertFirst = async (input: string, size: number) => resizeCropRgb8(await decodeToRgb8(inputPath(input)), size).data;

  it('the fixtures make the order visible for every mode where it matters, at both sizes', () => {
    for (const mode of ['RGBA', 'LA', 'P', '1', 'CMYK']) {
      for (const size of [33, 224]) {
        expect(crops.some((c) => c.size === size && pilMode(c.input) === mode && c.convertFirstDiffers), `${mode} S=${size}`).toBe(true);
      }
    }
    for (const c of crops) if (['L', 'RGB'].includes(pilMode(c.input))) expect(c.convertFirstDiffers, c.input).toBe(false);
    for (const name of ['rgba_white_58x41.png', 'la_white_50x37.png', 'pal16_61x43.png', 'pal_59x46.gif', 'bilevel_90x52.png']) {
      expect(crops.filter((c) => c.input === name && c.convertFirstDiffers).length, name).toBe(2);
    }
  });

  for (const c of crops) {
    it(`${c.input} S=${c.size}: converting to RGB first ${c.convertFirstDiffers ? 'fails' : 'passes'} this fixture too`, async () => {
      expect(sha(await convertFirst(c.input, c.size)) !== c.sha256).toBe(c.convertFirstDiffers);
    });
  }

  it('fully transparent pixels that store white come out black, as in PIL; pad mode still converts first', async () => {
    const name = 'rgba_white_58x41.png';
    const crop = (await preprocessToRgb8(inputPath(name), spec(33, 'crop'))).data;
    const first = await convertFirst(name, 33);
    const px = (d: Uint8Array, i: number) => `${d[i * 3]},${d[i * 3 + 1]},${d[i * 3 + 2]}`;
    const whiteToBlack = Array.from({ length: 33 * 33 }, (_, i) => i).filter((i) => px(first, i) === '255,255,255' && px(crop, i) === '0,0,0');
    expect(whiteToBlack.length).toBeGreaterThan(20);
    const pad = await preprocessToRgb8(inputPath(name), spec(33, 'pad'));
    expect(pad.data).toEqual(padResizeRgb8(await decodeToRgb8(inputPath(name)), 33, OPENAI_MEAN).data);
  });

  it('a GIF with an identity grey palette opens as "L" (BICUBIC), not "P" (NEAREST)', async () => {
    const img = await decodeToPilMode(inputPath('greyramp_45x38.gif'));
    expect(img.mode).toBe('L');
    const want = crops.find((c) => c.input === 'greyramp_45x38.gif' && c.size === 33)!;
    expect(sha(resizeCropMode(img, 33).data)).toBe(want.sha256);
    expect(sha(resizeCropMode({ ...modeToRgb8(img), mode: 'P' }, 33).data)).not.toBe(want.sha256);
  });

  it('an image already at the target size is only cropped (no premultiply round trip)', () => {
    // 33x40 RGBA with alpha 1: a premultiply/unpremultiply round trip would turn every colour into 0 or 255.
    const data = synthU8(40, 33, 4, 3).map((v, i) => (i % 4 === 3 ? 1 : v));
    const out = resizeCropMode({ width: 33, height: 40, channels: 4, data, mode: 'RGBA' }, 33);
    const rgb = modeToRgb8({ width: 33, height: 40, channels: 4, data, mode: 'RGBA' }).data;
    expect(out.data).toEqual(rgb.subarray(4 * 33 * 3, 37 * 33 * 3)); // top = round((40 - 33) / 2) = 4
  });
});

describe('pad mode without a materialised canvas', () => {
  function materialised(w: number, h: number, data: Uint8Array, size: number) {
    const side = Math.max(w, h);
    const bg = padColour(OPENAI_MEAN);
    const canvas = new Uint8Array(side * side * 3);
    for (let i = 0; i < side * side; i++) canvas.set(bg, i * 3);
    const [ox, oy] = w > h ? [0, (w - h) >> 1] : [(h - w) >> 1, 0];
    for (let y = 0; y < h; y++) canvas.set(data.subarray(y * w * 3, (y + 1) * w * 3), ((y + oy) * side + ox) * 3);
    return resizeBicubic({ width: side, height: side, channels: 3, data: canvas }, size, size).data;
  }

  it('uses LLaVA\'s background tuple(int(x*255) for x in mean)', () => {
    expect(padColour(OPENAI_MEAN)).toEqual([122, 116, 104]);
  });

  it.each([[300, 7], [7, 300], [64, 64], [5, 2], [2, 5]])('%ix%i gives the same pixels as expand2square + resize', (w, h) => {
    const data = synthU8(h, w, 3, w + h);
    for (const size of [33, 224]) {
      expect(padResizeRgb8({ width: w, height: h, channels: 3, data }, size, OPENAI_MEAN).data).toEqual(materialised(w, h, data, size));
    }
  });
});

describe('preprocessBatch', () => {
  const files = ['rgb_97x61.png', 'photo_97x61.jpg', 'trans_36x28.gif', 'rgba_64x48.webp', 'gray_51x80.png'];

  it('stacks [n,3,S,S] equal to single preprocess calls, for mixed input kinds', async () => {
    const s = spec(33, 'pad');
    const bytes = readFileSync(inputPath(files[1]!));
    const inputs = [inputPath(files[0]!), bytes, `data:image/gif;base64,${readFileSync(inputPath(files[2]!)).toString('base64')}`,
      inputPath(files[3]!), new Uint8Array(readFileSync(inputPath(files[4]!)))];
    const batch = await preprocessBatch(inputs, s);
    expect(batch.length).toBe(5 * 3 * 33 * 33);
    for (let i = 0; i < files.length; i++) {
      expect(batch.subarray(i * 3267, (i + 1) * 3267)).toEqual(await preprocess(inputPath(files[i]!), s));
    }
    expect((await preprocessBatch([], s)).length).toBe(0);
  });

  it('names the failing input', async () => {
    const e = await preprocessBatch([inputPath(files[0]!), Buffer.from('nope')], spec(33, 'crop')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ImageError);
    expect((e as ImageError).inputIndex).toBe(1);
    expect((e as ImageError).message).toMatch(/^input 1: unsupported/);
  });
});

describe('spec validation and scale', () => {
  it('rejects a bad spec with RangeError', async () => {
    const p = inputPath('tiny_7x5.png');
    await expect(preprocess(p, { ...spec(0, 'crop') })).rejects.toThrow(RangeError);
    await expect(preprocess(p, { ...spec(33, 'crop'), std: [1, 0, 1] })).rejects.toThrow(RangeError);
    await expect(preprocess(p, { ...spec(33, 'crop'), resizeMode: 'stretch' as 'crop' })).rejects.toThrow(RangeError);
  });

  it('a 4000x3000 JPEG preprocesses to 336 in reasonable time', async () => {
    const big = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: '#3080c0' } })
      .composite([{ input: Buffer.from(synthU8(300, 400, 3, 1)), raw: { width: 400, height: 300, channels: 3 }, tile: true }])
      .jpeg({ quality: 90 }).toBuffer();
    const t0 = performance.now();
    const x = await preprocess(big, spec(336, 'crop'));
    const ms = performance.now() - t0;
    console.log(`4000x3000 JPEG -> 336 crop: ${ms.toFixed(0)} ms`);
    expect(x.length).toBe(3 * 336 * 336);
    expect(ms).toBeLessThan(15_000);
  });
});
