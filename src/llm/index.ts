// Public surface of the LLM bridge: image-embedding injection into node-llama-cpp sequences.
export {
  injectEmbeddings,
  injectionInfo,
  readLastLogits,
  type InjectEmbeddingsOptions,
  type InjectEmbeddingsResult,
} from './inject.js';
export {
  SUPPORTED_NODE_LLAMA_CPP,
  defaultNativeAddonPath,
  installedNodeLlamaCppVersion,
  loadNativeAddon,
  type AttachInfo,
  type NativeEmbdAddon,
  type NativeInfo,
} from './native.js';
export {
  ContextSpaceError,
  EmbeddingShapeError,
  InjectionError,
  NativeAddonError,
  SequenceDisposedError,
  UnsupportedModelError,
  type InjectionErrorCode,
} from './errors.js';
