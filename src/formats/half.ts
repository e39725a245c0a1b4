/**
 * IEEE half (f16) and bfloat16 conversions, done on bit patterns so that results match numpy/torch
 * exactly: round-to-nearest-even, subnormals, ±inf, and NaN kept NaN (quiet, payload truncated).
 * Little-endian hosts are assumed throughout src/formats (typed-array views alias file bytes).
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Bits of the float32 nearest to `x` (doubles are first rounded to float32, as numpy does via float32). */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

export function bitsToF32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0];
}

/** float32 bit pattern → f16 bit pattern, round-to-nearest-even. */
export function f32BitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) {
    // Keep NaN a NaN even when the payload lives only in the low 13 bits (force the quiet bit).
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is subnormal (or rounds up to the smallest normal): count in units of 2^-24.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent, up to 0x7c00 (= inf).
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

/** f16 bit pattern → float32 bit pattern (exact; every f16 is representable). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    // Normalise the subnormal: shift until the implicit bit appears.
    let e = -14;
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | ((e + 127) << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  return (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
}

/** float32 bit pattern → bfloat16 bit pattern, round-to-nearest-even (as torch does). */
export function f32BitsToBf16(b: number): number {
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f16ToF32(h: number): number {
  return bitsToF32(f16BitsToF32Bits(h & 0xffff));
}

export function bf16ToF32(h: number): number {
  return bitsToF32((h & 0xffff) << 16);
}

/** Number → f16 bits; the number is rounded to float32 first. */
export function f32ToF16(x: number): number {
  return f32BitsToF16(f32Bits(x));
}

/** Number → bfloat16 bits; the number is rounded to float32 first. */
export function f32ToBf16(x: number): number {
  return f32BitsToBf16(f32Bits(x));
}

let f16Table: Uint32Array | undefined;

/** All 65536 f16 → f32 bit patterns (256 KiB), built once: bulk conversion becomes a table lookup. */
function f16TableGet(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

function bitsView(dst: Float32Array): Uint32Array {
  return new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
}

function checkLengths(src: { length: number }, dst: { length: number }): void {
  if (dst.length !== src.length) throw new RangeError(`destination has ${dst.length} elements, source ${src.length}`);
}

export function f16ArrayToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  checkLengths(src, dst);
  const table = f16TableGet();
  const out = bitsView(dst);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return dst;
}

export function bf16ArrayToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  checkLengths(src, dst);
  const out = bitsView(dst);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return dst;
}

export function f32ArrayToF16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  checkLengths(src, dst);
  const bits = bitsView(src);
  for (let i = 0; i < src.length; i++) dst[i] = f32BitsToF16(bits[i]);
  return dst;
}

export function f32ArrayToBf16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  checkLengths(src, dst);
  const bits = bitsView(src);
  for (let i = 0; i < src.length; i++) dst[i] = f32BitsToBf16(bits[i]);
  return dst;
}
