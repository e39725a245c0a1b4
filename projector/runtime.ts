/**
 * The projector at run time: its weights become a small ONNX graph (our builder, in a private temp dir
 * that is removed once onnxruntime has loaded it), so the [N, W] × [W, H] products run in MLAS, not JS.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { Tensor } from 'onnxruntime-node';
import { SafetensorsReader } from '../src/formats/safetensors.js';
import { RenamedTensors } from '../src/formats/tensor.js';
import { OnnxGraph } from '../src/onnx/graph.js';
import { validateShapes, WeightSource } from '../src/vision/graph-blocks.js';
import { createSession, outputData, type SessionOptions } from '../src/vision/session.js';
import { PROJECTOR_WEIGHTS, ProjectorError, projectorLayers, projectorShapes, readProjectorManifest, type ProjectorManifest } from './spec.js';

export class Projector {
  private constructor(
    readonly dir: string,
    readonly manifest: ProjectorManifest,
    private readonly session: ort.InferenceSession,
  ) {}

  get inputDim(): number {
    return this.manifest.inputDim;
  }

  get outputDim(): number {
    return this.manifest.outputDim;
  }

  static async load(dir: string, opts: SessionOptions = {}): Promise<Projector> {
    const manifest = readProjectorManifest(dir);
    const file = SafetensorsReader.open(join(dir, PROJECTOR_WEIGHTS));
    // A plain Linear has no index prefix; give it one so every type reads `<index>.weight`.
    const weights = manifest.type === 'linear' ? new RenamedTensors(file, new Map([['0.weight', 'weight'], ['0.bias', 'bias']])) : file;
    const tmp = mkdtempSync(join(tmpdir(), 'llm2clip-projector-'));
    try {
      validateShapes(file, projectorShapes(manifest));
      const layers = projectorLayers(manifest);
      const g = new OnnxGraph({ onnxPath: join(tmp, 'projector.onnx'), graphName: 'llm2clip_projector' });
      try {
        const src = new WeightSource(g, weights, 'fp32', layers.length * 2);
        let y = g.input('features', ['tokens', manifest.inputDim]);
        layers.forEach((l, i) => {
          if (i > 0) y = g.gelu(y);
          y = src.linearNamed(y, String(l.index), l.out, l.in);
        });
        g.output(y, 'embeds', ['tokens', manifest.outputDim]);
        await g.finish();
      } catch (e) {
        g.abort();
        throw e;
      }
      const session = await createSession(join(tmp, 'projector.onnx'), opts);
      return new Projector(dir, manifest, session);
    } finally {
      weights.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  }

  /** features: [tokens, inputDim] → [tokens, outputDim]. */
  async project(features: Float32Array, tokens: number): Promise<Float32Array> {
    if (!Number.isInteger(tokens) || tokens < 1 || features.length !== tokens * this.inputDim) {
      throw new ProjectorError(`projector input holds ${features.length} values; expected ${tokens} × ${this.inputDim}`);
    }
    const out = await this.session.run({ features: new Tensor('float32', features, [tokens, this.inputDim]) });
    return outputData(out, 'embeds');
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
