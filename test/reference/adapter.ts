/**
 * Reference of LLM2CLIP's text adapter, `TextProj` in microsoft/LLM2CLIP `llm2clip/eva_clip/model.py`, in float64:
 *
 *   x = F.normalize(llm_emb, p=2, dim=-1)                     # TextProj.forward, l2_norm=True (eps 1e-12)
 *   for b in 0..blocks-1:   x = x + fn(ln(x))                  # LinearBlock: fn = Sequential(Linear(D, 2D), GELU(), Dropout, Linear(2D, D))
 *   x = text_adaptor[blocks](x)                                # nn.LayerNorm(D)
 *   y = text_adaptor[blocks + 1](x)                            # nn.Linear(D, P, bias=True)
 */
import type { TensorReader } from '../../src/formats/tensor.js';
import type { AdapterSpec } from '../../src/vision/spec.js';
import { addInPlace, geluExact, l2Normalize, layerNorm, linear, map, weight } from './linalg.js';

/** LinearBlock expansion_factor = 2. */
export function adapterHidden(spec: AdapterSpec): number {
  return 2 * spec.inputDim;
}

/** Returns [n, spec.embedDim]; the output is not L2-normalised (callers normalise before the cosine). */
export function referenceAdapter(spec: AdapterSpec, weights: TensorReader, llmEmbeds: Float32Array, n: number): Float64Array {
  const D = spec.inputDim;
  const H = adapterHidden(spec);
  const eps = spec.layerNormEps;
  if (llmEmbeds.length !== n * D) throw new Error('reference: llmEmbeds length mismatch');
  const wt = (name: string, shape: readonly number[]) => weight(weights, name, shape);

  const x = l2Normalize(llmEmbeds, n, D, 1e-12);
  for (let b = 0; b < spec.blocks; b++) {
    const p = `text_adaptor.${b}.`;
    const h = layerNorm(x, n, D, wt(`${p}ln.weight`, [D]), wt(`${p}ln.bias`, [D]), eps);
    const f0 = map(linear(h, n, D, wt(`${p}fn.0.weight`, [H, D]), H, wt(`${p}fn.0.bias`, [H])), geluExact);
    addInPlace(x, linear(f0, n, H, wt(`${p}fn.3.weight`, [D, H]), D, wt(`${p}fn.3.bias`, [D])));
  }
  const ln = `text_adaptor.${spec.blocks}.`;
  const out = `text_adaptor.${spec.blocks + 1}.`;
  const y = layerNorm(x, n, D, wt(`${ln}weight`, [D]), wt(`${ln}bias`, [D]), eps);
  return linear(y, n, D, wt(`${out}weight`, [spec.embedDim, D]), spec.embedDim, wt(`${out}bias`, [spec.embedDim]));
}
