/**
 * The GGUF writer, read back by two readers that share no code with it: node-llama-cpp's
 * readGgufFileInfo (metadata, tensor table and data offset; tensor bytes read at those offsets) and
 * llama.cpp's own gguf-py GGUFReader (skipped, visibly, where python3+numpy or the bundle are missing).
 * Metadata of every value type and tensors of odd byte sizes (so padding matters) must come back
 * identical. Also: our own reader, and every bad input failing with a message that names it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readGgufFileInfo } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16, bf16ToF32, f32ToBf16 } from '../../src/formats/half.js';
import { GgufFile } from '../../src/gguf/reader.js';
import { GgufError } from '../../src/gguf/types.js';
import { GgufMetadata, writeGguf, type WritableTensor } from '../../src/gguf/writer.js';
import { dumpWithGgufPy, ggufPy, scratchDir } from './helpers.js';

let dir: string;
let file: string;

const meta = new GgufMetadata()
  .string('general.architecture', 'llama')
  .string('general.name', 'writer test — ünïcödé ✓ 🦙')
  .set('test.u8', { type: 'uint8', value: 255 })
  .set('test.i8', { type: 'int8', value: -128 })
  .set('test.u16', { type: 'uint16', value: 65535 })
  .set('test.i16', { type: 'int16', value: -32768 })
  .uint32('test.u32', 4294967295)
  .int32('test.i32', -2147483648)
  .float32('test.f32', 0.1)
  .set('test.f64', { type: 'float64', value: Math.PI })
  .bool('test.bool_true', true)
  .bool('test.bool_false', false)
  .uint64('test.u64', 18446744073709551615n)
  .set('test.i64', { type: 'int64', value: -9223372036854775808n })
  .string('test.empty_string', '')
  .array('test.strings', 'string', ['a', '', '▁hello', '<0x0A>', '日本語', 'x'.repeat(1000)])
  .array('test.ints', 'int32', [1, -2, 3, 2147483647])
  .array('test.floats', 'float32', [0.5, -1.25, 3.4028234663852886e38, 1e-45])
  .array('test.u8s', 'uint8', [0, 1, 255])
  .array('test.bools', 'bool', [true, false, true])
  .array('test.u64s', 'uint64', [0, 2n ** 63n])
  .array('test.empty', 'int32', []);

function values(n: number, scale: number, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 1.7 + offset) * scale));
}

// Odd byte sizes (60, 14, 6, …) so that every tensor after the first needs padding to 32.
const tensors: WritableTensor[] = [
  { name: 'a.f32_3x5', shape: [3, 5], dtype: 'F32', data: values(15, 3) },
  { name: 'b.f16_7', shape: [7], dtype: 'F16', data: values(7, 100, 1) },
  { name: 'c.bf16_3', shape: [3], dtype: 'BF16', data: values(3, 1e20, 2) },
  { name: 'd.f32_2x3x4', shape: [2, 3, 4], dtype: 'F32', data: () => values(24, 1, 3) },
  { name: 'e.f16_1x2x3x5', shape: [1, 2, 3, 5], dtype: 'F16', data: () => values(30, 0.001, 4) },
  { name: 'f.f32_1', shape: [1], dtype: 'F32', data: Float32Array.of(-0) },
];

/** The values each tensor holds once stored (F16/BF16 round to nearest even). */
function stored(t: WritableTensor): number[] {
  const d = typeof t.data === 'function' ? t.data() : t.data;
  if (t.dtype === 'F16') return Array.from(d, (x) => f16ToF32(f32ToF16(x)));
  if (t.dtype === 'BF16') return Array.from(d, (x) => bf16ToF32(f32ToBf16(x)));
  return Array.from(d);
}

beforeAll(() => {
  dir = scratchDir('writer');
  file = path.join(dir, 'all.gguf');
  writeGguf(file, meta, tensors);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('GGUF writer read back by node-llama-cpp', () => {
  it('has identical metadata of every type', async () => {
    const info = await readGgufFileInfo(file, { logWarnings: false });
    expect(info.version).toBe(3);
    expect(Number(info.tensorCount)).toBe(tensors.length);
    const m = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(m.general!.name).toBe('writer test — ünïcödé ✓ 🦙');
    expect(m.general!.alignment).toBe(32);
    const t = m.test!;
    expect([t.u8, t.i8, t.u16, t.i16, t.u32, t.i32]).toEqual([255, -128, 65535, -32768, 4294967295, -2147483648]);
    expect(t.f32).toBe(Math.fround(0.1));
    expect(t.f64).toBe(Math.PI);
    expect([t.bool_true, t.bool_false]).toEqual([true, false]);
    expect(BigInt(t.u64 as bigint)).toBe(18446744073709551615n);
    expect(BigInt(t.i64 as bigint)).toBe(-9223372036854775808n);
    expect(t.empty_string).toBe('');
    expect(t.strings).toEqual(['a', '', '▁hello', '<0x0A>', '日本語', 'x'.repeat(1000)]);
    expect(t.ints).toEqual([1, -2, 3, 2147483647]);
    expect(t.floats).toEqual([0.5, -1.25, 3.4028234663852886e38, Math.fround(1e-45)]);
    expect(t.u8s).toEqual([0, 1, 255]);
    expect(t.bools).toEqual([true, false, true]);
    expect((t.u64s as unknown[]).map((x) => BigInt(x as bigint))).toEqual([0n, 2n ** 63n]);
    expect(t.empty).toEqual([]);
  });

  it('has identical tensor infos, aligned offsets and bytes', async () => {
    const info = await readGgufFileInfo(file, { logWarnings: false });
    const ti = info.fullTensorInfo!;
    expect(ti.map((x) => x.name)).toEqual(tensors.map((t) => t.name));
    const fd = fs.openSync(file, 'r');
    try {
      for (const [i, t] of tensors.entries()) {
        const x = ti[i]!;
        // node-llama-cpp reports ggml's ne (innermost first); the writer takes row-major shapes.
        expect(x.dimensions.map(Number)).toEqual([...t.shape].reverse());
        expect(x.ggmlType).toBe({ F32: 0, F16: 1, BF16: 30 }[t.dtype]);
        expect(Number(x.offset) % 32).toBe(0);
        const n = t.shape.reduce((a, b) => a * b, 1);
        const bytes = Buffer.alloc(n * (t.dtype === 'F32' ? 4 : 2));
        fs.readSync(fd, bytes, 0, bytes.length, info.infoEndOffset! + Number(x.offset));
        const got =
          t.dtype === 'F32'
            ? Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, n))
            : Array.from(new Uint16Array(bytes.buffer, bytes.byteOffset, n), (h) => (t.dtype === 'F16' ? f16ToF32(h) : bf16ToF32(h)));
        expect(got, t.name).toEqual(stored(t));
      }
      expect(info.infoEndOffset! % 32).toBe(0);
      // Every tensor's slot is padded, the last one included, so the file ends on the alignment.
      expect(fs.statSync(file).size % 32).toBe(0);
    } finally {
      fs.closeSync(fd);
    }
  });
});

const py = ggufPy();
describe.skipIf(!('dir' in py))(`GGUF writer read back by llama.cpp's gguf-py${'reason' in py ? ` (skipped: ${py.reason})` : ''}`, () => {
  it('has identical metadata and tensors', () => {
    const d = dumpWithGgufPy(file);
    expect(d.alignment).toBe(32);
    const expected: Record<string, unknown> = {};
    for (const [k, v] of meta.entries()) {
      const conv = (x: unknown): unknown => (typeof x === 'bigint' ? x.toString() : v.type === 'uint64' || v.type === 'int64' || (v.type === 'array' && (v.itemType === 'uint64' || v.itemType === 'int64')) ? String(x) : v.type === 'float32' || (v.type === 'array' && v.itemType === 'float32') ? Math.fround(x as number) : x);
      expected[k] = v.type === 'array' ? { type: 'array', itemType: v.itemType, value: v.value.map(conv) } : { type: v.type, value: conv(v.value) };
    }
    expected['general.alignment'] = { type: 'uint32', value: 32 };
    expect(d.metadata).toEqual(expected);
    expect(d.tensors.map((t) => [t.name, t.type, t.shape])).toEqual(tensors.map((t) => [t.name, t.dtype, [...t.shape]]));
    for (const [i, t] of tensors.entries()) expect(d.tensors[i]!.data, t.name).toEqual(stored(t).map((x) => (Object.is(x, -0) ? -0 : x)));
  });
});

describe('GgufFile (our reader) on the same file', () => {
  it('reads metadata, shapes and data back', () => {
    const f = GgufFile.open(file);
    try {
      expect(f.value('general.name')).toBe('writer test — ünïcödé ✓ 🦙');
      expect(f.value('test.u64')).toBe(18446744073709551615n);
      expect(f.metadata.get('test.strings')?.value).toEqual(['a', '', '▁hello', '<0x0A>', '日本語', 'x'.repeat(1000)]);
      for (const t of tensors) {
        expect(f.tensors.get(t.name)?.shape).toEqual([...t.shape]);
        expect(Array.from(f.readF32(t.name))).toEqual(stored(t));
      }
      expect(Array.from(f.readRowsF32('a.f32_3x5', [2, 0]))).toEqual([...stored(tensors[0]!).slice(10, 15), ...stored(tensors[0]!).slice(0, 5)]);
      expect(() => f.readRowsF32('a.f32_3x5', [3])).toThrow(/row 3 is out of range for a.f32_3x5 \(3 rows\)/);
      expect(() => f.readF32('nope')).toThrow(/no tensor named nope/);
    } finally {
      f.close();
    }
  });

  it('refuses corrupt files with a message', () => {
    const bytes = fs.readFileSync(file);
    const bad = (name: string, b: Uint8Array): string => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, b);
      return p;
    };
    expect(() => GgufFile.open(path.join(dir, 'missing.gguf'))).toThrow(/missing.gguf: no such file/);
    expect(() => GgufFile.open(bad('empty.gguf', new Uint8Array()))).toThrow(/not a GGUF file/);
    expect(() => GgufFile.open(bad('magic.gguf', Buffer.from('GGML\x03\x00\x00\x00')))).toThrow(/not a GGUF file/);
    expect(() => GgufFile.open(bad('trunc-head.gguf', bytes.subarray(0, 200)))).toThrow(/truncated header/);
    expect(() => GgufFile.open(bad('trunc-data.gguf', bytes.subarray(0, bytes.length - 40)))).toThrow(/lies past the end of the file/);
    const huge = Buffer.from(bytes);
    huge.writeBigUInt64LE(1n << 40n, 16); // KV count
    expect(() => GgufFile.open(bad('count.gguf', huge))).toThrow(/string length count|truncated|does not fit/);
  });
});

describe('GGUF writer input validation', () => {
  const out = (): string => path.join(dir, 'bad.gguf');
  it('checks metadata values against their declared types', () => {
    const m = new GgufMetadata();
    expect(() => m.uint32('k', -1)).toThrow(/metadata k \(uint32\): -1 is outside the uint32 range/);
    expect(() => m.set('k', { type: 'uint8', value: 256 })).toThrow(/256 is outside the uint8 range/);
    expect(() => m.int32('k', 1.5)).toThrow(/expected an integer, got number 1.5/);
    expect(() => m.uint64('k', -1n)).toThrow(/outside the uint64 range/);
    expect(() => m.uint64('k', 2 ** 60)).toThrow(/safe integer or a bigint/);
    expect(() => m.bool('k', 1 as unknown as boolean)).toThrow(/expected a boolean/);
    expect(() => m.string('k', 'a\uD800b')).toThrow(/lone UTF-16 surrogate/);
    expect(() => m.array('k', 'string', ['ok', 3 as unknown as string])).toThrow(/metadata k\[1\] \(string\): expected a string/);
    expect(() => m.set('k', { type: 'array', itemType: 'array' as never, value: [] })).toThrow(/unsupported array item type/);
    expect(() => m.string('', 'x')).toThrow(/must be non-empty printable ASCII/);
    expect(() => m.string('has space', 'x')).toThrow(/must be non-empty printable ASCII/);
    m.string('k', 'x');
    expect(() => m.string('k', 'y')).toThrow(/metadata key k is set twice/);
  });

  it('checks tensors before writing anything', () => {
    const m = new GgufMetadata().string('general.architecture', 'llama');
    const t = (over: Partial<WritableTensor>): WritableTensor[] => [{ name: 'x', shape: [2], dtype: 'F32', data: Float32Array.of(1, 2), ...over }];
    expect(() => writeGguf(out(), m, t({ name: 'n'.repeat(64) }))).toThrow(/is 64 bytes; llama.cpp accepts 1 to 63/);
    expect(() => writeGguf(out(), m, t({ shape: [1, 1, 1, 1, 2] }))).toThrow(/GGUF tensors have 1 to 4 dimensions/);
    expect(() => writeGguf(out(), m, t({ shape: [0], data: new Float32Array() }))).toThrow(/each at least 1/);
    expect(() => writeGguf(out(), m, t({ dtype: 'Q8_0' as never }))).toThrow(/unsupported dtype Q8_0/);
    expect(() => writeGguf(out(), m, [...t({}), ...t({})])).toThrow(/duplicate tensor name x/);
    expect(() => writeGguf(out(), new GgufMetadata().uint32('general.alignment', 24), t({}))).toThrow(/power of two/);
    expect(() => writeGguf(out(), new GgufMetadata().string('general.alignment', '32'), t({}))).toThrow(/power of two/);
    expect(() => writeGguf(path.join(dir, 'no', 'such', 'dir.gguf'), m, t({}))).toThrow(/directory .* does not exist/);
    expect(fs.existsSync(out())).toBe(false);
  });

  it('leaves no file behind when a tensor fails mid-write', () => {
    const m = new GgufMetadata().string('general.architecture', 'llama');
    const list: WritableTensor[] = [
      { name: 'ok', shape: [4], dtype: 'F32', data: Float32Array.of(1, 2, 3, 4) },
      { name: 'short', shape: [4], dtype: 'F16', data: () => Float32Array.of(1, 2) },
    ];
    expect(() => writeGguf(out(), m, list)).toThrow(/tensor short has 2 values for shape \[4\]/);
    expect(fs.readdirSync(dir).filter((f) => f.includes('bad.gguf'))).toEqual([]);
  });

  it('honours a custom alignment', async () => {
    const p = path.join(dir, 'align64.gguf');
    writeGguf(p, new GgufMetadata().uint32('general.alignment', 64), [
      { name: 'a', shape: [3], dtype: 'F32', data: Float32Array.of(1, 2, 3) },
      { name: 'b', shape: [5], dtype: 'F16', data: Float32Array.of(1, 2, 3, 4, 5) },
    ]);
    const info = await readGgufFileInfo(p, { logWarnings: false });
    expect(info.infoEndOffset! % 64).toBe(0);
    expect(info.fullTensorInfo!.map((x) => Number(x.offset))).toEqual([0, 64]);
    const f = GgufFile.open(p);
    expect(Array.from(f.readF32('b'))).toEqual([1, 2, 3, 4, 5]);
    f.close();
  });

  it('writes headers far larger than its initial buffer (a real vocabulary)', async () => {
    // 40k tokens + scores + types ≈ 1 MB of header: the header buffer must grow many times mid-array.
    const tokens = Array.from({ length: 40_000 }, (_, i) => `tok${i}▁${'x'.repeat(i % 7)}`);
    const p = path.join(dir, 'bigheader.gguf');
    writeGguf(
      p,
      new GgufMetadata()
        .array('tokenizer.ggml.tokens', 'string', tokens)
        .array('tokenizer.ggml.scores', 'float32', tokens.map((_, i) => -i))
        .array('big.u64', 'uint64', tokens.map((_, i) => BigInt(i) << 40n))
        .string('after', 'end'),
      [{ name: 't', shape: [2], dtype: 'F32', data: Float32Array.of(1.5, -2) }],
    );
    const info = await readGgufFileInfo(p, { logWarnings: false });
    const m = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(((m.tokenizer!.ggml as Record<string, unknown>).tokens as string[])).toEqual(tokens);
    expect(((m.tokenizer!.ggml as Record<string, unknown>).scores as number[])[39_999]).toBe(-39_999);
    expect(((m.big!.u64 as unknown[]).map((x) => BigInt(x as bigint)))[12_345]).toBe(12_345n << 40n);
    expect(m.after).toBe('end');
    const f = GgufFile.open(p);
    expect(Array.from(f.readF32('t'))).toEqual([1.5, -2]);
    f.close();
  });

  it('uses GgufError for its own checks', () => {
    expect(() => new GgufMetadata().uint32('k', -1)).toThrow(GgufError);
  });
});
