import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { nearestIndices, resizeBicubic, resizeBicubicRows, resizeNearest } from '../../src/image/resample.js';
import { manifest, maxAbsDiff, synthU8, u16, u8 } from './helpers.js';

const label = (r: (typeof manifest.resample)[number]) => `${r.w}x${r.h}x${r.c} -> ${r.outW}x${r.outH}`;

describe('resizeBicubic vs PIL Image.resize(BICUBIC)', () => {
  it('has the synthetic cases', () => {
    expect(manifest.resample.length).toBeGreaterThanOrEqual(10);
  });

  for (const r of manifest.resample) {
    it(`${label(r)} is bit-exact (max abs error 0)`, () => {
      const src = { width: r.w, height: r.h, channels: r.c, data: synthU8(r.h, r.w, r.c, r.seed) };
      const out = resizeBicubic(src, r.outW, r.outH);
      expect([out.width, out.height, out.channels]).toEqual([r.outW, r.outH, r.c]);
      expect(maxAbsDiff(out.data, u8(r.expected))).toBe(0);
    });
  }

  it('a window equals the same region of the full resize', () => {
    const src = { width: 111, height: 74, channels: 3, data: synthU8(74, 111, 3, 1) };
    const full = resizeBicubic(src, 150, 49);
    const win = resizeBicubic(src, 150, 49, { left: 37, top: 5, width: 61, height: 40 });
    for (let y = 0; y < 40; y++) {
      const a = full.data.subarray(((y + 5) * 150 + 37) * 3, ((y + 5) * 150 + 98) * 3);
      expect(win.data.subarray(y * 61 * 3, (y + 1) * 61 * 3)).toEqual(a);
    }
  });

  it('a row source gives the same result as the array', () => {
    const data = synthU8(74, 111, 3, 1);
    const rows = { width: 111, height: 74, channels: 3, row: (y: number) => data.slice(y * 333, (y + 1) * 333) };
    expect(resizeBicubicRows(rows, 30, 20).data).toEqual(resizeBicubic({ width: 111, height: 74, channels: 3, data }, 30, 20).data);
  });

  it('same size returns an identical copy', () => {
    const data = synthU8(5, 7, 3, 9);
    const out = resizeBicubic({ width: 7, height: 5, channels: 3, data }, 7, 5);
    expect(out.data).toEqual(data);
    expect(out.data).not.toBe(data);
  });

  it('libvips cubic resampling would fail these fixtures (the comparison can discriminate)', async () => {
    // Guards against the fixtures being too easy: a different (also bicubic) resampler must not pass.
    const r = manifest.resample.find((x) => x.outW === 30 && x.outH === 20)!;
    const { data } = await sharp(Buffer.from(synthU8(r.h, r.w, r.c, r.seed)), { raw: { width: r.w, height: r.h, channels: 3 } })
      .resize(r.outW, r.outH, { kernel: 'cubic', fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
    expect(maxAbsDiff(data, u8(r.expected))).toBeGreaterThan(0);
  });

  it('rejects bad sizes and windows', () => {
    const src = { width: 4, height: 4, channels: 3, data: new Uint8Array(48) };
    expect(() => resizeBicubic(src, 0, 4)).toThrow(RangeError);
    expect(() => resizeBicubic(src, 2.5, 4)).toThrow(RangeError);
    expect(() => resizeBicubic(src, 4, 4, { left: 1, top: 0, width: 4, height: 4 })).toThrow(/outside/);
    expect(() => resizeBicubic({ ...src, data: new Uint8Array(10) }, 2, 2)).toThrow(/bytes/);
  });
});

describe('nearestIndices / resizeNearest vs PIL Image.resize(NEAREST) (used for modes "1" and "P")', () => {
  it('has the cases', () => {
    expect(manifest.nearest.length).toBeGreaterThanOrEqual(6);
  });

  for (const n of manifest.nearest) {
    it(`${n.inSize} -> ${n.outSize}: same source positions as PIL`, () => {
      expect(Array.from(nearestIndices(n.inSize, n.outSize))).toEqual(Array.from(u16(n.expected)));
    });
  }

  it('the closed form floor((i + 0.5) * in / out) would fail some cases (PIL accumulates the step)', () => {
    const closed = (i: number, o: number) => Array.from({ length: o }, (_, k) => Math.floor(((k + 0.5) * i) / o));
    const failing = manifest.nearest.filter((n) => closed(n.inSize, n.outSize).some((v, k) => v !== u16(n.expected)[k]));
    expect(failing.map((n) => `${n.inSize}->${n.outSize}`)).toEqual(['52->33', '640->224', '1920->224']);
  });

  it('resizeNearest picks whole pixels at those positions, and a window equals the same region', () => {
    const src = { width: 52, height: 41, channels: 3, data: synthU8(41, 52, 3, 6) };
    const full = resizeNearest(src, 33, 70);
    const xs = nearestIndices(52, 33);
    const ys = nearestIndices(41, 70);
    for (let y = 0; y < 70; y++) {
      for (let x = 0; x < 33; x++) {
        const s = (ys[y]! * 52 + xs[x]!) * 3;
        expect(Array.from(full.data.subarray((y * 33 + x) * 3, (y * 33 + x + 1) * 3))).toEqual(Array.from(src.data.subarray(s, s + 3)));
      }
    }
    const win = resizeNearest(src, 33, 70, { left: 4, top: 19, width: 25, height: 33 });
    for (let y = 0; y < 33; y++) {
      expect(win.data.subarray(y * 75, (y + 1) * 75)).toEqual(full.data.subarray(((y + 19) * 33 + 4) * 3, ((y + 19) * 33 + 29) * 3));
    }
    expect(() => resizeNearest(src, 33, 70, { left: 9, top: 0, width: 25, height: 70 })).toThrow(/outside/);
  });
});
