/**
 * Image rows with reuse: a byte-bounded LRU of projected features keyed by content (embedder identity +
 * sha256 of the image bytes), and de-duplication of concurrent encodes of the same image (two chats
 * asking about one picture at once run the tower once).
 */
import type { ImageEmbedder } from './embedder.js';
import { ChatError } from './errors.js';
import { FeatureCache, type FeatureCacheStats } from './feature-cache.js';

export class ImageFeatures {
  private readonly cache: FeatureCache;
  private readonly inflight = new Map<string, Promise<Float32Array>>();
  /** images run through the embedder so far */
  encodes = 0;

  constructor(
    readonly embedder: ImageEmbedder,
    cacheBytes: number,
  ) {
    this.cache = new FeatureCache(cacheBytes);
  }

  /** The content key of an image: rows depend on the bytes and on the whole embedder. */
  keyFor(sha256: string): string {
    return `${this.embedder.identity}:${sha256}`;
  }

  /** [tokensPerImage, outputDim] rows of the image; `encoded` says whether the embedder ran for this call. */
  async get(key: string, bytes: Uint8Array): Promise<{ rows: Float32Array; encoded: boolean }> {
    const hit = this.cache.get(key);
    if (hit) return { rows: hit, encoded: false };
    let p = this.inflight.get(key);
    const encoded = p === undefined;
    if (!p) {
      p = this.embedder.embed(bytes).then((rows) => this.accept(key, rows));
      const cleanup = (): void => void this.inflight.delete(key);
      p.then(cleanup, cleanup);
      this.inflight.set(key, p);
    }
    return { rows: await p, encoded };
  }

  stats(): FeatureCacheStats {
    return this.cache.stats();
  }

  private accept(key: string, rows: Float32Array): Float32Array {
    const e = this.embedder;
    if (!(rows instanceof Float32Array) || rows.length !== e.tokensPerImage * e.outputDim) {
      throw new ChatError('WIDTH', `the image embedder returned ${(rows as { length?: number } | null)?.length} values; expected ${e.tokensPerImage} × ${e.outputDim}`);
    }
    this.encodes++;
    this.cache.set(key, rows);
    return rows;
  }
}
