/**
 * Image → LLM input rows. The default embedder runs the vision tower (patch features [P, W]) and the
 * projector ([P, W] → [P, D]); the pipeline only needs the ImageEmbedder interface, so a benchmark or
 * a test can substitute another source of rows (e.g. the LLM's own token embeddings for parity).
 */
import { join } from 'node:path';

import { Projector } from '../../projector/runtime.js';
import { PROJECTOR_WEIGHTS } from '../../projector/spec.js';
import { sha256File } from '../vision/convert.js';
import type { SessionOptions } from '../vision/session.js';
import { VisionTower } from '../vision/tower.js';
import { ChatError } from './errors.js';
import { sha256Hex } from './images.js';

export interface ImageEmbedder {
  /** Stable identity of the whole image→rows function; part of every feature-cache and KV key. */
  readonly identity: string;
  /** Rows each image becomes (LLaVA: all patch tokens, no CLS). */
  readonly tokensPerImage: number;
  /** Row width; must equal the LLM's input embedding width. */
  readonly outputDim: number;
  /** Encoded image bytes → Float32Array [tokensPerImage, outputDim]. */
  embed(bytes: Uint8Array): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** Checks that the projector fits the tower it will be fed from, naming both sides. */
export function checkTowerProjector(tower: VisionTower, projector: Projector): void {
  const t = tower.manifest;
  if (projector.inputDim !== t.width) {
    throw new ChatError(
      'WIDTH',
      `projector ${projector.dir} takes ${projector.inputDim}-wide features but tower ${tower.dir} produces ${t.width}-wide patch features`,
    );
  }
  const trained = projector.manifest.tower;
  if (trained && (trained.arch !== t.arch || trained.width !== t.width || trained.patchTokens !== t.patchTokens)) {
    throw new ChatError(
      'WIDTH',
      `projector ${projector.dir} was made for a ${trained.arch} tower (width ${trained.width}, ${trained.patchTokens} patches), ` +
        `but tower ${tower.dir} is ${t.arch} (width ${t.width}, ${t.patchTokens} patches)`,
    );
  }
}

export class TowerProjectorEmbedder implements ImageEmbedder {
  // onnxruntime sessions are thread-safe, but two chats encoding at once would only fight over the
  // same cores; one encode at a time keeps each one's latency predictable.
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly tower: VisionTower,
    readonly projector: Projector,
    readonly identity: string,
  ) {}

  static async load(towerDir: string, projectorDir: string, session: SessionOptions = {}): Promise<TowerProjectorEmbedder> {
    const tower = await VisionTower.load(towerDir, session);
    let projector: Projector | undefined;
    try {
      projector = await Projector.load(projectorDir, session);
      return await TowerProjectorEmbedder.create(tower, projector);
    } catch (e) {
      await projector?.dispose();
      await tower.dispose();
      throw e;
    }
  }

  /** Wraps already-loaded stages (the embedder then owns them: dispose() releases both). */
  static async create(tower: VisionTower, projector: Projector): Promise<TowerProjectorEmbedder> {
    checkTowerProjector(tower, projector);
    // The tower manifest pins the source checkpoint (sha256), dtype and preprocessing; the projector is
    // identified by its manifest and the hash of its weights, so a retrained projector never hits old rows.
    const weights = await sha256File(join(projector.dir, PROJECTOR_WEIGHTS));
    const identity = sha256Hex(Buffer.from(JSON.stringify({ tower: tower.manifest, projector: projector.manifest, weights })));
    return new TowerProjectorEmbedder(tower, projector, identity);
  }

  get tokensPerImage(): number {
    return this.tower.manifest.patchTokens;
  }

  get outputDim(): number {
    return this.projector.outputDim;
  }

  embed(bytes: Uint8Array): Promise<Float32Array> {
    const run = this.chain.then(async () => {
      // Bytes only: a string input would be read as a file path by the tower.
      const out = await this.tower.encode([bytes]);
      const rows = await this.projector.project(out.patchFeatures, out.patchTokens);
      if (rows.length !== this.tokensPerImage * this.outputDim) {
        throw new ChatError('WIDTH', `projector returned ${rows.length} values for ${this.tokensPerImage} patches of width ${this.outputDim}`);
      }
      return rows;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  async dispose(): Promise<void> {
    await this.projector.dispose();
    await this.tower.dispose();
  }
}
