/**
 * A small ONNX graph builder whose weights stream to an external data file as they are added, so
 * building a multi-GB model needs about one tensor of memory. Nodes, small constants and metadata
 * stay in memory and are written by finish().
 *
 * Files are written under `.partial` names and renamed by finish(), so a crashed or aborted
 * conversion never leaves a plausible-looking model behind.
 */
import { closeSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { f32ToF16 } from '../formats/half.js';
import {
  DataType,
  encodeModel,
  type AttributeProto,
  type DataTypeCode,
  type Dim,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './proto.js';

export type { Dim } from './proto.js';
export { DataType } from './proto.js';

export const IR_VERSION = 8;
export const OPSET = 17;

/** Storage type for a streamed weight. Compute is always fp32: fp16 weights get a Cast to float. */
export type WeightDtype = 'fp32' | 'fp16';

/** Attribute value constructors; the type is explicit so 1.0 never becomes an INT. */
export type Attr =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number }
  | { type: 'string'; value: string }
  | { type: 'floats'; value: readonly number[] }
  | { type: 'ints'; value: readonly number[] }
  | { type: 'strings'; value: readonly string[] };
export const attr = {
  float: (value: number): Attr => ({ type: 'float', value }),
  int: (value: number): Attr => ({ type: 'int', value }),
  str: (value: string): Attr => ({ type: 'string', value }),
  floats: (value: readonly number[]): Attr => ({ type: 'floats', value }),
  ints: (value: readonly number[]): Attr => ({ type: 'ints', value }),
};

export interface GraphOptions {
  /** Path of the .onnx file; the data file is `${onnxPath}.data` unless given. */
  onnxPath: string;
  dataPath?: string;
  graphName?: string;
  /** Offsets of tensors of at least `pageAlignFrom` bytes are 4096-aligned (mmap-able); smaller ones 64-aligned. */
  pageAlignFrom?: number;
  metadata?: Record<string, string>;
}

/** IEEE binary16 bits of a float32 value, round-to-nearest-even (one implementation: formats/half). */
export function toFloat16Bits(x: number): number {
  return f32ToF16(x);
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export class OnnxGraph {
  readonly onnxPath: string;
  readonly dataPath: string;
  private readonly location: string;
  private readonly pageAlignFrom: number;
  private readonly graphName: string;
  private readonly metadata: Record<string, string>;
  private fd: number | undefined;
  private dataEnd = 0;
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private counter = 0;
  private prefix = '';
  private done = false;

  constructor(opts: GraphOptions) {
    this.onnxPath = opts.onnxPath;
    this.dataPath = opts.dataPath ?? `${opts.onnxPath}.data`;
    this.location = basename(this.dataPath);
    this.pageAlignFrom = opts.pageAlignFrom ?? 4096;
    this.graphName = opts.graphName ?? 'graph';
    this.metadata = opts.metadata ?? {};
    this.fd = openSync(`${this.dataPath}.partial`, 'w');
  }

  /** Bytes written to the data file so far (including alignment padding). */
  get dataBytes(): number {
    return this.dataEnd;
  }

  /** Runs `fn` with generated value names prefixed by `scope` (nested scopes join with '/'). */
  scoped<T>(scope: string, fn: () => T): T {
    const saved = this.prefix;
    this.prefix = saved ? `${saved}/${scope}` : scope;
    try {
      return fn();
    } finally {
      this.prefix = saved;
    }
  }

  /** A fresh value name; `hint` makes ORT error messages and profiles readable. */
  fresh(hint: string): string {
    const base = this.prefix ? `${this.prefix}/${hint}` : hint;
    let name = base;
    while (this.used.has(name)) name = `${base}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  private claim(name: string): string {
    if (this.used.has(name)) throw new Error(`onnx graph: value name ${name} already used`);
    this.used.add(name);
    return name;
  }

  input(name: string, dims: readonly Dim[], elemType: DataTypeCode = DataType.FLOAT): string {
    this.inputs.push({ name: this.claim(name), elemType, shape: dims });
    return name;
  }

  /** Marks `value` as a graph output named `name` (an Identity is added when the names differ). */
  output(value: string, name: string, dims: readonly Dim[], elemType: DataTypeCode = DataType.FLOAT): void {
    if (value !== name) this.nodes.push({ opType: 'Identity', inputs: [value], outputs: [this.claim(name)] });
    this.outputs.push({ name, elemType, shape: dims });
  }

  /**
   * Streams a float weight to the data file and returns the value to compute with (float32).
   * fp16 storage adds a Cast node, which ORT constant-folds at session load.
   */
  weight(name: string, data: Float32Array, dims: readonly number[], dtype: WeightDtype = 'fp32'): string {
    let n = 1;
    for (const d of dims) n *= d;
    if (n !== data.length) throw new Error(`onnx graph: weight ${name} has ${data.length} values for [${dims.join(', ')}]`);
    if (dtype === 'fp32') {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      return this.external(this.claim(name), DataType.FLOAT, dims, bytes);
    }
    const half = new Uint16Array(n);
    for (let i = 0; i < n; i++) half[i] = toFloat16Bits(data[i]);
    const stored = this.external(this.claim(`${name}.f16`), DataType.FLOAT16, dims, new Uint8Array(half.buffer));
    return this.node('Cast', [stored], { to: attr.int(DataType.FLOAT) }, name);
  }

  private external(name: string, dataType: DataTypeCode, dims: readonly number[], bytes: Uint8Array): string {
    if (this.fd === undefined) throw new Error('onnx graph: already finished');
    const offset = align(this.dataEnd, bytes.length >= this.pageAlignFrom ? 4096 : 64);
    let written = 0;
    while (written < bytes.length) {
      written += writeSync(this.fd, bytes, written, bytes.length - written, offset + written);
    }
    this.dataEnd = offset + bytes.length;
    this.initializers.push({
      name,
      dataType,
      dims: [...dims],
      external: { location: this.location, offset, length: bytes.length },
    });
    return name;
  }

  private inline(hint: string, dataType: DataTypeCode, dims: readonly number[], bytes: Uint8Array): string {
    const key = `${dataType}|${dims.join(',')}|${Buffer.from(bytes).toString('base64')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const saved = this.prefix;
    this.prefix = '';
    const name = this.fresh(hint);
    this.prefix = saved;
    this.initializers.push({ name, dataType, dims: [...dims], rawData: bytes.slice() });
    this.constCache.set(key, name);
    return name;
  }

  /** Small int64 constant kept inside the .onnx (deduplicated). `dims` defaults to [values.length]; [] for a scalar. */
  constI64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const b = new BigInt64Array(values.map((v) => BigInt(v)));
    return this.inline('const_i64', DataType.INT64, dims, new Uint8Array(b.buffer));
  }

  /** Small float32 constant kept inside the .onnx (deduplicated). `dims` [] makes a scalar. */
  constF32(values: readonly number[] | Float32Array, dims: readonly number[] = [values.length]): string {
    const f = Float32Array.from(values);
    return this.inline('const_f32', DataType.FLOAT, dims, new Uint8Array(f.buffer));
  }

  /** Adds a node with one output; returns the output's name. */
  node(opType: string, inputs: readonly string[], attrs: Record<string, Attr> = {}, outName?: string): string {
    return this.nodeN(opType, inputs, 1, attrs, outName ? [outName] : undefined)[0];
  }

  /** Adds a node with `count` outputs. An empty string in `inputs` marks an omitted optional input. */
  nodeN(
    opType: string,
    inputs: readonly string[],
    count: number,
    attrs: Record<string, Attr> = {},
    outNames?: readonly string[],
    domain?: string,
  ): string[] {
    const outputs = outNames
      ? outNames.map((n) => this.claim(n))
      : Array.from({ length: count }, (_, i) => this.fresh(count === 1 ? opType : `${opType}_out${i}`));
    const attributes = Object.entries(attrs).map(([name, a]) => ({ name, ...a }) as AttributeProto);
    this.nodes.push({ opType, inputs: [...inputs], outputs, name: outputs[0], attributes, domain });
    return outputs;
  }

  // --- op helpers (opset 17 semantics) ---
  add(a: string, b: string): string {
    return this.node('Add', [a, b]);
  }
  sub(a: string, b: string): string {
    return this.node('Sub', [a, b]);
  }
  mul(a: string, b: string): string {
    return this.node('Mul', [a, b]);
  }
  div(a: string, b: string): string {
    return this.node('Div', [a, b]);
  }
  max(a: string, b: string): string {
    return this.node('Max', [a, b]);
  }
  matMul(a: string, b: string): string {
    return this.node('MatMul', [a, b]);
  }
  /** Y = A·B (+ C), A 2-D; B is [K,N] unless transB. */
  gemm(a: string, b: string, c?: string, opts: { transB?: boolean } = {}): string {
    const attrs: Record<string, Attr> = opts.transB ? { transB: attr.int(1) } : {};
    return this.node('Gemm', c ? [a, b, c] : [a, b], attrs);
  }
  conv(x: string, w: string, b: string | undefined, opts: { kernel: readonly number[]; strides: readonly number[] }): string {
    return this.node('Conv', b ? [x, w, b] : [x, w], {
      kernel_shape: attr.ints(opts.kernel),
      strides: attr.ints(opts.strides),
    });
  }
  /** Shape may contain -1 (inferred) and 0 (copy input dim). */
  reshape(x: string, shape: readonly number[]): string {
    return this.node('Reshape', [x, this.constI64(shape)]);
  }
  transpose(x: string, perm: readonly number[]): string {
    return this.node('Transpose', [x], { perm: attr.ints(perm) });
  }
  concat(xs: readonly string[], axis: number): string {
    return this.node('Concat', xs, { axis: attr.int(axis) });
  }
  slice(x: string, starts: readonly number[], ends: readonly number[], axes: readonly number[], steps?: readonly number[]): string {
    const ins = [x, this.constI64(starts), this.constI64(ends), this.constI64(axes)];
    if (steps) ins.push(this.constI64(steps));
    return this.node('Slice', ins);
  }
  /** Splits along `axis` into pieces of the given sizes. */
  split(x: string, sizes: readonly number[], axis: number): string[] {
    return this.nodeN('Split', [x, this.constI64(sizes)], sizes.length, { axis: attr.int(axis) });
  }
  /** A scalar index drops the axis; an array index keeps it. */
  gather(x: string, indices: number | readonly number[], axis: number): string {
    const idx = typeof indices === 'number' ? this.constI64([indices], []) : this.constI64(indices);
    return this.node('Gather', [x, idx], { axis: attr.int(axis) });
  }
  shape(x: string): string {
    return this.node('Shape', [x]);
  }
  expand(x: string, shape: string): string {
    return this.node('Expand', [x, shape]);
  }
  /** Constant-zero padding; `pads` is [begin_0..begin_n, end_0..end_n]. */
  pad(x: string, pads: readonly number[]): string {
    return this.node('Pad', [x, this.constI64(pads)]);
  }
  squeeze(x: string, axes: readonly number[]): string {
    return this.node('Squeeze', [x, this.constI64(axes)]);
  }
  unsqueeze(x: string, axes: readonly number[]): string {
    return this.node('Unsqueeze', [x, this.constI64(axes)]);
  }
  softmax(x: string, axis = -1): string {
    return this.node('Softmax', [x], { axis: attr.int(axis) });
  }
  layerNorm(x: string, scale: string, bias: string, epsilon: number, axis = -1): string {
    return this.node('LayerNormalization', [x, scale, bias], { axis: attr.int(axis), epsilon: attr.float(epsilon) });
  }
  sigmoid(x: string): string {
    return this.node('Sigmoid', [x]);
  }
  erf(x: string): string {
    return this.node('Erf', [x]);
  }
  sqrt(x: string): string {
    return this.node('Sqrt', [x]);
  }
  cast(x: string, to: DataTypeCode): string {
    return this.node('Cast', [x], { to: attr.int(to) });
  }
  reduceL2(x: string, axes: readonly number[], keepdims = true): string {
    return this.node('ReduceL2', [x], { axes: attr.ints(axes), keepdims: attr.int(keepdims ? 1 : 0) });
  }
  reduceSumSquare(x: string, axes: readonly number[], keepdims = true): string {
    return this.node('ReduceSumSquare', [x], { axes: attr.ints(axes), keepdims: attr.int(keepdims ? 1 : 0) });
  }

  /** x·sigmoid(1.702x): the exact pattern ORT fuses into com.microsoft QuickGelu. */
  quickGelu(x: string): string {
    return this.mul(x, this.sigmoid(this.mul(x, this.constF32([1.702], []))));
  }
  /** x·sigmoid(x) (SiLU); ORT fuses it into QuickGelu with alpha 1. */
  silu(x: string): string {
    return this.mul(x, this.sigmoid(x));
  }
  /** Exact GELU 0.5·x·(1+erf(x/√2)), written in the Div→Erf→Add→Mul→Mul order ORT's GeluFusion matches. */
  gelu(x: string): string {
    const e = this.erf(this.div(x, this.constF32([Math.SQRT2], [])));
    return this.mul(this.mul(x, this.add(e, this.constF32([1], []))), this.constF32([0.5], []));
  }

  /** Writes the .onnx, closes the data file and renames both into place. Returns total bytes of both files. */
  async finish(): Promise<{ onnxFile: string; dataFile: string; bytes: number }> {
    if (this.done || this.fd === undefined) throw new Error('onnx graph: already finished');
    const model = encodeModel({
      irVersion: IR_VERSION,
      opsetImports: [{ domain: '', version: OPSET }],
      producerName: 'llm2clip',
      producerVersion: '0.1.0',
      metadata: this.metadata,
      graph: {
        name: this.graphName,
        nodes: this.nodes,
        initializers: this.initializers,
        inputs: this.inputs,
        outputs: this.outputs,
      },
    });
    closeSync(this.fd);
    this.fd = undefined;
    writeFileSync(`${this.onnxPath}.partial`, model);
    renameSync(`${this.dataPath}.partial`, this.dataPath);
    renameSync(`${this.onnxPath}.partial`, this.onnxPath);
    this.done = true;
    return { onnxFile: this.onnxPath, dataFile: this.dataPath, bytes: model.length + this.dataEnd };
  }

  /** Closes and deletes the partial files; safe to call after a failure or twice. */
  abort(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
    if (!this.done) {
      rmSync(`${this.dataPath}.partial`, { force: true });
      rmSync(`${this.onnxPath}.partial`, { force: true });
    }
  }
}
