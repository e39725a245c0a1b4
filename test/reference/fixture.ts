/**
 * Reader for the fixtures written by test/fixtures/reference/make_torch_fixtures.py:
 * <case>.json (metadata + tensor index: dtype, shape, byte offset) and <case>.bin (raw little-endian data).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MemoryTensors, numel } from '../../src/formats/tensor.js';

export const FIXTURE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'reference');

interface IndexEntry {
  dtype: 'float32' | 'float64';
  shape: number[];
  offset: number;
}

export interface Fixture {
  readonly meta: Record<string, unknown>;
  readonly names: string[];
  shape(name: string): number[];
  f32(name: string): Float32Array;
  f64(name: string): Float64Array;
  has(name: string): boolean;
  /** The `weights/` tensors, with that prefix removed. */
  weights(): MemoryTensors;
}

export function loadFixture(name: string): Fixture {
  const meta = JSON.parse(readFileSync(join(FIXTURE_DIR, `${name}.json`), 'utf8')) as Record<string, unknown> & {
    format: string;
    bytes: number;
    tensors: Record<string, IndexEntry>;
  };
  if (meta.format !== 'llm2clip-reference-fixture/1') throw new Error(`fixture ${name}: unknown format ${meta.format}`);
  const bin = readFileSync(join(FIXTURE_DIR, `${name}.bin`));
  if (bin.length !== meta.bytes) throw new Error(`fixture ${name}: ${bin.length} bytes, index says ${meta.bytes}`);
  const entry = (n: string): IndexEntry => {
    const e = meta.tensors[n];
    if (!e) throw new Error(`fixture ${name}: no tensor ${n}`);
    return e;
  };
  const read = (n: string, want: IndexEntry['dtype']) => {
    const e = entry(n);
    if (e.dtype !== want) throw new Error(`fixture ${name}: ${n} is ${e.dtype}, not ${want}`);
    const size = want === 'float32' ? 4 : 8;
    const count = numel(e.shape);
    const bytes = bin.subarray(e.offset, e.offset + count * size);
    const out = want === 'float32' ? new Float32Array(count) : new Float64Array(count);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < count; i++) out[i] = want === 'float32' ? view.getFloat32(i * 4, true) : view.getFloat64(i * 8, true);
    return out;
  };
  return {
    meta,
    names: Object.keys(meta.tensors),
    shape: (n) => [...entry(n).shape],
    f32: (n) => read(n, 'float32') as Float32Array,
    f64: (n) => read(n, 'float64') as Float64Array,
    has: (n) => n in meta.tensors,
    weights: () => {
      const m = new MemoryTensors(`fixture ${name}`);
      for (const n of Object.keys(meta.tensors)) {
        if (n.startsWith('weights/')) m.set(n.slice('weights/'.length), entry(n).shape, read(n, 'float32') as Float32Array);
      }
      return m;
    },
  };
}
