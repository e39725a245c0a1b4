import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'image');
export const inputPath = (name: string) => join(FIXTURES, 'inputs', name);

export interface ArrayRef {
  offset: number;
  length: number;
  dtype: 'uint8' | 'uint16' | 'float32';
  shape: number[];
  delta?: boolean;
}

export interface Manifest {
  pil: string;
  torch: string;
  mean: [number, number, number];
  std: [number, number, number];
  normTable: ArrayRef;
  decode: { input: string; pilMode: string; rgb: ArrayRef }[];
  cases: {
    input: string; mode: 'crop' | 'pad'; size: number; sha256: string; u8?: ArrayRef; f32?: ArrayRef;
    /** Crop cases: whether converting to RGB before Resize (the old reading) gives different pixels in PIL. */
    convertFirstDiffers?: boolean;
  }[];
  resample: { w: number; h: number; c: number; seed: number; outW: number; outH: number; expected: ArrayRef }[];
  /** PIL NEAREST source positions for an inSize -> outSize resize. */
  nearest: { inSize: number; outSize: number; expected: ArrayRef }[];
}

export const manifest: Manifest = JSON.parse(readFileSync(join(FIXTURES, 'expected.json'), 'utf8'));
const blob = gunzipSync(readFileSync(join(FIXTURES, 'expected.bin.gz')));

export function u8(ref: ArrayRef): Uint8Array {
  if (ref.dtype !== 'uint8') throw new Error(`expected uint8, got ${ref.dtype}`);
  const a = Uint8Array.from(blob.subarray(ref.offset, ref.offset + ref.length));
  if (ref.delta) {
    // Stored as differences mod 256 along W of an [H,W,C] array.
    const [h, w, c] = ref.shape as [number, number, number];
    for (let y = 0; y < h; y++) {
      for (let x = 1; x < w; x++) {
        for (let ch = 0; ch < c; ch++) {
          const i = (y * w + x) * c + ch;
          a[i] = (a[i]! + a[i - c]!) & 255;
        }
      }
    }
  }
  return a;
}

export function u16(ref: ArrayRef): Uint16Array {
  if (ref.dtype !== 'uint16') throw new Error(`expected uint16, got ${ref.dtype}`);
  const b = blob.subarray(ref.offset, ref.offset + ref.length);
  return Uint16Array.from({ length: ref.length / 2 }, (_, i) => b.readUInt16LE(i * 2));
}

export function f32(ref: ArrayRef): Float32Array {
  if (ref.dtype !== 'float32') throw new Error(`expected float32, got ${ref.dtype}`);
  return new Float32Array(Uint8Array.from(blob.subarray(ref.offset, ref.offset + ref.length)).buffer);
}

/** Same generator as synth_u8 in make_pil_fixtures.py. */
export function synthU8(h: number, w: number, c: number, seed: number): Uint8Array {
  const out = new Uint8Array(h * w * c);
  for (let k = 0; k < out.length; k++) {
    const i = k + seed * 7919;
    out[k] = Math.floor(((i * 1103515245 + 12345) % 2147483648) / 65536) & 255;
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Fraction of elements that differ at all. */
export function diffFraction(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n / a.length;
}
