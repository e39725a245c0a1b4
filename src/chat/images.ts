/**
 * Where image bytes may come from. Message content is untrusted: by default only `data:` URLs are read,
 * so a message can never make the pipeline fetch a remote URL or open a local path. Callers that want
 * more (the CLI passing file bytes it read itself, a server with its own fetch policy) supply a loader.
 */
import { createHash } from 'node:crypto';

import { DEFAULT_MAX_BYTES, parseDataUrl } from '../image/decode.js';
import { ImageError } from '../image/errors.js';
import { ChatError } from './errors.js';

/** Resolves the URL string of image number `index` in the conversation to its encoded bytes. */
export type ImageLoader = (url: string, index: number) => Promise<Uint8Array> | Uint8Array;

export interface LoadedImage {
  readonly bytes: Uint8Array;
  /** sha256 of the encoded bytes, hex: the image's identity in the feature cache and the KV record */
  readonly sha256: string;
}

/** Shortens a URL for error messages: never echo a whole data URL or a long query string. */
export function describeUrl(url: string): string {
  return JSON.stringify(url.length > 48 ? `${url.slice(0, 45)}...` : url);
}

/** The default policy: `data:image/<png|jpeg|webp|gif>;base64,...` only, at most `maxBytes` decoded. */
export function dataUrlLoader(opts: { maxBytes?: number } = {}): ImageLoader {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  return (url, index) => {
    if (!/^data:/i.test(url)) {
      throw new ChatError(
        'IMAGE',
        `image ${index}: ${describeUrl(url)} is not a data: URL; only data:image/...;base64 URLs are accepted ` +
          '(remote URLs and file paths in messages are never read unless the caller passes an image loader that allows them)',
      );
    }
    try {
      return parseDataUrl(url, maxBytes);
    } catch (e) {
      if (e instanceof ImageError) throw new ChatError('IMAGE', `image ${index}: ${e.message}`, { cause: e });
      throw e;
    }
  };
}

/**
 * A loader for bytes the caller already holds (the CLI reads `--image` files itself and refers to them
 * by key). Unknown keys are refused rather than handed to another loader.
 */
export function bytesLoader(images: ReadonlyMap<string, Uint8Array>): ImageLoader {
  return (url, index) => {
    const b = images.get(url);
    if (!b) throw new ChatError('IMAGE', `image ${index}: ${describeUrl(url)} is not one of the images this caller provided`);
    return b;
  };
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Loads every image of a conversation through the loader and hashes it. */
export async function loadImages(urls: readonly string[], loader: ImageLoader): Promise<LoadedImage[]> {
  const out: LoadedImage[] = [];
  for (let i = 0; i < urls.length; i++) {
    const bytes = await loader(urls[i]!, i);
    if (!(bytes instanceof Uint8Array)) throw new ChatError('IMAGE', `image ${i}: the image loader returned ${typeof bytes}, not a Uint8Array`);
    if (bytes.length === 0) throw new ChatError('IMAGE', `image ${i}: the image is empty (0 bytes)`);
    out.push({ bytes, sha256: sha256Hex(bytes) });
  }
  return out;
}
