/**
 * safetensors: u64le header length N, N bytes of JSON header, then the data section. Only the header
 * is parsed up front (and validated as strictly as the reference implementation); tensor bytes are
 * read on demand at their offsets.
 */
import * as fs from 'node:fs';
import { CheckpointError, numel, type DType, type TensorInfo, type TensorReader } from './tensor.js';
import {
  encodeAs,
  ITEMSIZE,
  openForRead,
  planTensors,
  readAsF32,
  readAt,
  tensorData,
  writeAll,
  type WritableTensor,
} from './io.js';

/** The reference implementation's limit; a larger "header" means the file is not safetensors. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Every dtype the format defines, with its item size: non-float tensors are validated, then set aside. */
const KNOWN_DTYPES: Readonly<Record<string, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

interface Entry {
  info: TensorInfo;
  begin: number;
  end: number;
}

export class SafetensorsReader implements TensorReader {
  readonly source: string;
  /** The `__metadata__` string map (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /**
   * Tensors of other dtypes (e.g. the int64 `position_ids` buffer older transformers saved): valid
   * entries, but not weights, so they are left out of names() like the torch reader does.
   */
  readonly skipped: readonly { name: string; dtype: string }[];
  private readonly entries: Map<string, Entry>;
  private fd: number | undefined;
  private readonly dataStart: number;

  private constructor(path: string, fd: number, header: ReturnType<typeof parseHeader>) {
    this.source = path;
    this.fd = fd;
    this.dataStart = header.dataStart;
    this.entries = header.entries;
    this.metadata = header.metadata;
    this.skipped = header.skipped;
  }

  static open(path: string): SafetensorsReader {
    const { fd, size } = openForRead(path);
    try {
      return new SafetensorsReader(path, fd, parseHeader(path, fd, size));
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  info(name: string): TensorInfo | undefined {
    return this.entries.get(name)?.info;
  }

  readF32(name: string): Float32Array {
    const e = this.entries.get(name);
    if (!e) {
      const sk = this.skipped.find((x) => x.name === name);
      throw new CheckpointError(`${this.source}: ${sk ? `tensor ${name} has dtype ${sk.dtype}; only F32, F16 and BF16 tensors are read` : `no tensor named ${name}`}`);
    }
    if (this.fd === undefined) throw new CheckpointError(`${this.source}: reader already closed`);
    return readAsF32(this.fd, this.dataStart + e.begin, numel(e.info.shape), e.info.dtype, this.source);
  }

  close(): void {
    if (this.fd !== undefined) {
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseHeader(path: string, fd: number, fileSize: number) {
  function fail(msg: string): never {
    throw new CheckpointError(`${path}: ${msg}`);
  }
  if (fileSize < 8) fail(`not a safetensors file (only ${fileSize} bytes; truncated?)`);
  const n64 = readAt(fd, 0, 8, path).readBigUInt64LE(0);
  if (n64 > BigInt(MAX_HEADER_BYTES)) fail(`safetensors header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte limit (not safetensors or corrupt)`);
  const n = Number(n64);
  if (8 + n > fileSize) fail(`safetensors header length ${n} is larger than the file (${fileSize} bytes; truncated?)`);
  let header: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(readAt(fd, 8, n, path));
    header = JSON.parse(text);
  } catch (e) {
    fail(`safetensors header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(header)) return fail('safetensors header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const entries = new Map<string, Entry>();
  const skipped: { name: string; dtype: string }[] = [];
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(v)) fail('__metadata__ must be an object of strings');
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (typeof s !== 'string') fail(`__metadata__ entry ${k} is not a string`);
      }
      // fromEntries defines own properties, so a '__proto__' key stays data and never becomes a prototype.
      metadata = Object.fromEntries(Object.entries(v as Record<string, string>));
      continue;
    }
    if (!isPlainObject(v)) return fail(`tensor ${name}: header entry is not an object`);
    const { dtype, shape, data_offsets: offs } = v;
    if (typeof dtype !== 'string') fail(`tensor ${name}: missing dtype`);
    if (!Object.hasOwn(KNOWN_DTYPES, dtype as string)) fail(`tensor ${name} has unknown dtype ${dtype as string}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor ${name}: data_offsets ${JSON.stringify(offs)} is not a pair of non-negative integers`);
    }
    const [begin, end] = offs as number[];
    const dt = dtype as string;
    const bytes = numel(shape as number[]) * KNOWN_DTYPES[dt]!;
    if (!Number.isSafeInteger(bytes)) fail(`tensor ${name}: shape ${JSON.stringify(shape)} is implausibly large`);
    if (end < begin || end > dataLen) {
      fail(`tensor ${name}: data_offsets [${begin}, ${end}] lie outside the ${dataLen}-byte data section (truncated or corrupt)`);
    }
    if (end - begin !== bytes) {
      fail(`tensor ${name}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dt}${JSON.stringify(shape)} needs ${bytes}`);
    }
    spans.push({ name, begin, end });
    if (dt in ITEMSIZE) entries.set(name, { info: { name, dtype: dt as DType, shape: shape as number[] }, begin, end });
    else skipped.push({ name, dtype: dt });
  }
  const sorted = spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.begin < prev.end) fail(`tensors ${prev.name} and ${cur.name} have overlapping data_offsets`);
  }
  return { dataStart, entries, metadata, skipped };
}

/**
 * Writes tensors (converted to each one's dtype) in the given order. The header is computed from the
 * shapes first; tensor data (a thunk is called only when its turn comes) is then streamed one by one.
 */
export function writeSafetensors(path: string, tensors: Iterable<WritableTensor>, metadata?: Readonly<Record<string, string>>): void {
  const list = planTensors(tensors, path);
  const fields: [string, unknown][] = [];
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new CheckpointError(`${path}: metadata ${k} is not a string`);
    }
    fields.push(['__metadata__', Object.fromEntries(Object.entries(metadata))]);
  }
  let offset = 0;
  for (const t of list) {
    if (t.name === '__metadata__') throw new CheckpointError(`${path}: a tensor cannot be named __metadata__`);
    const bytes = numel(t.shape) * ITEMSIZE[t.dtype];
    fields.push([t.name, { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] }]);
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(Object.fromEntries(fields)), 'utf8');
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  const padded = Math.ceil(json.length / 8) * 8;
  json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length), 0);
  const fd = fs.openSync(path, 'w');
  try {
    let pos = 0;
    for (const chunk of [prefix, json]) {
      writeAll(fd, chunk, pos);
      pos += chunk.length;
    }
    for (const t of list) {
      const bytes = encodeAs(tensorData(t, path), t.dtype);
      writeAll(fd, bytes, pos);
      pos += bytes.length;
    }
    fs.closeSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(path, { force: true });
    throw e;
  }
}
