import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeNpy, parseNpy, readNpy, writeNpy } from '../../src/formats/npy.js';
import { CheckpointError } from '../../src/formats/tensor.js';
import { expected, f32, fixture, noTorchReason, runPython, scratch, writeScratch } from './helpers.js';

describe('readNpy on files written by numpy', () => {
  it.each([
    ['f4.npy', 'f4'],
    ['f8.npy', 'f8'],
    ['f2.npy', 'f2'],
    ['scalar.npy', 'scalar'],
    ['f4_v2.npy', 'v2'],
    ['f4_v3.npy', 'v2'],
  ])('%s', (file, key) => {
    const want = expected.npy[key];
    const got = readNpy(fixture(file));
    expect(got.shape).toEqual(want.shape);
    expect(Array.from(got.data)).toEqual(want.values);
  });

  it('refuses Fortran order and non-float dtypes', () => {
    expect(() => readNpy(fixture('fortran.npy'))).toThrow(/Fortran-order .npy arrays are not supported/);
    expect(() => readNpy(fixture('i8.npy'))).toThrow(/unsupported .npy dtype '<i8'/);
  });
});

describe('npy errors', () => {
  const good = encodeNpy([2, 3], f32([1, 2, 3, 4, 5, 6]));
  const header = (dict: string, major = 1): Buffer => {
    const h = Buffer.alloc(major === 1 ? 10 : 12);
    Buffer.from('\x93NUMPY', 'latin1').copy(h);
    h[6] = major;
    if (major === 1) h.writeUInt16LE(dict.length, 8);
    else h.writeUInt32LE(dict.length, 8);
    return Buffer.concat([h, Buffer.from(dict, 'latin1')]);
  };

  it.each([
    ['bad magic', Buffer.from('NUMPY not really a numpy file'), /bad magic/],
    ['unknown version', Buffer.concat([Buffer.from('\x93NUMPY\x07\x00', 'latin1'), Buffer.alloc(8)]), /format version 7.0/],
    ['truncated header', good.subarray(0, 40), /truncated .npy header/],
    ['truncated data', good.subarray(0, good.length - 4), /truncated .npy data: shape \(2, 3\) needs 24 bytes, file has 20/],
    ['big-endian', header("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n"), /'>f4' \(big-endian\)/],
    ['missing shape', header("{'descr': '<f4', 'fortran_order': False, }\n"), /shape undefined is not a tuple/],
    ['negative shape', header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n"), /not a tuple of non-negative integers/],
    ['garbage header', header("{'descr': <f4 }\n"), /unexpected "<f4 }\\n" in header/],
    ['not a dict', header('(1, 2)\n', 2), /header is not a dict/],
  ])('%s', (_label, bytes, message) => {
    expect(() => parseNpy(bytes, 'x.npy')).toThrow(CheckpointError);
    expect(() => parseNpy(bytes, 'x.npy')).toThrow(message);
  });

  it('a missing file', () => {
    expect(() => readNpy(scratch('missing.npy'))).toThrow(/no such file/);
  });
});

describe('writeNpy', () => {
  it('round-trips and aligns the data to 64 bytes like numpy', () => {
    for (const shape of [[2, 3], [6], [], [1, 0, 3]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = Float32Array.from({ length: n }, (_, i) => i * 0.5 - 1);
      const p = scratch(`w${shape.length}.npy`);
      writeNpy(p, shape, data);
      const bytes = fs.readFileSync(p);
      expect((bytes.length - data.byteLength) % 64).toBe(0);
      expect(bytes[bytes.length - data.byteLength - 1]).toBe(0x0a);
      const back = readNpy(p);
      expect(back.shape).toEqual(shape);
      expect(Array.from(back.data)).toEqual(Array.from(data));
    }
    expect(() => writeNpy(scratch('bad.npy'), [2, 2], f32([1]))).toThrow(/needs 4 values, got 1/);
  });

  it('writes the same header numpy writes', () => {
    // The committed f4.npy is np.save of a float32 (2, 3, 4) array: its 128 header bytes must match ours exactly.
    const ours = encodeNpy([2, 3, 4], new Float32Array(24));
    const theirs = fs.readFileSync(fixture('f4.npy'));
    expect(ours.subarray(0, 128).toString('latin1')).toBe(theirs.subarray(0, 128).toString('latin1'));
    expect(encodeNpy([7], new Float32Array(7)).subarray(0, 128).toString('latin1')).toContain("'shape': (7,), }");
  });

  it.skipIf(noTorchReason)(`numpy.load reads our file${noTorchReason ? ` [skipped: ${noTorchReason}]` : ''}`, () => {
    const p = writeScratch('for-numpy.npy', encodeNpy([2, 2], f32([1.5, -2, 3e-3, 4e30])));
    const out = runPython(
      `import sys, json, numpy as np
a = np.load(sys.argv[1])
print(json.dumps({'dtype': str(a.dtype), 'shape': list(a.shape), 'values': a.reshape(-1).tolist()}))`,
      [p],
    );
    expect(out).toEqual({ dtype: 'float32', shape: [2, 2], values: Array.from(f32([1.5, -2, 3e-3, 4e30])) });
  });
});
