/**
 * A small GGUF reader for what this project needs at run time: the metadata, the tensor table, and F32 /
 * F16 / BF16 tensor data (whole tensors or selected rows, e.g. token-embedding rows for injection tests).
 * Only the header is parsed up front; tensor bytes are read on demand at their offsets. Counts and
 * lengths are checked against the file size before anything is allocated, so a corrupt file fails with a
 * message instead of an out-of-memory crash.
 */
import * as fs from 'node:fs';
import { bf16ArrayToF32, f16ArrayToF32 } from '../formats/half.js';
import { bytesOf, readExact } from '../formats/io.js';
import { numel } from '../formats/tensor.js';
import {
  DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GgufError,
  MAX_DIMS,
  TENSOR_TYPE_CODE,
  TENSOR_TYPE_ITEMSIZE,
  VALUE_TYPE_BY_CODE,
  type GgufScalar,
  type GgufScalarType,
  type GgufTensorType,
  type GgufValue,
} from './types.js';

export interface GgufTensorEntry {
  readonly name: string;
  /** Row-major shape (ggml's `ne` reversed). */
  readonly shape: readonly number[];
  /** Undefined for ggml types this reader cannot decode (quantised types); such tensors are listed, not read. */
  readonly type: GgufTensorType | undefined;
  readonly typeCode: number;
  /** Offset of the data from the start of the data section. */
  readonly offset: number;
}

const TYPE_BY_CODE = new Map(Object.entries(TENSOR_TYPE_CODE).map(([k, v]) => [v, k as GgufTensorType]));
const SCALAR_SIZE: Partial<Record<GgufScalarType, number>> = {
  uint8: 1, int8: 1, bool: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, uint64: 8, int64: 8, float64: 8,
};

/** Thrown when the header continues past the bytes read so far: the caller reads more and parses again. */
class NeedMore extends Error {}

/** Sequential cursor over the header bytes (a prefix of the file; the header has no length field). */
class Cursor {
  pos = 0;
  constructor(private readonly buf: Buffer, private readonly fileSize: number, private readonly what: string) {}

  need(n: number): number {
    if (this.pos + n > this.buf.length) {
      if (this.buf.length < this.fileSize) throw new NeedMore();
      throw new GgufError(`${this.what}: truncated header (needed ${n} bytes at offset ${this.pos})`);
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }
  u32(): number { return this.buf.readUInt32LE(this.need(4)); }
  /** A u64 count or size; anything past the remaining bytes is corruption, so it must fit a JS number. */
  u64(): number {
    const v = this.buf.readBigUInt64LE(this.need(8));
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(`${this.what}: 64-bit value ${v} at offset ${this.pos - 8} is implausibly large`);
    return Number(v);
  }
  count(itemBytes: number, label: string): number {
    const n = this.u64();
    if (n * itemBytes > this.fileSize - this.pos) throw new GgufError(`${this.what}: ${label} count ${n} does not fit in the file (corrupt?)`);
    return n;
  }
  str(): string {
    const n = this.count(1, 'string length');
    const at = this.need(n);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(this.buf.subarray(at, at + n));
    } catch {
      throw new GgufError(`${this.what}: string at offset ${at} is not valid UTF-8`);
    }
  }
  scalar(type: GgufScalarType): GgufScalar {
    const b = this.buf;
    switch (type) {
      case 'uint8': return b.readUInt8(this.need(1));
      case 'int8': return b.readInt8(this.need(1));
      case 'uint16': return b.readUInt16LE(this.need(2));
      case 'int16': return b.readInt16LE(this.need(2));
      case 'uint32': return b.readUInt32LE(this.need(4));
      case 'int32': return b.readInt32LE(this.need(4));
      case 'float32': return b.readFloatLE(this.need(4));
      case 'float64': return b.readDoubleLE(this.need(8));
      case 'bool': return b.readUInt8(this.need(1)) !== 0;
      case 'string': return this.str();
      case 'uint64': return b.readBigUInt64LE(this.need(8));
      case 'int64': return b.readBigInt64LE(this.need(8));
    }
  }
  valueType(): GgufScalarType | 'array' {
    const code = this.u32();
    const t = VALUE_TYPE_BY_CODE.get(code);
    if (!t) throw new GgufError(`${this.what}: unknown metadata value type ${code} at offset ${this.pos - 4}`);
    return t;
  }
}

export class GgufFile {
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: ReadonlyMap<string, GgufTensorEntry>;
  readonly alignment: number;
  readonly dataOffset: number;
  private fd: number | undefined;

  private constructor(readonly path: string, fd: number, size: number, head: Buffer) {
    this.fd = fd;
    const c = new Cursor(head, size, path);
    if (size < 8 || c.u32() !== GGUF_MAGIC) throw new GgufError(`${path}: not a GGUF file (bad magic)`);
    this.version = c.u32();
    if (this.version !== 2 && this.version !== 3) throw new GgufError(`${path}: GGUF version ${this.version} is not supported (2 or 3)`);
    const nTensors = c.u64();
    const nKv = c.u64();
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = c.str();
      if (metadata.has(key)) throw new GgufError(`${path}: duplicate metadata key ${key}`);
      const type = c.valueType();
      if (type === 'array') {
        const itemType = c.valueType();
        if (itemType === 'array') throw new GgufError(`${path}: metadata ${key} is a nested array (not supported)`);
        const n = c.count(SCALAR_SIZE[itemType] ?? 8, `metadata ${key} array`);
        const value: GgufScalar[] = new Array(n);
        for (let j = 0; j < n; j++) value[j] = c.scalar(itemType);
        metadata.set(key, { type: 'array', itemType, value });
      } else {
        metadata.set(key, { type, value: c.scalar(type) });
      }
    }
    const al = metadata.get('general.alignment');
    this.alignment = al === undefined ? DEFAULT_ALIGNMENT : (al.value as number);
    if (al && (al.type !== 'uint32' || this.alignment === 0 || (this.alignment & (this.alignment - 1)) !== 0)) {
      throw new GgufError(`${path}: general.alignment must be a uint32 power of two`);
    }
    const tensors = new Map<string, GgufTensorEntry>();
    for (let i = 0; i < nTensors; i++) {
      const name = c.str();
      const nDims = c.u32();
      if (nDims < 1 || nDims > MAX_DIMS) throw new GgufError(`${path}: tensor ${name} has ${nDims} dimensions`);
      const ne: number[] = [];
      for (let d = 0; d < nDims; d++) ne.push(c.u64());
      const typeCode = c.u32();
      const offset = c.u64();
      if (tensors.has(name)) throw new GgufError(`${path}: duplicate tensor ${name}`);
      if (offset % this.alignment !== 0) throw new GgufError(`${path}: tensor ${name} offset ${offset} is not ${this.alignment}-byte aligned`);
      tensors.set(name, { name, shape: ne.reverse(), type: TYPE_BY_CODE.get(typeCode), typeCode, offset });
    }
    this.dataOffset = Math.ceil(c.pos / this.alignment) * this.alignment;
    for (const t of tensors.values()) {
      if (t.type && this.dataOffset + t.offset + numel(t.shape) * TENSOR_TYPE_ITEMSIZE[t.type] > size) {
        throw new GgufError(`${path}: tensor ${t.name} lies past the end of the file (truncated?)`);
      }
    }
    this.metadata = metadata;
    this.tensors = tensors;
  }

  static open(path: string): GgufFile {
    let fd: number;
    try {
      fd = fs.openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new GgufError(code === 'ENOENT' ? `${path}: no such file` : `${path}: cannot open (${code ?? String(e)})`);
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new GgufError(`${path}: not a regular file`);
      // Start with 1 MiB and double while the header runs past it (a 150k-token vocabulary is a few MiB).
      for (let n = Math.min(st.size, 1 << 20); ; n = Math.min(st.size, n * 2)) {
        const head = Buffer.alloc(n);
        readExact(fd, head, 0, path);
        try {
          return new GgufFile(path, fd, st.size, head);
        } catch (e) {
          if (!(e instanceof NeedMore)) throw e;
        }
      }
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** A scalar metadata value, or undefined when absent. */
  value(key: string): GgufScalar | undefined {
    const v = this.metadata.get(key);
    return v === undefined || v.type === 'array' ? undefined : v.value;
  }

  private entry(name: string): GgufTensorEntry & { type: GgufTensorType } {
    const t = this.tensors.get(name);
    if (!t) throw new GgufError(`${this.path}: no tensor named ${name}`);
    if (!t.type) throw new GgufError(`${this.path}: tensor ${name} has ggml type ${t.typeCode}; only F32, F16 and BF16 are read`);
    return t as GgufTensorEntry & { type: GgufTensorType };
  }

  private readElements(t: GgufTensorEntry & { type: GgufTensorType }, first: number, count: number): Float32Array {
    if (this.fd === undefined) throw new GgufError(`${this.path}: reader already closed`);
    const size = TENSOR_TYPE_ITEMSIZE[t.type];
    const pos = this.dataOffset + t.offset + first * size;
    if (t.type === 'F32') {
      const out = new Float32Array(count);
      readExact(this.fd, bytesOf(out), pos, this.path);
      return out;
    }
    const raw = new Uint16Array(count);
    readExact(this.fd, bytesOf(raw), pos, this.path);
    return t.type === 'F16' ? f16ArrayToF32(raw) : bf16ArrayToF32(raw);
  }

  /** A whole tensor, row-major, widened to float32. */
  readF32(name: string): Float32Array {
    const t = this.entry(name);
    return this.readElements(t, 0, numel(t.shape));
  }

  /** Rows of a 2-D tensor (e.g. token ids of token_embd.weight), concatenated: [rows.length, cols]. */
  readRowsF32(name: string, rows: readonly number[]): Float32Array {
    const t = this.entry(name);
    if (t.shape.length !== 2) throw new GgufError(`${this.path}: tensor ${name} is not 2-D (shape [${t.shape.join(', ')}])`);
    const [nRows, cols] = t.shape as [number, number];
    const out = new Float32Array(rows.length * cols);
    rows.forEach((r, i) => {
      if (!Number.isInteger(r) || r < 0 || r >= nRows) throw new GgufError(`${this.path}: row ${r} is out of range for ${name} (${nRows} rows)`);
      out.set(this.readElements(t, r * cols, cols), i * cols);
    });
    return out;
  }

  close(): void {
    if (this.fd !== undefined) {
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

/**
 * The token-embedding rows of `ids` from a GGUF LLM ([ids.length, n_embd], float32): what evaluating
 * those token ids feeds into the first layer, so injecting them must reproduce the token path's logits.
 */
export function readTokenEmbeddings(ggufPath: string, ids: readonly number[]): Float32Array {
  const f = GgufFile.open(ggufPath);
  try {
    return f.readRowsF32('token_embd.weight', ids);
  } finally {
    f.close();
  }
}
