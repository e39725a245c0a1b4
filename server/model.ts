/**
 * Loads the served model: the tower and projector behind the batching embedder, the GGUF in
 * node-llama-cpp, and the VisionLanguageModel over both, with the server's image URL policy as its loader.
 */
import type { Llama, LlamaModel } from 'node-llama-cpp';

import { VisionLanguageModel, type ImageLoader } from '../src/chat/index.js';
import { sha256Hex } from '../src/chat/images.js';
import { openLlama } from '../src/llm/llama.js';
import { BatchingEmbedder } from './batching-embedder.js';
import { checkModelPaths, type ServeConfig } from './config.js';
import { policyImageLoader, type ImagePolicy } from './image-loader.js';
import type { Metrics } from './metrics.js';

export interface ServedModel {
  vlm: VisionLanguageModel;
  embedder: BatchingEmbedder;
}

export interface LoadDeps {
  /** an existing node-llama-cpp instance (tests share one); not disposed by the server */
  llama?: Llama;
  /** overrides of the URL policy (tests substitute DNS) */
  imagePolicy?: Partial<ImagePolicy>;
}

export function imagePolicyOf(c: ServeConfig, extra: Partial<ImagePolicy> = {}): ImagePolicy {
  return {
    maxBytes: c.maxImageBytes,
    fetchHosts: c.fetchHosts,
    allowPrivate: c.fetchAllowPrivate,
    allowAddresses: c.fetchAllowAddresses,
    timeoutMs: c.fetchTimeoutMs,
    maxRedirects: c.fetchMaxRedirects,
    ...(c.fileRoot !== undefined ? { fileRoot: c.fileRoot } : {}),
    ...extra,
  };
}

export async function loadServedModel(c: ServeConfig, metrics: Metrics, deps: LoadDeps = {}): Promise<ServedModel> {
  checkModelPaths(c);
  const session = { ...(c.provider ? { executionProvider: c.provider } : {}), ...(c.towerThreads ? { threads: c.towerThreads } : {}) };
  const embedder = await BatchingEmbedder.load(c.tower, c.projector, session, {
    windowMs: c.imageBatching ? c.imageBatchWindowMs : 0,
    maxBatch: c.imageBatching ? c.imageBatchMax : 1,
    maxPrefetch: c.imageBatching ? 4 * c.imageBatchMax : 0,
    recentCapacity: 1024,
    limits: { maxPixels: c.maxImagePixels, maxBytes: c.maxImageBytes, timeoutSeconds: 10 },
    onBatch: ({ size, ms }) => {
      metrics.imageBatch.observe(size);
      metrics.imageEncode.observe(ms / 1000);
    },
  });
  let llama: Llama | undefined;
  let model: LlamaModel | undefined;
  try {
    llama = deps.llama ?? (await openLlama({ gpu: c.gpu === 'off' ? false : c.gpu, maxThreads: c.threads }));
    model = await llama.loadModel({ modelPath: c.llm });
    let vlm: VisionLanguageModel | undefined;
    const policy = policyImageLoader(imagePolicyOf(c, deps.imagePolicy));
    const loader: ImageLoader = async (url, index) => {
      const bytes = await policy(url, index);
      // start encoding now unless the request is about to be refused for a full queue
      const pool = vlm?.stats().pool;
      if (pool && pool.queued < pool.maxQueue) embedder.prefetch(bytes, sha256Hex(bytes));
      return bytes;
    };
    const rowBytes = embedder.tokensPerImage * embedder.outputDim * 4;
    vlm = await VisionLanguageModel.create({
      model,
      embedder,
      owns: { model: true, embedder: true, llama: deps.llama === undefined },
      sequences: c.parallel,
      maxQueue: c.maxQueue,
      featureCacheBytes: c.featureCacheMb * 1024 * 1024,
      imageLoader: loader,
      ...(c.contextSize !== undefined ? { contextSize: c.contextSize } : {}),
      ...(c.batchSize !== undefined ? { batchSize: c.batchSize } : {}),
      ...(c.template ? { template: c.template } : {}),
    });
    // prefetch skips images the feature cache most likely holds: about as many as fit in it
    embedder.setRecentCapacity(Math.max(0, Math.floor((c.featureCacheMb * 1024 * 1024) / Math.max(1, rowBytes))));
    return { vlm, embedder }; // vlm.dispose() frees the embedder, the model and a llama it created
  } catch (e) {
    await model?.dispose();
    await embedder.dispose();
    if (deps.llama === undefined) await llama?.dispose();
    throw e;
  }
}
