import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { resizeBicubic, resizeBicubicRows } from '../../src/image/resample.js';
import { manifest, maxAbsDiff, synthU8, u8 } from './helpers.js';

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
