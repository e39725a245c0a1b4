/**
 * LLM2CLIP text adapter (eva_clip `TextProj`) as `outDir/adapter.onnx` + `.data`:
 * input `llm_embeds` [batch, D] → F.normalize → 4 × (x + fc3(GELU(fc0(LN(x))))) → LN → Linear → `text_embeds` [batch, P].
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TensorReader } from '../formats/tensor.js';
import { OnnxGraph } from '../onnx/graph.js';
import type { AdapterSpec } from './spec.js';
import { expectLinear, expectNorm, validateShapes, WeightSource, type ShapeTable } from './graph-blocks.js';
import type { BuildOnnxOptions, BuiltOnnx } from './graph-tower.js';

export const ADAPTER_INPUT = 'llm_embeds';
export const ADAPTER_OUTPUT = 'text_embeds';

const A = 'text_adaptor';

export function adapterShapes(spec: AdapterSpec): ShapeTable {
  const D = spec.inputDim;
  const t: ShapeTable = new Map();
  for (let i = 0; i < spec.blocks; i++) {
    expectNorm(t, `${A}.${i}.ln`, D);
    expectLinear(t, `${A}.${i}.fn.0`, 2 * D, D);
    expectLinear(t, `${A}.${i}.fn.3`, D, 2 * D);
  }
  expectNorm(t, `${A}.${spec.blocks}`, D);
  expectLinear(t, `${A}.${spec.blocks + 1}`, spec.embedDim, D);
  return t;
}

export async function buildAdapterOnnx(
  spec: AdapterSpec,
  weights: TensorReader,
  outDir: string,
  opts: BuildOnnxOptions,
): Promise<BuiltOnnx> {
  const shapes = adapterShapes(spec);
  validateShapes(weights, shapes);
  mkdirSync(outDir, { recursive: true });
  const g = new OnnxGraph({
    onnxPath: join(outDir, 'adapter.onnx'),
    graphName: 'llm2clip_text_adapter',
    metadata: { 'llm2clip.adapter': JSON.stringify(spec), 'llm2clip.dtype': opts.dtype },
  });
  try {
    const src = new WeightSource(g, weights, opts.dtype, shapes.size, opts.onProgress);
    const D = spec.inputDim;
    const eps = spec.layerNormEps;
    const input = g.input(ADAPTER_INPUT, ['batch', D]);
    // F.normalize: x / max(‖x‖₂, 1e-12).
    let x = g.div(input, g.max(g.reduceL2(input, [-1]), g.constF32([1e-12], [])));
    for (let i = 0; i < spec.blocks; i++) {
      x = g.scoped(`block${i}`, () => {
        const h = src.layerNorm(x, `${A}.${i}.ln`, D, eps);
        const up = src.linearNamed(h, `${A}.${i}.fn.0`, 2 * D, D);
        return g.add(x, src.linearNamed(g.gelu(up), `${A}.${i}.fn.3`, D, 2 * D));
      });
    }
    const y = src.linearNamed(src.layerNorm(x, `${A}.${spec.blocks}`, D, eps), `${A}.${spec.blocks + 1}`, spec.embedDim, D);
    g.output(y, ADAPTER_OUTPUT, ['batch', spec.embedDim]);
    return await g.finish();
  } catch (e) {
    g.abort();
    throw e;
  }
}
