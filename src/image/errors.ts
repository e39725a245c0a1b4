export type ImageErrorCode =
  | 'EMPTY_INPUT'
  | 'BAD_DATA_URL'
  | 'READ_FAILED'
  | 'TOO_MANY_BYTES'
  | 'TOO_MANY_PIXELS'
  | 'UNSUPPORTED_FORMAT'
  | 'DECODE_FAILED'
  | 'TIMEOUT';

/** Any problem with an image the caller supplied (as opposed to a bug or a bad option, which throw RangeError). */
export class ImageError extends Error {
  override readonly name = 'ImageError';
  readonly code: ImageErrorCode;
  /** Position in the batch, for errors from preprocessBatch. */
  readonly inputIndex?: number;

  constructor(code: ImageErrorCode, message: string, options?: { cause?: unknown; inputIndex?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options?.inputIndex !== undefined) this.inputIndex = options.inputIndex;
  }
}
