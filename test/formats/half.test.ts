import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  bf16ArrayToF32,
  bf16ToF32,
  bitsToF32,
  f16ArrayToF32,
  f16ToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32BitsToBf16,
  f32BitsToF16,
  f32ToBf16,
  f32ToF16,
} from '../../src/formats/half.js';
import { fixture } from './helpers.js';

/** Produced by numpy (astype(np.float16)) and torch (.to(torch.bfloat16)) in make_fixtures.py. */
const cases = JSON.parse(fs.readFileSync(fixture('half_cases.json'), 'utf8')) as Record<string, number[]>;

const isF16NaN = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isBf16NaN = (h: number): boolean => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

describe('half precision: known bit patterns', () => {
  it('f32 → f16 rounds to nearest even and handles the edges', () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(0)).toBe(0);
    expect(f32ToF16(-0)).toBe(0x8000);
    expect(f32ToF16(65504)).toBe(0x7bff); // max finite
    expect(f32ToF16(65519)).toBe(0x7bff); // below the tie
    expect(f32ToF16(65520)).toBe(0x7c00); // tie with an odd mantissa → rounds up to inf
    expect(f32ToF16(1e9)).toBe(0x7c00);
    expect(f32ToF16(-Infinity)).toBe(0xfc00);
    expect(isF16NaN(f32ToF16(NaN))).toBe(true);
    expect(f32ToF16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16(2 ** -25)).toBe(0x0000); // tie → even (0)
    expect(f32ToF16(1.5 * 2 ** -25)).toBe(0x0001);
    expect(f32ToF16(3 * 2 ** -25)).toBe(0x0002); // tie 1.5 units → even (2)
    expect(f32ToF16(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f32ToF16(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up out of the subnormals
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(f32ToF16(1e-45)).toBe(0); // float32 subnormal
  });

  it('f16 → f32 is exact', () => {
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0x3555)).toBe(0.333251953125);
    expect(f16ToF32(0x7bff)).toBe(65504);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16ToF32(0x8000)).toBe(-0);
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
    expect(f16ToF32(0x7c00)).toBe(Infinity);
    expect(f16ToF32(0xfc00)).toBe(-Infinity);
    expect(f16ToF32(0x7e00)).toBeNaN();
    expect(f16ToF32(0x7c01)).toBeNaN();
  });

  it('bfloat16 both ways', () => {
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(bf16ToF32(0xc040)).toBe(-3);
    expect(bf16ToF32(0x7f80)).toBe(Infinity);
    expect(bf16ToF32(0x0001)).toBe(2 ** -133);
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie → even (up)
    expect(f32ToBf16(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(f32ToBf16(3.4028234663852886e38)).toBe(0x7f80); // max float rounds to inf
    expect(isBf16NaN(f32ToBf16(NaN))).toBe(true);
    expect(isBf16NaN(f32BitsToBf16(0x7f800001))).toBe(true); // NaN payload only in the low bits stays NaN
    expect(isF16NaN(f32BitsToF16(0x7f800001))).toBe(true);
  });
});

describe('half precision against numpy / torch', () => {
  const { f32_bits: inBits, f16_bits: f16Bits, bf16_bits: bf16Bits, f16_in: f16In, f16_to_f32_bits: f16Out } = cases;

  it(`f32 → f16 matches numpy on ${inBits.length} values`, () => {
    expect(inBits.length).toBeGreaterThan(1000);
    const bad: string[] = [];
    inBits.forEach((b, i) => {
      const got = f32BitsToF16(b);
      const want = f16Bits[i];
      const ok = isF16NaN(want) ? isF16NaN(got) : got === want;
      if (!ok) bad.push(`0x${b.toString(16)} (${bitsToF32(b)}): got 0x${got.toString(16)}, numpy 0x${want.toString(16)}`);
    });
    expect(bad.slice(0, 10)).toEqual([]);
  });

  it(`f32 → bf16 matches torch on ${inBits.length} values`, () => {
    const bad: string[] = [];
    inBits.forEach((b, i) => {
      const got = f32BitsToBf16(b);
      const want = bf16Bits[i];
      if (isBf16NaN(want) ? !isBf16NaN(got) : got !== want) bad.push(`0x${b.toString(16)}: got ${got}, torch ${want}`);
    });
    expect(bad.slice(0, 10)).toEqual([]);
  });

  it('f16 → f32 matches numpy bit for bit (NaN payloads included)', () => {
    const got = new Uint32Array(f16ArrayToF32(Uint16Array.from(f16In)).buffer);
    expect(Array.from(got)).toEqual(f16Out);
  });

  it('bulk converters agree with the scalar ones', () => {
    const src = new Float32Array(new Uint32Array(inBits).buffer);
    const h = f32ArrayToF16(src);
    const bf = f32ArrayToBf16(src);
    inBits.forEach((b, i) => {
      expect(h[i]).toBe(f32BitsToF16(b));
      expect(bf[i]).toBe(f32BitsToBf16(b));
    });
    const back = bf16ArrayToF32(bf);
    for (let i = 0; i < bf.length; i++) if (!isBf16NaN(bf[i])) expect(back[i]).toBe(bf16ToF32(bf[i]));
    expect(() => f16ArrayToF32(new Uint16Array(3), new Float32Array(2))).toThrow(/destination has 2 elements/);
  });
});

describe('half precision, exhaustive over all 65536 f16 values', () => {
  /** The textbook definition, independent of the bit-twiddling under test. */
  function reference(h: number): number {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0x1f) return m ? NaN : s * Infinity;
    return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
  }

  it('f16 → f32 equals the definition, and f32 → f16 inverts it', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = f16ArrayToF32(all);
    for (let h = 0; h < 65536; h++) {
      const want = reference(h);
      if (Number.isNaN(want)) {
        expect(wide[h]).toBeNaN();
        expect(isF16NaN(f32ToF16(wide[h]))).toBe(true);
      } else {
        if (!Object.is(wide[h], want)) expect(`${h}: ${wide[h]}`).toBe(`${h}: ${want}`);
        if (f32ToF16(want) !== h) expect(`${h} → ${f32ToF16(want)}`).toBe(`${h} → ${h}`);
      }
    }
  });

  it('every midpoint between adjacent finite f16 values rounds to the even neighbour', () => {
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (reference(h) + reference(h + 1)) / 2; // exact in float32 (f16 has 11 significant bits)
      const even = h % 2 === 0 ? h : h + 1;
      if (f32ToF16(mid) !== even) expect(`mid ${h}/${h + 1} → ${f32ToF16(mid)}`).toBe(`→ ${even}`);
      if (f32ToF16(-mid) !== (even | 0x8000)) expect(`-mid ${h} → ${f32ToF16(-mid)}`).toBe(`→ ${even | 0x8000}`);
    }
  });
});
