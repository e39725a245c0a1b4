/**
 * Pieces shared by the tower and adapter graph builders: shape validation, streaming weight access with
 * progress, Linear layers as 2-D Gemm on pre-transposed weights, head split/merge and softmax attention.
 *
 * Layout decision: the residual stream is kept 2-D, [batch·tokens, width]. Every Linear is then a
 * plain Gemm with a bias input (one MLAS SGEMM call with the bias fused; ORT does not fuse a 3-D
 * MatMul + Add), and LayerNormalization over the last axis is layout-agnostic. Only attention reshapes
 * to [batch, heads, tokens, headDim], with the token count static and the batch inferred (-1).
 */
import { CheckpointError, type TensorReader } from '../formats/tensor.js';
import type { OnnxGraph, WeightDtype } from '../onnx/graph.js';

/** Canonical weight name → expected shape. */
export type ShapeTable = Map<string, readonly number[]>;

/** Throws CheckpointError naming the first missing or mis-shaped tensor, before anything is written. */
export function validateShapes(reader: TensorReader, expected: ShapeTable): void {
  for (const [name, shape] of expected) {
    const info = reader.info(name);
    if (!info) throw new CheckpointError(`${reader.source}: missing tensor ${name} (expected shape [${shape.join(', ')}])`);
    const got = info.shape;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(
        `${reader.source}: tensor ${name} has shape [${got.join(', ')}], expected [${shape.join(', ')}]`,
      );
    }
  }
}

/** One slice of a fused Linear: nn.Linear weight [out, in] with optional bias, scale and output-column order. */
export interface LinearPart {
  weight: Float32Array;
  bias?: Float32Array;
  out: number;
  /** Folded into weight and bias (e.g. the attention scale on q). */
  scale?: number;
  /** Output column j of this part takes source row order[j] (e.g. RoPE's per-head dim reordering). */
  order?: Int32Array;
}

/** Concatenates parts along the output axis as a pre-transposed [in, Σout] matrix plus bias. */
export function fuseLinear(parts: readonly LinearPart[], inDim: number): { w: Float32Array; b: Float32Array; out: number } {
  const out = parts.reduce((s, p) => s + p.out, 0);
  const w = new Float32Array(inDim * out);
  const b = new Float32Array(out);
  let col = 0;
  for (const p of parts) {
    const s = p.scale ?? 1;
    // Blocked transpose keeps both the strided reads and writes cache-resident.
    const BS = 64;
    for (let j0 = 0; j0 < p.out; j0 += BS) {
      for (let i0 = 0; i0 < inDim; i0 += BS) {
        const jEnd = Math.min(j0 + BS, p.out);
        const iEnd = Math.min(i0 + BS, inDim);
        for (let j = j0; j < jEnd; j++) {
          const src = (p.order ? p.order[j] : j) * inDim;
          const dst = col + j;
          for (let i = i0; i < iEnd; i++) w[i * out + dst] = p.weight[src + i] * s;
        }
      }
    }
    if (p.bias) for (let j = 0; j < p.out; j++) b[col + j] = p.bias[p.order ? p.order[j] : j] * s;
    col += p.out;
  }
  return { w, b, out };
}

/** Streams weights from a reader into a graph, counting reads for progress reporting. */
export class WeightSource {
  private done = 0;

  constructor(
    readonly g: OnnxGraph,
    readonly reader: TensorReader,
    readonly dtype: WeightDtype,
    readonly total: number,
    private readonly onProgress?: (done: number, total: number, name: string) => void,
  ) {}

  get readCount(): number {
    return this.done;
  }

  read(name: string): Float32Array {
    const data = this.reader.readF32(name);
    this.done++;
    this.onProgress?.(this.done, this.total, name);
    return data;
  }

  /** A tensor kept in fp32 whatever the dtype (norms, biases, embeddings: <1% of bytes, kept exact). */
  f32(name: string, dims: readonly number[], data: Float32Array = this.read(name)): string {
    return this.g.weight(name, data, dims, 'fp32');
  }

  /** Gemm over pre-transposed fused parts; weights stored in the chosen dtype, bias in fp32. */
  linear(x: string, name: string, parts: readonly LinearPart[], inDim: number, withBias = true): string {
    const { w, b, out } = fuseLinear(parts, inDim);
    const wv = this.g.weight(`${name}.weight_t`, w, [inDim, out], this.dtype);
    return this.g.gemm(x, wv, withBias ? this.g.weight(`${name}.bias`, b, [out], 'fp32') : undefined);
  }

  /** Single nn.Linear read by canonical name (`${prefix}.weight`, optional `${prefix}.bias`). */
  linearNamed(x: string, prefix: string, out: number, inDim: number, hasBias = true): string {
    const weight = this.read(`${prefix}.weight`);
    const bias = hasBias ? this.read(`${prefix}.bias`) : undefined;
    return this.linear(x, prefix, [{ weight, bias, out }], inDim, hasBias);
  }

  layerNorm(x: string, prefix: string, dim: number, eps: number): string {
    const scale = this.f32(`${prefix}.weight`, [dim]);
    const bias = this.f32(`${prefix}.bias`, [dim]);
    return this.g.layerNorm(x, scale, bias, eps);
  }
}

/** Adds LayerNorm {weight,bias} [dim] entries to a shape table. */
export function expectNorm(t: ShapeTable, prefix: string, dim: number): void {
  t.set(`${prefix}.weight`, [dim]);
  t.set(`${prefix}.bias`, [dim]);
}

/** Adds nn.Linear {weight [out,in], bias [out]} entries to a shape table. */
export function expectLinear(t: ShapeTable, prefix: string, out: number, inDim: number, bias = true): void {
  t.set(`${prefix}.weight`, [out, inDim]);
  if (bias) t.set(`${prefix}.bias`, [out]);
}

/**
 * [batch·tokens, heads·headDim] (or anything reshapeable to [batch, tokens, heads, headDim]) →
 * [batch, heads, tokens, headDim], or [batch, heads, headDim, tokens] when `keysTransposed` so the
 * score MatMul needs no Transpose of its own.
 */
export function toHeads(g: OnnxGraph, x: string, tokens: number, heads: number, headDim: number, keysTransposed = false): string {
  return g.transpose(g.reshape(x, [-1, tokens, heads, headDim]), keysTransposed ? [0, 2, 3, 1] : [0, 2, 1, 3]);
}

/**
 * softmax(q·kᵀ)·v with the scale already folded into q; q [B,H,Tq,D], kT [B,H,D,T], v [B,H,T,D].
 * Returns merged heads, 2-D [B·Tq, H·D].
 */
export function attention(g: OnnxGraph, q: string, kT: string, v: string, width: number): string {
  const probs = g.softmax(g.matMul(q, kT), -1);
  const ctx = g.matMul(probs, v);
  return g.reshape(g.transpose(ctx, [0, 2, 1, 3]), [-1, width]);
}

/** Row 0 (CLS) of each image from a 2-D [B·tokens, width] stream → [B, width]. */
export function clsRows(g: OnnxGraph, x: string, tokens: number, width: number): string {
  return g.gather(g.reshape(x, [-1, tokens, width]), 0, 1);
}

/** Patch tokens (all but CLS) of the 2-D stream → [B, tokens-1, width]. */
export function patchRows(g: OnnxGraph, x: string, tokens: number, width: number): string {
  return g.slice(g.reshape(x, [-1, tokens, width]), [1], [tokens], [1]);
}

/**
 * Patch embedding + CLS + positions as [B·T, W]: Conv → tokens, then a zero row is padded in front and
 * one [T, W] table added whose row 0 is cls + pos[0]. This needs no Shape/Expand to broadcast CLS over
 * a dynamic batch, and is exact (0 + row, and cls + pos[0] is the same fp32 add torch does).
 */
export function embedPatches(
  src: WeightSource,
  pixels: string,
  p: { width: number; patch: number; grid: number; convWeight: string; convBias?: string; cls: Float32Array; pos: Float32Array },
): string {
  const { g } = src;
  const { width: W, patch: P, grid: G } = p;
  const T = G * G + 1;
  const wConv = g.weight(p.convWeight, src.read(p.convWeight), [W, 3, P, P], src.dtype);
  const bConv = p.convBias ? src.f32(p.convBias, [W]) : undefined;
  const conv = g.conv(pixels, wConv, bConv, { kernel: [P, P], strides: [P, P] });
  const tokens = g.transpose(g.reshape(conv, [-1, W, G * G]), [0, 2, 1]);
  const padded = g.pad(tokens, [0, 1, 0, 0, 0, 0]);
  const table = Float32Array.from(p.pos);
  for (let i = 0; i < W; i++) table[i] = Math.fround(p.pos[i] + p.cls[i]);
  const emb = g.add(padded, g.weight('embeddings.cls_pos_table', table, [T, W], 'fp32'));
  return g.reshape(emb, [-1, W]);
}
