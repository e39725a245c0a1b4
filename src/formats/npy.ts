/**
 * NumPy .npy arrays (format 1.0/2.0/3.0), float only, C order. Reads '<f4', '<f8' and '<f2' into
 * Float32Array; writes '<f4' version 1.0 with the header padded to 64 bytes as numpy does.
 */
import * as fs from 'node:fs';
import { f16ArrayToF32 } from './half.js';
import { bytesOf, openForRead, readExact, writeAll } from './io.js';
import { CheckpointError, numel } from './tensor.js';

export interface NpyArray {
  shape: number[];
  data: Float32Array;
}

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

type PyLiteral = string | number | boolean | null | PyLiteral[] | Map<string, PyLiteral>;

/** Parses the Python dict literal numpy writes as the header (strings, ints, bools, tuples). */
function parseLiteral(text: string, fail: (m: string) => never): PyLiteral {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const value = (): PyLiteral => {
    ws();
    const c = text[i];
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) fail('unterminated string in header');
      const s = text.slice(i + 1, end);
      i = end + 1;
      return s;
    }
    if (c === '(' || c === '[' || c === '{') {
      const close = c === '(' ? ')' : c === '[' ? ']' : '}';
      i++;
      const items: PyLiteral[] = [];
      const dict = new Map<string, PyLiteral>();
      for (;;) {
        ws();
        if (text[i] === close) {
          i++;
          return c === '{' ? dict : items;
        }
        const v = value();
        if (c === '{') {
          ws();
          if (text[i] !== ':' || typeof v !== 'string') fail('malformed dict in header');
          i++;
          dict.set(v as string, value());
        } else items.push(v);
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== close) fail(`unexpected '${text[i] ?? 'end of header'}' in header`);
      }
    }
    const m = /^(True|False|None|-?\d+L?)/.exec(text.slice(i));
    if (!m) fail(`unexpected ${JSON.stringify(text.slice(i, i + 10))} in header`);
    i += m![0].length;
    if (m![0] === 'True') return true;
    if (m![0] === 'False') return false;
    if (m![0] === 'None') return null;
    return Number.parseInt(m![0], 10);
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing characters after the header dict');
  return v;
}

/** Decodes a whole .npy file held in memory; `what` names it in errors. */
export function parseNpy(buf: Uint8Array, what = 'npy'): NpyArray {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  function fail(msg: string): never {
    throw new CheckpointError(`${what}: ${msg}`);
  }
  if (b.length < 10 || !b.subarray(0, 6).equals(MAGIC)) fail('not a .npy file (bad magic)');
  const major = b[6];
  if (major < 1 || major > 3) fail(`unsupported .npy format version ${major}.${b[7]}`);
  const lenSize = major === 1 ? 2 : 4;
  if (b.length < 8 + lenSize) fail('truncated .npy header');
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = 8 + lenSize;
  if (start + hlen > b.length) fail(`truncated .npy header (needs ${hlen} bytes)`);
  const text = b.toString(major === 3 ? 'utf8' : 'latin1', start, start + hlen);
  const header = parseLiteral(text, fail);
  if (!(header instanceof Map)) fail('.npy header is not a dict');
  const h = header as Map<string, PyLiteral>;
  const descr = h.get('descr');
  const fortran = h.get('fortran_order');
  const shape = h.get('shape');
  if (typeof descr !== 'string') fail(".npy header has no 'descr'");
  if (typeof fortran !== 'boolean') fail(".npy header has no boolean 'fortran_order'");
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    fail(`.npy header shape ${JSON.stringify(shape)} is not a tuple of non-negative integers`);
  }
  if (fortran) fail('Fortran-order .npy arrays are not supported (save a C-contiguous array)');
  const dims = shape as number[];
  const itemsize = { '<f4': 4, '<f8': 8, '<f2': 2 }[descr as string];
  if (!itemsize) {
    const hint = (descr as string).startsWith('>') ? ' (big-endian)' : '';
    fail(`unsupported .npy dtype '${descr as string}'${hint}; only '<f4', '<f8' and '<f2' are supported`);
  }
  const n = numel(dims);
  const dataStart = start + hlen;
  const bytes = n * itemsize!;
  if (dataStart + bytes > b.length) {
    fail(`truncated .npy data: shape (${dims.join(', ')}) needs ${bytes} bytes, file has ${b.length - dataStart}`);
  }
  // Copy into an aligned buffer: the header length does not guarantee alignment of the element type.
  const raw = new Uint8Array(bytes);
  raw.set(b.subarray(dataStart, dataStart + bytes));
  let data: Float32Array;
  if (itemsize === 4) data = new Float32Array(raw.buffer);
  else if (itemsize === 8) data = Float32Array.from(new Float64Array(raw.buffer));
  else data = f16ArrayToF32(new Uint16Array(raw.buffer));
  return { shape: dims, data };
}

export function readNpy(path: string): NpyArray {
  const { fd, size } = openForRead(path);
  try {
    const buf = Buffer.alloc(size);
    readExact(fd, buf, 0, path);
    return parseNpy(buf, path);
  } finally {
    fs.closeSync(fd);
  }
}

/** The complete '<f4' v1.0 header (magic through the '\n'), padded so the data starts 64-byte aligned. */
export function npyHeader(shape: readonly number[]): Buffer {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${dims}, }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  const hlen = total - 10;
  if (hlen > 0xffff) throw new RangeError(`npy header too long for format 1.0 (shape has ${shape.length} dims)`);
  const out = Buffer.alloc(total, 0x20);
  MAGIC.copy(out, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(hlen, 8);
  out.write(dict, 10, 'latin1');
  out[total - 1] = 0x0a;
  return out;
}

export function encodeNpy(shape: readonly number[], data: Float32Array): Buffer {
  checkShape(shape, data);
  return Buffer.concat([npyHeader(shape), bytesOf(data)]);
}

export function writeNpy(path: string, shape: readonly number[], data: Float32Array): void {
  checkShape(shape, data);
  const fd = fs.openSync(path, 'w');
  try {
    const header = npyHeader(shape);
    writeAll(fd, header, 0);
    writeAll(fd, bytesOf(data), header.length);
  } finally {
    fs.closeSync(fd);
  }
}

function checkShape(shape: readonly number[], data: Float32Array): void {
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new RangeError(`bad npy shape [${shape.join(', ')}]`);
  if (numel(shape) !== data.length) {
    throw new RangeError(`npy shape [${shape.join(', ')}] needs ${numel(shape)} values, got ${data.length}`);
  }
}
