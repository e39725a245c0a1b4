export { ImageError, type ImageErrorCode } from './errors.js';
export {
  decodeToRgb8, loadImageBytes, parseDataUrl, sniffFormat, gifFrame0FillColour,
  DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_TIMEOUT_SECONDS,
  type DecodedImage, type ImageFormat, type ImageInput, type ImageLimits,
} from './decode.js';
export { resizeBicubic, resizeBicubicRows, type OutputWindow, type RawImage, type RowSource } from './resample.js';
export {
  normalizeRgb8, padColour, padResizeRgb8, preprocess, preprocessBatch, preprocessToRgb8, resizeCropRgb8, toSquareRgb8,
} from './preprocess.js';
