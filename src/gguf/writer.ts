/**
 * GGUF v3 writer. Layout (ggml's gguf.cpp is the reference): magic "GGUF", u32 version, u64 tensor count,
 * u64 KV count, the KV pairs, the tensor infos, padding to `general.alignment`, then each tensor's bytes,
 * each padded to the alignment so the next one starts aligned.
 *
 * Tensor shapes are given row-major, as PyTorch and safetensors write them ([rows, cols]); GGUF stores ggml's
 * `ne`, which lists the same dimensions innermost-first, so the writer reverses them. Tensor data may be a
 * thunk: the header is computed from shapes alone, then tensors are materialised and written one at a time,
 * so writing a model needs about one tensor of memory, never two copies of the model.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeAs, planTensors, tensorData, writeAll, type WritableTensor } from '../formats/io.js';
import { numel } from '../formats/tensor.js';
import {
  DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufError,
  MAX_DIMS,
  MAX_TENSOR_NAME_BYTES,
  TENSOR_TYPE_CODE,
  TENSOR_TYPE_ITEMSIZE,
  VALUE_TYPE_CODE,
  type GgufScalar,
  type GgufScalarType,
  type GgufValue,
} from './types.js';

export type { WritableTensor } from '../formats/io.js';

const INT_RANGES: Partial<Record<GgufScalarType, [number, number]>> = {
  uint8: [0, 0xff], int8: [-0x80, 0x7f], uint16: [0, 0xffff], int16: [-0x8000, 0x7fff], uint32: [0, 0xffffffff], int32: [-0x80000000, 0x7fffffff],
};
const BIG_RANGES: Partial<Record<GgufScalarType, [bigint, bigint]>> = {
  uint64: [0n, (1n << 64n) - 1n], int64: [-(1n << 63n), (1n << 63n) - 1n],
};
// A lone surrogate cannot be encoded as UTF-8; Buffer.from would silently turn it into U+FFFD.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `v` is not a valid `type` value, or undefined when it is. */
function scalarProblem(type: GgufScalarType, v: unknown): string | undefined {
  const ir = INT_RANGES[type];
  if (ir) {
    if (typeof v !== 'number' || !Number.isInteger(v)) return `expected an integer, got ${describe(v)}`;
    return v < ir[0] || v > ir[1] ? `${v} is outside the ${type} range [${ir[0]}, ${ir[1]}]` : undefined;
  }
  const br = BIG_RANGES[type];
  if (br) {
    if (typeof v === 'number' && !Number.isSafeInteger(v)) return `expected a safe integer or a bigint, got ${describe(v)}`;
    if (typeof v !== 'number' && typeof v !== 'bigint') return `expected an integer, got ${describe(v)}`;
    const b = BigInt(v);
    return b < br[0] || b > br[1] ? `${b} is outside the ${type} range` : undefined;
  }
  if (type === 'float32' || type === 'float64') return typeof v === 'number' ? undefined : `expected a number, got ${describe(v)}`;
  if (type === 'bool') return typeof v === 'boolean' ? undefined : `expected a boolean, got ${describe(v)}`;
  if (type === 'string') {
    if (typeof v !== 'string') return `expected a string, got ${describe(v)}`;
    return LONE_SURROGATE.test(v) ? 'string holds a lone UTF-16 surrogate (not encodable as UTF-8)' : undefined;
  }
  return `unknown value type ${String(type)}`;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return typeof v === 'bigint' ? `bigint ${v}` : `${typeof v} ${String(v)}`;
}

/**
 * Ordered, typed GGUF metadata. Every value is checked against its declared type when it is set, so a
 * bad value fails at the call that made it, naming the key.
 */
export class GgufMetadata {
  private readonly map = new Map<string, GgufValue>();

  set(key: string, value: GgufValue): this {
    if (typeof key !== 'string' || key.length === 0 || !/^[\x21-\x7e]+$/.test(key)) {
      throw new GgufError(`metadata key ${JSON.stringify(key)} must be non-empty printable ASCII without spaces`);
    }
    if (this.map.has(key)) throw new GgufError(`metadata key ${key} is set twice`);
    if (value.type === 'array') {
      if (!(value.itemType in VALUE_TYPE_CODE) || (value.itemType as string) === 'array') {
        throw new GgufError(`metadata ${key}: unsupported array item type ${String(value.itemType)}`);
      }
      for (let i = 0; i < value.value.length; i++) {
        const p = scalarProblem(value.itemType, value.value[i]);
        if (p) throw new GgufError(`metadata ${key}[${i}] (${value.itemType}): ${p}`);
      }
      // Keep a private copy: the caller may reuse its array, and a later mutation would bypass validation.
      this.map.set(key, { type: 'array', itemType: value.itemType, value: Array.from(value.value) });
    } else {
      const p = scalarProblem(value.type, value.value);
      if (p) throw new GgufError(`metadata ${key} (${value.type}): ${p}`);
      this.map.set(key, { type: value.type, value: value.value });
    }
    return this;
  }

  string(key: string, v: string): this { return this.set(key, { type: 'string', value: v }); }
  bool(key: string, v: boolean): this { return this.set(key, { type: 'bool', value: v }); }
  uint32(key: string, v: number): this { return this.set(key, { type: 'uint32', value: v }); }
  int32(key: string, v: number): this { return this.set(key, { type: 'int32', value: v }); }
  float32(key: string, v: number): this { return this.set(key, { type: 'float32', value: v }); }
  uint64(key: string, v: number | bigint): this { return this.set(key, { type: 'uint64', value: v }); }
  array(key: string, itemType: GgufScalarType, values: ArrayLike<GgufScalar>): this {
    return this.set(key, { type: 'array', itemType, value: Array.from(values) });
  }

  get(key: string): GgufValue | undefined { return this.map.get(key); }
  has(key: string): boolean { return this.map.has(key); }
  keys(): string[] { return [...this.map.keys()]; }
  entries(): [string, GgufValue][] { return [...this.map.entries()]; }
  get size(): number { return this.map.size; }
}

/**
 * Growable little-endian byte buffer for the header. Every write reserves its bytes (room) before
 * touching `buf`: room may replace the buffer, so `this.buf.write(v, this.room(n))` would write into the
 * old one.
 */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  /** Reserves n bytes and returns their offset (growing `buf` if needed). */
  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u32(v: number): void {
    const at = this.room(4);
    this.buf.writeUInt32LE(v, at);
  }
  u64(v: number | bigint): void {
    const at = this.room(8);
    this.buf.writeBigUInt64LE(BigInt(v), at);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    const at = this.room(b.length);
    b.copy(this.buf, at);
  }
  pad(alignment: number): void {
    this.room((alignment - (this.length % alignment)) % alignment); // Buffer.alloc zero-fills
  }

  scalar(type: GgufScalarType, v: GgufScalar): void {
    if (type === 'string') return this.str(v as string);
    const n = type === 'uint8' || type === 'int8' || type === 'bool' ? 1 : type === 'uint16' || type === 'int16' ? 2 : type === 'float64' || type === 'uint64' || type === 'int64' ? 8 : 4;
    const at = this.room(n);
    const b = this.buf;
    switch (type) {
      case 'uint8': b.writeUInt8(v as number, at); break;
      case 'int8': b.writeInt8(v as number, at); break;
      case 'bool': b.writeUInt8(v ? 1 : 0, at); break;
      case 'uint16': b.writeUInt16LE(v as number, at); break;
      case 'int16': b.writeInt16LE(v as number, at); break;
      case 'uint32': b.writeUInt32LE(v as number, at); break;
      case 'int32': b.writeInt32LE(v as number, at); break;
      case 'float32': b.writeFloatLE(v as number, at); break;
      case 'float64': b.writeDoubleLE(v as number, at); break;
      case 'uint64': b.writeBigUInt64LE(BigInt(v as number | bigint), at); break;
      case 'int64': b.writeBigInt64LE(BigInt(v as number | bigint), at); break;
    }
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

export interface WriteGgufOptions {
  /** Called after each tensor is written (for progress output on large models). */
  onTensor?: (name: string, index: number, total: number) => void;
}

export interface WriteGgufResult {
  path: string;
  bytes: number;
  tensorCount: number;
  /** File offset of the tensor data section. */
  dataOffset: number;
}

/** The alignment the file will use: `general.alignment` when set (must be a uint32 power of two), else 32. */
function alignmentOf(metadata: GgufMetadata): number {
  const a = metadata.get('general.alignment');
  if (a === undefined) return DEFAULT_ALIGNMENT;
  const v = a.value as number;
  if (a.type !== 'uint32' || v === 0 || (v & (v - 1)) !== 0) {
    throw new GgufError(`general.alignment must be a uint32 power of two (llama.cpp refuses anything else), got ${a.type} ${String(a.value)}`);
  }
  return v;
}

/**
 * Writes a GGUF v3 file. `general.alignment` is added (32) unless the metadata already sets it. The file
 * is written under a temporary name and renamed at the end, so a failed or interrupted write never
 * leaves a truncated model at `outPath`.
 */
export function writeGguf(outPath: string, metadata: GgufMetadata, tensors: Iterable<WritableTensor>, options: WriteGgufOptions = {}): WriteGgufResult {
  const list = planTensors(tensors, outPath);
  for (const t of list) {
    const nameBytes = Buffer.byteLength(t.name, 'utf8');
    if (nameBytes === 0 || nameBytes > MAX_TENSOR_NAME_BYTES) {
      throw new GgufError(`${outPath}: tensor name ${JSON.stringify(t.name)} is ${nameBytes} bytes; llama.cpp accepts 1 to ${MAX_TENSOR_NAME_BYTES}`);
    }
    if (t.shape.length < 1 || t.shape.length > MAX_DIMS || t.shape.some((d) => d < 1)) {
      throw new GgufError(`${outPath}: tensor ${t.name} has shape [${t.shape.join(', ')}]; GGUF tensors have 1 to ${MAX_DIMS} dimensions, each at least 1`);
    }
  }
  const alignment = alignmentOf(metadata);
  const kvs = metadata.entries();
  if (!metadata.has('general.alignment')) kvs.push(['general.alignment', { type: 'uint32', value: alignment }]);

  const h = new Bytes();
  h.u32(GGUF_MAGIC);
  h.u32(GGUF_VERSION);
  h.u64(list.length);
  h.u64(kvs.length);
  for (const [key, v] of kvs) {
    h.str(key);
    h.u32(VALUE_TYPE_CODE[v.type]);
    if (v.type === 'array') {
      h.u32(VALUE_TYPE_CODE[v.itemType]);
      h.u64(v.value.length);
      for (const item of v.value) h.scalar(v.itemType, item);
    } else {
      h.scalar(v.type, v.value);
    }
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const t of list) {
    h.str(t.name);
    h.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) h.u64(t.shape[i]!);
    h.u32(TENSOR_TYPE_CODE[t.dtype]);
    h.u64(offset);
    const size = numel(t.shape) * TENSOR_TYPE_ITEMSIZE[t.dtype];
    sizes.push(size);
    offset += Math.ceil(size / alignment) * alignment;
  }
  if (list.length > 0) h.pad(alignment);
  const header = h.bytes();

  const dir = path.dirname(path.resolve(outPath));
  if (!fs.existsSync(dir)) throw new GgufError(`${outPath}: directory ${dir} does not exist`);
  const tmp = path.join(dir, `.${path.basename(outPath)}.partial-${process.pid}`);
  const fd = fs.openSync(tmp, 'w');
  try {
    writeAll(fd, header, 0);
    let pos = header.length;
    const zeros = Buffer.alloc(alignment);
    list.forEach((t, i) => {
      const bytes = encodeAs(tensorData(t, outPath), t.dtype);
      writeAll(fd, bytes, pos);
      pos += bytes.length;
      const padding = (alignment - (sizes[i]! % alignment)) % alignment;
      // The last tensor is padded too, as gguf.cpp does: the data section is a whole number of aligned slots.
      writeAll(fd, zeros.subarray(0, padding), pos);
      pos += padding;
      options.onTensor?.(t.name, i, list.length);
    });
    fs.closeSync(fd);
    fs.renameSync(tmp, outPath);
    return { path: outPath, bytes: pos, tensorCount: list.length, dataOffset: header.length };
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
