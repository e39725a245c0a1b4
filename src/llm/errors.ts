// Typed errors of the embedding-injection bridge. Every error carries a stable `code`
// so callers (the chat pipeline, the CLI) can react without parsing messages.

export type InjectionErrorCode =
  | 'NATIVE_UNAVAILABLE' // addon not built, or platform without a verified layout
  | 'VERSION' // installed node-llama-cpp is not the one the layout was verified for
  | 'INTERNALS' // node-llama-cpp's private fields/locks are not what we expect
  | 'LAYOUT' // native objects failed the vtable/pointer cross-checks
  | 'SYMBOLS' // libllama of the binding lacks a function we need
  | 'ARGUMENT'
  | 'WIDTH' // rows are not [n, n_embd_inp]
  | 'CONTEXT_FULL'
  | 'DISPOSED'
  | 'POSITION' // KV cache and node-llama-cpp's bookkeeping disagree
  | 'UNSUPPORTED_MODEL'
  | 'DECODE';

export class InjectionError extends Error {
  readonly code: InjectionErrorCode;

  constructor(code: InjectionErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InjectionError';
    this.code = code;
  }
}

/** The native addon cannot be used here (not built, wrong node-llama-cpp, drifted internals). */
export class NativeAddonError extends InjectionError {
  constructor(code: 'NATIVE_UNAVAILABLE' | 'VERSION' | 'INTERNALS' | 'LAYOUT' | 'SYMBOLS', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'NativeAddonError';
  }
}

/** The embedding rows do not match the model's input width. */
export class EmbeddingShapeError extends InjectionError {
  constructor(
    message: string,
    readonly expectedWidth: number,
    readonly length: number,
  ) {
    super('WIDTH', message);
    this.name = 'EmbeddingShapeError';
  }
}

/** Not enough free positions in the sequence; the injection never context-shifts by itself. */
export class ContextSpaceError extends InjectionError {
  constructor(
    readonly needed: number,
    readonly free: number,
  ) {
    super('CONTEXT_FULL', `not enough free context for ${needed} embedding rows: ${free} positions left in the sequence`);
    this.name = 'ContextSpaceError';
  }
}

export class SequenceDisposedError extends InjectionError {
  constructor(what = 'context sequence') {
    super('DISPOSED', `the ${what} is disposed`);
    this.name = 'SequenceDisposedError';
  }
}

export class UnsupportedModelError extends InjectionError {
  constructor(message: string) {
    super('UNSUPPORTED_MODEL', message);
    this.name = 'UnsupportedModelError';
  }
}

const nativeCodes: Record<string, InjectionErrorCode> = {
  ERR_LLM2CLIP_ARGUMENT: 'ARGUMENT',
  ERR_LLM2CLIP_WIDTH: 'WIDTH',
  ERR_LLM2CLIP_CONTEXT: 'CONTEXT_FULL',
  ERR_LLM2CLIP_DISPOSED: 'DISPOSED',
  ERR_LLM2CLIP_POSITION: 'POSITION',
  ERR_LLM2CLIP_UNSUPPORTED: 'UNSUPPORTED_MODEL',
  ERR_LLM2CLIP_DECODE: 'DECODE',
  ERR_LLM2CLIP_LAYOUT: 'LAYOUT',
  ERR_LLM2CLIP_SYMBOLS: 'SYMBOLS',
};

/** Maps an error thrown by the addon (it sets `code`) onto our typed errors. */
export function fromNativeError(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (!(err instanceof Error) || typeof code !== 'string' || !(code in nativeCodes)) return err;
  const mapped = nativeCodes[code]!;
  if (mapped === 'LAYOUT' || mapped === 'SYMBOLS') return new NativeAddonError(mapped, err.message, { cause: err });
  if (mapped === 'DISPOSED') return Object.assign(new SequenceDisposedError('context or model'), { cause: err });
  if (mapped === 'UNSUPPORTED_MODEL') return new UnsupportedModelError(err.message);
  return new InjectionError(mapped, err.message, { cause: err });
}
