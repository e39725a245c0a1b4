/**
 * Float64 building blocks for the reference forward passes. Everything is a plain loop over
 * row-major arrays so each function can be checked against the PyTorch op it stands for.
 * Matrices are stored like nn.Linear / nn.Conv2d weights ([out, in] / [out, in, kh, kw]).
 */
import type { TensorReader } from '../../src/formats/tensor.js';

export type Num = Float32Array | Float64Array;

/** Reads a weight and checks its shape against what the module would create. */
export function weight(weights: TensorReader, name: string, shape: readonly number[]): Float32Array {
  const info = weights.info(name);
  if (!info) throw new Error(`reference: missing weight ${name}`);
  if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`reference: ${name} has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  return weights.readF32(name);
}

/** F.linear: y[r, o] = sum_i x[r, i] * w[o, i] + b[o]  (x: [rows, inDim], w: [outDim, inDim]). */
export function linear(x: Num, rows: number, inDim: number, w: Num, outDim: number, b?: Num): Float64Array {
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i] * w[o * inDim + i];
      y[r * outDim + o] = s;
    }
  }
  return y;
}

/** F.layer_norm over the last dim: biased variance, (x - mean) / sqrt(var + eps) * gamma + beta. */
export function layerNorm(x: Num, rows: number, dim: number, gamma: Num, beta: Num, eps: number): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[r * dim + i];
    mean /= dim;
    let variance = 0;
    for (let i = 0; i < dim; i++) variance += (x[r * dim + i] - mean) ** 2;
    variance /= dim;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = (x[r * dim + i] - mean) * inv * gamma[i] + beta[i];
  }
  return y;
}

/** x += y, elementwise (the residual connections). */
export function addInPlace(x: Float64Array, y: Num): void {
  if (x.length !== y.length) throw new Error('reference: addInPlace length mismatch');
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}

export function map(x: Float64Array, f: (v: number) => number): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = f(x[i]);
  return y;
}

export function sigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}

/** OpenAI CLIP QuickGELU: x * sigmoid(1.702 x). */
export function quickGelu(v: number): number {
  return v * sigmoid(1.702 * v);
}

/** nn.SiLU: x * sigmoid(x). */
export function silu(v: number): number {
  return v * sigmoid(v);
}

/** nn.GELU() (approximate='none'): 0.5 x (1 + erf(x / sqrt 2)). */
export function geluExact(v: number): number {
  return 0.5 * v * (1 + erf(v / Math.SQRT2));
}

/**
 * erf to ~1e-16 relative accuracy, from the everywhere-convergent series with only positive terms
 *   erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_{n>=0} 2^n x^(2n+1) / (1*3*...*(2n+1))
 * (Abramowitz & Stegun 7.1.6). |x| >= 6 gives +-1 to double precision (erfc(6) ~ 2e-17).
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 500; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
}

/**
 * nn.Conv2d(3, width, kernel=P, stride=P) on one image, then .flatten(2).transpose(1, 2):
 * returns [G*G, width] with patch index gy*G + gx. Pixels beyond G*P (when S % P != 0) are ignored, as the conv does.
 */
export function patchEmbed(
  pixels: Num,
  image: number,
  imageSize: number,
  patchSize: number,
  width: number,
  w: Num /* [width, 3, P, P] */,
  b: Num | undefined,
): Float64Array {
  const S = imageSize;
  const P = patchSize;
  const G = Math.floor(S / P);
  const base = image * 3 * S * S;
  const out = new Float64Array(G * G * width);
  for (let gy = 0; gy < G; gy++) {
    for (let gx = 0; gx < G; gx++) {
      for (let o = 0; o < width; o++) {
        let s = b ? b[o] : 0;
        for (let c = 0; c < 3; c++) {
          for (let ky = 0; ky < P; ky++) {
            for (let kx = 0; kx < P; kx++) {
              s += w[((o * 3 + c) * P + ky) * P + kx] * pixels[base + (c * S + gy * P + ky) * S + gx * P + kx];
            }
          }
        }
        out[(gy * G + gx) * width + o] = s;
      }
    }
  }
  return out;
}

/**
 * Multi-head scaled dot-product attention without mask, one image:
 * q, k, v: [T, heads*headDim] (head h occupies columns h*headDim..), out: [T, heads*headDim],
 * out_h = softmax(q_h k_h^T * scale) v_h. This is what both `(q * scale) @ k.transpose(-2, -1)` (eva_clip)
 * and nn.MultiheadAttention / HF CLIPAttention compute.
 */
export function attention(q: Num, k: Num, v: Num, T: number, heads: number, headDim: number, scale: number): Float64Array {
  const D = heads * headDim;
  const out = new Float64Array(T * D);
  const scores = new Float64Array(T);
  for (let h = 0; h < heads; h++) {
    const off = h * headDim;
    for (let i = 0; i < T; i++) {
      let max = -Infinity;
      for (let j = 0; j < T; j++) {
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[i * D + off + d] * k[j * D + off + d];
        scores[j] = s * scale;
        if (scores[j] > max) max = scores[j];
      }
      let denom = 0;
      for (let j = 0; j < T; j++) {
        scores[j] = Math.exp(scores[j] - max);
        denom += scores[j];
      }
      for (let d = 0; d < headDim; d++) {
        let s = 0;
        for (let j = 0; j < T; j++) s += scores[j] * v[j * D + off + d];
        out[i * D + off + d] = s / denom;
      }
    }
  }
  return out;
}

/** F.normalize(x, p=2, dim=-1, eps): x / max(||x||_2, eps), per row. */
export function l2Normalize(x: Num, rows: number, dim: number, eps = 1e-12): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
    const denom = Math.max(Math.sqrt(ss), eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] / denom;
  }
  return y;
}

/** ||a - b||_2 / ||b||_2 (b is the trusted value). */
export function relL2(a: Num, b: Num): number {
  if (a.length !== b.length) throw new Error(`relL2: length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.sqrt(den);
}
