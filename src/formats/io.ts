/** Small positional-I/O helpers shared by the format readers and writers. */
import * as fs from 'node:fs';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from './half.js';
import { CheckpointError, numel, type DType } from './tensor.js';

// readSync/writeSync refuse lengths ≥ 2 GiB, so large transfers go in chunks.
const CHUNK = 1 << 30;

/** Fills `dst` from `position`; a short read means the file is shorter than its own structure says. */
export function readExact(fd: number, dst: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < dst.length) {
    const n = fs.readSync(fd, dst, done, Math.min(CHUNK, dst.length - done), position + done);
    if (n === 0) {
      throw new CheckpointError(`${what}: truncated (needed ${dst.length} bytes at offset ${position}, got ${done})`);
    }
    done += n;
  }
}

export function readAt(fd: number, position: number, length: number, what: string): Buffer {
  const buf = Buffer.alloc(length);
  readExact(fd, buf, position, what);
  return buf;
}

export function writeAll(fd: number, src: Uint8Array, position?: number): void {
  let done = 0;
  while (done < src.length) {
    const len = Math.min(CHUNK, src.length - done);
    const n = fs.writeSync(fd, src, done, len, position === undefined ? null : position + done);
    done += n;
  }
}

export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Opens a file for reading, turning "no such file" and friends into a CheckpointError naming the path. */
export function openForRead(path: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CheckpointError(`${path}: no such file`);
    throw new CheckpointError(`${path}: cannot open (${code ?? String(e)})`);
  }
  const st = fs.fstatSync(fd);
  if (!st.isFile()) {
    fs.closeSync(fd);
    throw new CheckpointError(`${path}: not a regular file`);
  }
  return { fd, size: st.size };
}

/** u64 little-endian as a JS number, refusing values past 2^53 (no real file is that big). */
export function u64(buf: Buffer, offset: number, what: string): number {
  const v = buf.readBigUInt64LE(offset);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointError(`${what}: 64-bit value ${v} is implausibly large`);
  return Number(v);
}

/** A tensor to write; `data` may be a thunk so writers can stream one tensor at a time. */
export interface WritableTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly data: Float32Array | (() => Float32Array);
}

export const ITEMSIZE: Readonly<Record<DType, number>> = { F32: 4, F16: 2, BF16: 2 };

/** Float32 values → little-endian bytes of `dtype` (F32 is returned as a view, no copy). */
export function encodeAs(data: Float32Array, dtype: DType): Uint8Array {
  if (dtype === 'F32') return bytesOf(data);
  return bytesOf(dtype === 'F16' ? f32ArrayToF16(data) : f32ArrayToBf16(data));
}

/** Reads `n` elements of `dtype` at `position` straight into a new Float32Array. */
export function readAsF32(fd: number, position: number, n: number, dtype: DType, what: string): Float32Array {
  if (dtype === 'F32') {
    const out = new Float32Array(n);
    readExact(fd, bytesOf(out), position, what);
    return out;
  }
  const raw = new Uint16Array(n);
  readExact(fd, bytesOf(raw), position, what);
  return dtype === 'F16' ? f16ArrayToF32(raw) : bf16ArrayToF32(raw);
}

/** Collects the tensors to write, checking names and sizes before a single byte is written. */
export function planTensors(tensors: Iterable<WritableTensor>, what: string): WritableTensor[] {
  const list = [...tensors];
  const seen = new Set<string>();
  for (const t of list) {
    if (seen.has(t.name)) throw new CheckpointError(`${what}: duplicate tensor name ${t.name}`);
    seen.add(t.name);
    if (!(t.dtype in ITEMSIZE)) throw new CheckpointError(`${what}: tensor ${t.name} has unsupported dtype ${String(t.dtype)}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new CheckpointError(`${what}: tensor ${t.name} has an invalid shape [${t.shape.join(', ')}]`);
    }
  }
  return list;
}

/** Materialises a tensor's data and checks it matches its shape. */
export function tensorData(t: WritableTensor, what: string): Float32Array {
  const data = typeof t.data === 'function' ? t.data() : t.data;
  const n = numel(t.shape);
  if (data.length !== n) {
    throw new CheckpointError(`${what}: tensor ${t.name} has ${data.length} values for shape [${t.shape.join(', ')}] (${n})`);
  }
  return data;
}
