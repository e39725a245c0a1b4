/**
 * Byte-level checks of the protobuf encoder against hand-encoded messages, so a wrong field number
 * fails here rather than as an obscure ORT load error. Field numbers are those of onnx.proto3.
 */
import { describe, expect, test } from 'vitest';
import { ProtoWriter, encodeModel, writeAttribute, writeTensor, writeValueInfo } from '../../src/onnx/proto.js';

const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));
function bytes(fn: (w: ProtoWriter) => void): number[] {
  const w = new ProtoWriter();
  fn(w);
  return [...w.finish()];
}

describe('ProtoWriter', () => {
  test('varints, including 64-bit two\'s complement negatives and values above 2^32', () => {
    expect(bytes((w) => w.varint(0))).toEqual([0]);
    expect(bytes((w) => w.varint(300))).toEqual([0xac, 0x02]);
    expect(bytes((w) => w.varint(-1))).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    expect(bytes((w) => w.varint(2 ** 35))).toEqual([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    expect(() => bytes((w) => w.varint(1.5))).toThrow();
  });

  test('fixed32 float is little-endian', () => {
    expect(bytes((w) => w.float(2, 1))).toEqual([0x15, 0x00, 0x00, 0x80, 0x3f]);
  });
});

describe('ONNX messages', () => {
  test('ValueInfoProto with a symbolic and a fixed dim', () => {
    const dimParam = [0x12, 0x05, ...ascii('batch')]; // Dimension.dim_param = 2
    const dimValue = [0x08, 0x03]; // Dimension.dim_value = 1
    const shape = [0x0a, dimParam.length, ...dimParam, 0x0a, dimValue.length, ...dimValue]; // TensorShapeProto.dim = 1
    const tensorType = [0x08, 0x01, 0x12, shape.length, ...shape]; // elem_type = 1, shape = 2
    const typeProto = [0x0a, tensorType.length, ...tensorType]; // TypeProto.tensor_type = 1
    const expected = [0x0a, 0x01, ...ascii('x'), 0x12, typeProto.length, ...typeProto]; // name = 1, type = 2
    expect(bytes((w) => writeValueInfo(w, { name: 'x', elemType: 1, shape: ['batch', 3] }))).toEqual(expected);
  });

  test('TensorProto with external data', () => {
    const entry = (k: string, v: string) => {
      const body = [0x0a, k.length, ...ascii(k), 0x12, v.length, ...ascii(v)];
      return [0x6a, body.length, ...body]; // external_data = 13
    };
    const expected = [
      0x08, 0x02, 0x08, 0x04, // dims = 1 (unpacked)
      0x10, 0x0a, // data_type = 2 (FLOAT16)
      0x42, 0x01, ...ascii('w'), // name = 8
      ...entry('location', 'w.data'),
      ...entry('offset', '4096'),
      ...entry('length', '16'),
      0x70, 0x01, // data_location = 14, EXTERNAL
    ];
    const got = bytes((w) =>
      writeTensor(w, { name: 'w', dataType: 10, dims: [2, 4], external: { location: 'w.data', offset: 4096, length: 16 } }),
    );
    expect(got).toEqual(expected);
  });

  test('TensorProto with raw data', () => {
    const got = bytes((w) => writeTensor(w, { name: 's', dataType: 7, dims: [], rawData: new Uint8Array([5, 0, 0, 0, 0, 0, 0, 0]) }));
    expect(got).toEqual([0x10, 0x07, 0x42, 0x01, ...ascii('s'), 0x4a, 0x08, 5, 0, 0, 0, 0, 0, 0, 0]); // raw_data = 9
  });

  test('AttributeProto int, float and ints carry the type discriminator (field 20)', () => {
    const neg1 = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    expect(bytes((w) => writeAttribute(w, { name: 'axis', type: 'int', value: -1 }))).toEqual([
      0x0a, 0x04, ...ascii('axis'), 0x18, ...neg1, 0xa0, 0x01, 0x02,
    ]);
    expect(bytes((w) => writeAttribute(w, { name: 'e', type: 'float', value: 0.5 }))).toEqual([
      0x0a, 0x01, ...ascii('e'), 0x15, 0x00, 0x00, 0x00, 0x3f, 0xa0, 0x01, 0x01,
    ]);
    expect(bytes((w) => writeAttribute(w, { name: 'p', type: 'ints', value: [0, 2] }))).toEqual([
      0x0a, 0x01, ...ascii('p'), 0x40, 0x00, 0x40, 0x02, 0xa0, 0x01, 0x07,
    ]);
  });

  test('ModelProto header: ir_version = 1, graph = 7, opset_import = 8', () => {
    const m = [
      ...encodeModel({
        irVersion: 8,
        opsetImports: [{ domain: '', version: 17 }],
        graph: { name: 'g', nodes: [], initializers: [], inputs: [], outputs: [] },
      }),
    ];
    expect(m).toEqual([0x08, 0x08, 0x3a, 0x03, 0x12, 0x01, ...ascii('g'), 0x42, 0x02, 0x10, 0x11]);
  });
});
