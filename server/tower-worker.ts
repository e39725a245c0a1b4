/**
 * The vision tower's onnxruntime session on a worker thread. onnxruntime-node's `session.run` blocks the
 * calling thread for the whole forward pass (seconds for an L-14-336 tower on a CPU), which on the main
 * thread would freeze every HTTP request, SSE stream and token of the other sequences meanwhile. The
 * worker takes preprocessed pixels [n,3,S,S] and returns `patch_features` [n,P,W]; the session is
 * created with the same options as src/vision/session.ts. The worker source is plain CommonJS kept in
 * this file (eval), so it runs the same from the TypeScript sources (tests) and from dist/.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

import { ChatError } from '../src/chat/index.js';

const SOURCE = `
const { parentPort, workerData: w } = require('node:worker_threads');
const ort = require(w.ortPath);
(async () => {
  const supported = ort.listSupportedBackends().map((b) => b.name);
  if (!supported.includes(w.executionProvider)) {
    throw new Error("execution provider '" + w.executionProvider + "' is not available in this onnxruntime-node build (available: " + supported.join(', ') + ')');
  }
  const session = await ort.InferenceSession.create(w.onnxPath, {
    executionProviders: [w.executionProvider], graphOptimizationLevel: 'all', executionMode: 'sequential',
    interOpNumThreads: 1, enableCpuMemArena: true, ...(w.threads ? { intraOpNumThreads: w.threads } : {}),
  });
  parentPort.on('message', async ({ id, pixels, count }) => {
    try {
      const out = await session.run({ pixel_values: new ort.Tensor('float32', pixels, [count, 3, w.imageSize, w.imageSize]) });
      const t = out.patch_features;
      if (!t || t.type !== 'float32') throw new Error("model output 'patch_features' missing or not float32");
      const features = new Float32Array(t.data);
      parentPort.postMessage({ id, features }, [features.buffer]);
    } catch (e) {
      parentPort.postMessage({ id, error: String((e && e.message) || e) });
    }
  });
  parentPort.postMessage({ ready: true });
})().catch((e) => parentPort.postMessage({ fatal: String((e && e.message) || e) }));
`;

export interface TowerWorkerOptions {
  onnxPath: string;
  imageSize: number;
  executionProvider?: string;
  threads?: number;
}

type Reply = { ready: true } | { fatal: string } | { id: number; features: Float32Array } | { id: number; error: string };

export class TowerWorker {
  private readonly pending = new Map<number, { resolve(f: Float32Array): void; reject(e: unknown): void }>();
  private nextId = 0;
  private failed: Error | undefined;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: Reply) => {
      if (!('id' in m)) return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if ('error' in m) p?.reject(new ChatError('STATE', `the vision tower failed: ${m.error}`));
      else p?.resolve(m.features);
    });
    const fail = (e: Error): void => {
      this.failed ??= e;
      for (const p of this.pending.values()) p.reject(new ChatError('STATE', `the vision tower worker stopped: ${e.message}`, { cause: e }));
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  }

  static async start(o: TowerWorkerOptions): Promise<TowerWorker> {
    const ortPath = createRequire(import.meta.url).resolve('onnxruntime-node');
    const worker = new Worker(SOURCE, {
      eval: true,
      workerData: { ortPath, onnxPath: o.onnxPath, imageSize: o.imageSize, executionProvider: o.executionProvider ?? 'cpu', threads: o.threads },
    });
    worker.unref(); // the HTTP server keeps the process alive, not the worker
    try {
      await new Promise<void>((resolve, reject) => {
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`the tower worker exited (code ${code}) while loading`)));
        worker.on('message', function first(m: Reply) {
          if ('ready' in m) resolve();
          else if ('fatal' in m) reject(new Error(`${o.onnxPath}: onnxruntime could not load the tower: ${m.fatal}`));
          else return;
          worker.off('message', first);
        });
      });
    } catch (e) {
      await worker.terminate();
      throw e;
    }
    return new TowerWorker(worker);
  }

  /** pixels [count,3,S,S] (transferred: do not use it afterwards) → patch features [count,P,W]. */
  run(pixels: Float32Array, count: number): Promise<Float32Array> {
    if (this.failed) return Promise.reject(new ChatError('STATE', `the vision tower worker stopped: ${this.failed.message}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, pixels, count }, [pixels.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    this.failed ??= new Error('closed');
    await this.worker.terminate();
  }
}
