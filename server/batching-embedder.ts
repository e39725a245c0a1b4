/**
 * An ImageEmbedder that encodes the images of concurrent requests together: each image is decoded and
 * preprocessed on its own as soon as it arrives (so a bad image fails only its own request), then waits
 * at most `windowMs` for company and runs through the tower and the projector in one batch. One batch
 * runs at a time; images arriving meanwhile form the next one. `maxBatch: 1, windowMs: 0` turns batching
 * off (one image per run, as the library's TowerProjectorEmbedder does). The tower runs on a worker
 * thread (tower-worker.ts); decoding, preprocessing and the projector stay on the main thread.
 *
 * The library encodes a chat's images only once the chat holds a sequence, so with P sequences at most P
 * chats could ever share a batch, and in steady state they reach that point one by one. `prefetch()`
 * (called by the server's image loader as soon as a request's bytes are read) starts the encode early,
 * so the images of requests still waiting in the queue are batched together; the library's later
 * `embed()` call for the same bytes object gets that result. Images encoded recently are not prefetched
 * again (the library's feature cache most likely holds them), and at most `maxPrefetch` run at once.
 */
import { join } from 'node:path';

import { Projector } from '../projector/runtime.js';
import { PROJECTOR_WEIGHTS } from '../projector/spec.js';
import { ChatError, checkTowerProjector, type ImageEmbedder } from '../src/chat/index.js';
import { sha256Hex } from '../src/chat/images.js';
import { preprocess, type ImageLimits } from '../src/image/preprocess.js';
import { sha256File } from '../src/vision/convert.js';
import { readManifest, TOWER_ONNX, type TowerManifest } from '../src/vision/manifest.js';
import type { SessionOptions } from '../src/vision/session.js';
import type { VisionTower } from '../src/vision/tower.js';
import { TowerWorker } from './tower-worker.js';

export interface BatchingOptions {
  /** how long the first image of a batch waits for others (ms) */
  windowMs: number;
  /** images per tower run */
  maxBatch: number;
  /** decode limits (pixels, bytes, time) applied to every image */
  limits?: ImageLimits;
  /** prefetched encodes in flight at most (0 = no prefetch) */
  maxPrefetch: number;
  /** sha256 of images recently encoded that are not prefetched again (≈ the library's feature-cache entries) */
  recentCapacity: number;
  /** called after every tower+projector run (metrics) */
  onBatch?: (info: { size: number; ms: number }) => void;
}

interface Pending {
  pixels: Float32Array;
  resolve(rows: Float32Array): void;
  reject(e: unknown): void;
}

export class BatchingEmbedder implements ImageEmbedder {
  private readonly queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private disposed = false;
  private readonly early = new WeakMap<Uint8Array, Promise<Float32Array>>();
  private readonly prefetchBySha = new Map<string, Promise<Float32Array>>();
  private readonly recent = new Map<string, true>();
  private recentCapacity: number;
  /** tower runs so far and the images they held (stats for tests and the benchmark) */
  readonly runs: number[] = [];

  private constructor(
    readonly towerDir: string,
    readonly manifest: TowerManifest,
    private readonly worker: TowerWorker,
    readonly projector: Projector,
    readonly identity: string,
    private readonly opts: BatchingOptions,
  ) {
    this.recentCapacity = opts.recentCapacity;
  }

  setRecentCapacity(n: number): void {
    this.recentCapacity = n;
  }

  static async load(towerDir: string, projectorDir: string, session: SessionOptions, opts: BatchingOptions): Promise<BatchingEmbedder> {
    const manifest = readManifest(towerDir);
    const projector = await Projector.load(projectorDir, session);
    let worker: TowerWorker | undefined;
    try {
      // checkTowerProjector reads only the tower's folder and manifest
      checkTowerProjector({ dir: towerDir, manifest } as VisionTower, projector);
      // the same identity TowerProjectorEmbedder computes: tower manifest, projector manifest, weights hash
      const weights = await sha256File(join(projector.dir, PROJECTOR_WEIGHTS));
      const identity = sha256Hex(Buffer.from(JSON.stringify({ tower: manifest, projector: projector.manifest, weights })));
      worker = await TowerWorker.start({
        onnxPath: join(towerDir, TOWER_ONNX),
        imageSize: manifest.imageSize,
        ...(session.executionProvider ? { executionProvider: session.executionProvider } : {}),
        ...(session.threads ? { threads: session.threads } : {}),
      });
      return new BatchingEmbedder(towerDir, manifest, worker, projector, identity, opts);
    } catch (e) {
      await worker?.close();
      await projector.dispose();
      throw e;
    }
  }

  get tokensPerImage(): number {
    return this.manifest.patchTokens;
  }

  get outputDim(): number {
    return this.projector.outputDim;
  }

  /** Starts encoding bytes the library will ask for soon (see the file comment); never throws. */
  prefetch(bytes: Uint8Array, sha256: string): void {
    if (this.disposed || bytes.length === 0 || this.recent.has(sha256)) return;
    let p = this.prefetchBySha.get(sha256);
    if (!p) {
      if (this.prefetchBySha.size >= this.opts.maxPrefetch) return;
      p = this.encode(bytes);
      this.prefetchBySha.set(sha256, p);
      const done = (): void => void this.prefetchBySha.delete(sha256);
      p.then(() => {
        done();
        this.remember(sha256);
      }, done);
    }
    this.early.set(bytes, p);
  }

  embed(bytes: Uint8Array): Promise<Float32Array> {
    const p = this.early.get(bytes);
    if (p) {
      this.early.delete(bytes);
      return p;
    }
    const run = this.encode(bytes);
    if (this.opts.maxPrefetch > 0) void run.then(() => this.remember(sha256Hex(bytes)), () => undefined);
    return run;
  }

  private remember(sha256: string): void {
    this.recent.delete(sha256);
    this.recent.set(sha256, true);
    while (this.recent.size > this.recentCapacity) this.recent.delete(this.recent.keys().next().value!);
  }

  private async encode(bytes: Uint8Array): Promise<Float32Array> {
    if (this.disposed) throw new ChatError('DISPOSED', 'the image embedder was disposed');
    const pixels = await preprocess(bytes, this.manifest.preprocess, this.opts.limits);
    return new Promise<Float32Array>((resolve, reject) => {
      this.queue.push({ pixels, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    if (this.queue.length >= this.opts.maxBatch || this.opts.windowMs <= 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.runBatch();
    } else {
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        void this.runBatch();
      }, this.opts.windowMs);
    }
  }

  private async runBatch(): Promise<void> {
    if (this.running) return;
    const batch = this.queue.splice(0, this.opts.maxBatch);
    if (batch.length === 0) return;
    this.running = true;
    const t0 = performance.now();
    try {
      const n = batch.length;
      const each = 3 * this.manifest.imageSize ** 2;
      const px = new Float32Array(n * each);
      batch.forEach((b, i) => px.set(b.pixels, i * each));
      const features = await this.worker.run(px, n);
      const rows = await this.projector.project(features, n * this.tokensPerImage);
      const per = this.tokensPerImage * this.outputDim;
      if (rows.length !== n * per) throw new ChatError('WIDTH', `projector returned ${rows.length} values for ${n} image(s) of ${this.tokensPerImage} × ${this.outputDim}`);
      batch.forEach((b, i) => b.resolve(rows.slice(i * per, (i + 1) * per)));
      this.runs.push(n);
      this.opts.onBatch?.({ size: n, ms: performance.now() - t0 });
    } catch (e) {
      for (const b of batch) b.reject(e);
    } finally {
      this.running = false;
      // whatever arrived while this batch ran has waited long enough: run it now
      if (this.queue.length > 0) {
        clearTimeout(this.timer);
        this.timer = undefined;
        void this.runBatch();
      }
    }
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    clearTimeout(this.timer);
    for (const b of this.queue.splice(0)) b.reject(new ChatError('DISPOSED', 'the image embedder was disposed'));
    while (this.running) await new Promise((r) => setTimeout(r, 5));
    await this.worker.close();
    await this.projector.dispose();
  }
}
