/** Public library API of llm2clip. */
export { VisionTower, TextAdapter, l2normalize, type TowerOutput, type EncodeOptions } from './vision/tower.js';
export { convertCheckpoint, type ConvertOptions } from './vision/convert.js';
export { synthCheckpoint, type SynthOptions, type SynthPreset } from './vision/synth.js';
export { readManifest, type TowerManifest } from './vision/manifest.js';
export { BUILTIN_TOWERS } from './vision/builtin.js';
export type { TowerSpec, AdapterSpec, PreprocessSpec, Arch } from './vision/spec.js';
export type { ExecutionProvider, SessionOptions } from './vision/session.js';
export { preprocess, preprocessBatch, type ImageInput, type ImageLimits } from './image/preprocess.js';
export { ImageError } from './image/errors.js';
export { openCheckpoint } from './formats/checkpoint.js';
export { readNpy, writeNpy } from './formats/npy.js';
export { CheckpointError, type TensorReader } from './formats/tensor.js';
