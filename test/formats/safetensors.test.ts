import * as fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { SafetensorsReader, writeSafetensors } from '../../src/formats/safetensors.js';
import { CheckpointError } from '../../src/formats/tensor.js';
import { expected, f32, fixture, scratch, writeScratch } from './helpers.js';

const open: SafetensorsReader[] = [];
function openSt(p: string): SafetensorsReader {
  const r = SafetensorsReader.open(p);
  open.push(r);
  return r;
}
afterEach(() => {
  while (open.length) open.pop()!.close();
});

/** A safetensors file from a raw header object and data section, for corrupt variants. */
function craft(name: string, header: unknown, data: Uint8Array, lengthOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  return writeScratch(name, Buffer.concat([len, json, data]));
}

describe('SafetensorsReader on a file written by python (struct + json)', () => {
  it('reads names, dtypes, shapes, metadata and values', () => {
    const r = openSt(fixture('mixed.safetensors'));
    const want = expected.safetensors;
    expect(r.names().sort()).toEqual(Object.keys(want).sort());
    expect(r.info('a.f32')).toEqual({ name: 'a.f32', dtype: 'F32', shape: [2, 3] });
    expect(r.info('b.f16')?.dtype).toBe('F16');
    expect(r.info('c.bf16')).toEqual({ name: 'c.bf16', dtype: 'BF16', shape: [3, 1] });
    expect(r.info('d.scalar')?.shape).toEqual([]);
    expect(r.metadata).toEqual({ format: 'pt', note: 'fixture' });
    for (const [name, t] of Object.entries(want)) {
      expect(Array.from(r.readF32(name)), name).toEqual(t.values);
      expect(r.info(name)?.shape).toEqual(t.shape);
    }
    expect(() => r.readF32('nope')).toThrow(/no tensor named nope/);
    expect(r.info('nope')).toBeUndefined();
  });

  it('refuses reads after close', () => {
    const r = SafetensorsReader.open(fixture('mixed.safetensors'));
    r.close();
    expect(() => r.readF32('a.f32')).toThrow(/closed/);
    r.close();
  });
});

describe('writeSafetensors', () => {
  it('round-trips F32, F16 and BF16 (converted with RNE) and pads the header', () => {
    const p = scratch('rt.safetensors');
    const a = f32([1, -2.5, 3.14159, 65504, 1e-8, 0]);
    writeSafetensors(
      p,
      [
        { name: 'x', shape: [2, 3], dtype: 'F32', data: a },
        { name: 'y', shape: [2, 3], dtype: 'F16', data: a },
        { name: 'z', shape: [6], dtype: 'BF16', data: a },
        { name: 'empty', shape: [0, 4], dtype: 'F32', data: new Float32Array(0) },
        { name: 's', shape: [], dtype: 'F32', data: f32([42]) },
      ],
      { format: 'pt' },
    );
    const r = openSt(p);
    expect(r.names()).toEqual(['x', 'y', 'z', 'empty', 's']);
    expect(Array.from(r.readF32('x'))).toEqual(Array.from(a));
    // Expected values from torch: a.half().float().tolist() and a.bfloat16().float().tolist()
    expect(Array.from(r.readF32('y'))).toEqual([1, -2.5, 3.140625, 65504, 0, 0]);
    expect(Array.from(r.readF32('z'))).toEqual([1, -2.5, 3.140625, 65536, 1.0011717677116394e-8, 0]);
    expect(r.readF32('empty').length).toBe(0);
    expect(Array.from(r.readF32('s'))).toEqual([42]);
    expect(r.metadata).toEqual({ format: 'pt' });
    const bytes = fs.readFileSync(p);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = bytes.toString('utf8', 8, 8 + n);
    expect(header).toMatch(/^\{.*\} *$/); // padded with spaces only
    expect(JSON.parse(header).x).toEqual({ dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    expect(bytes.length).toBe(8 + n + 24 + 12 + 12 + 0 + 4);
  });

  it('calls each data thunk once, only after the header is written, in order', () => {
    const p = scratch('thunks.safetensors');
    const calls: string[] = [];
    const mk = (name: string, v: number) => ({
      name,
      shape: [2],
      dtype: 'F32' as const,
      data: () => {
        calls.push(`${name}:${fs.statSync(p).size}`);
        return f32([v, v]);
      },
    });
    writeSafetensors(p, [mk('a', 1), mk('b', 2)]);
    const hdr = fs.statSync(p).size - 16;
    expect(calls).toEqual([`a:${hdr}`, `b:${hdr + 8}`]);
    expect(Array.from(openSt(p).readF32('b'))).toEqual([2, 2]);
  });

  it("keeps a tensor or metadata key named '__proto__' as data", () => {
    const p = scratch('proto.safetensors');
    const meta = JSON.parse('{"__proto__": "x", "ok": "y"}') as Record<string, string>;
    writeSafetensors(p, [{ name: '__proto__', shape: [1], dtype: 'F32', data: f32([5]) }], meta);
    const r = openSt(p);
    expect(r.names()).toEqual(['__proto__']);
    expect(Array.from(r.readF32('__proto__'))).toEqual([5]);
    expect(Object.entries(r.metadata)).toEqual([['__proto__', 'x'], ['ok', 'y']]);
  });

  it('rejects mismatched data and duplicate names, leaving no partial file', () => {
    const p = scratch('bad.safetensors');
    expect(() => writeSafetensors(p, [{ name: 'a', shape: [3], dtype: 'F32', data: f32([1, 2]) }])).toThrow(/2 values for shape \[3\]/);
    expect(fs.existsSync(p)).toBe(false);
    const t = { name: 'a', shape: [1], dtype: 'F32' as const, data: f32([1]) };
    expect(() => writeSafetensors(p, [t, t])).toThrow(/duplicate tensor name a/);
  });
});

describe('SafetensorsReader rejects corrupt files with a message naming the problem', () => {
  const ok = { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const data8 = new Uint8Array(8);

  it('accepts the well-formed base case', () => {
    expect(openSt(craft('ok.safetensors', ok, data8)).names()).toEqual(['w']);
  });

  it('sets aside integer buffers (older HF CLIP files hold int64 position_ids) and refuses to read them as weights', () => {
    const header = { w: ok.w, 'vision_model.embeddings.position_ids': { dtype: 'I64', shape: [1, 2], data_offsets: [8, 24] } };
    const r = openSt(craft('ids.safetensors', header, new Uint8Array(24)));
    expect(r.names()).toEqual(['w']);
    expect(r.skipped).toEqual([{ name: 'vision_model.embeddings.position_ids', dtype: 'I64' }]);
    expect(() => r.readF32('vision_model.embeddings.position_ids')).toThrow(/has dtype I64; only F32, F16 and BF16 tensors are read/);
  });

  it.each([
    ['truncated data section', () => craft('t1.st', ok, new Uint8Array(4)), /w: data_offsets \[0, 8\] lie outside the 4-byte data section/],
    ['file shorter than 8 bytes', () => writeScratch('t2.st', new Uint8Array(5)), /only 5 bytes/],
    ['header length larger than the file', () => craft('t3.st', ok, data8, 1000n), /header length 1000 is larger than the file/],
    ['header length over 100 MB', () => craft('t4.st', ok, data8, 200_000_000n), /exceeds the 100000000-byte limit/],
    ['I64 entry of the wrong size', () => craft('t5.st', { w: { dtype: 'I64', shape: [2], data_offsets: [0, 8] } }, data8), /span 8 bytes but I64\[2\] needs 16/],
    ['made-up dtype', () => craft('t6.st', { w: { dtype: 'Q7', shape: [2], data_offsets: [0, 8] } }, data8), /tensor w has unknown dtype Q7/],
    [
      'overlapping offsets',
      () => craft('t7.st', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F16', shape: [2], data_offsets: [6, 10] } }, new Uint8Array(12)),
      /tensors a and b have overlapping data_offsets/,
    ],
    ['size mismatch', () => craft('t8.st', { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data8), /span 8 bytes but F32\[3\] needs 12/],
    ['negative shape', () => craft('t9.st', { w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, data8), /shape \[-2\] is not a list of non-negative integers/],
    ['non-integer offsets', () => craft('t10.st', { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8.5] } }, data8), /data_offsets .* not a pair/],
    ['reversed offsets', () => craft('t11.st', { w: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, data8), /lie outside/],
    ['not JSON', () => craft('t12.st', '{"w": ', data8), /not valid UTF-8 JSON/],
    ['JSON array header', () => craft('t13.st', '[1, 2]', data8), /not a JSON object/],
    ['metadata with a non-string', () => craft('t14.st', { __metadata__: { epoch: 3 } }, data8), /__metadata__ entry epoch is not a string/],
    ['invalid UTF-8', () => craft('t15.st', Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1'), data8), /not valid UTF-8 JSON/],
  ])('%s', (_label, make, message) => {
    const p = make();
    expect(() => SafetensorsReader.open(p)).toThrow(CheckpointError);
    expect(() => SafetensorsReader.open(p)).toThrow(message);
  });

  it('a missing file', () => {
    expect(() => SafetensorsReader.open(scratch('does-not-exist.safetensors'))).toThrow(/no such file/);
  });
});
