export { ImageError, type ImageErrorCode } from './errors.js';
export {
  decodeToPilMode, decodeToRgb8, loadImageBytes, parseDataUrl, pilModeFor,
  DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_TIMEOUT_SECONDS,
  type DecodedImage, type DecodedModeImage, type ImageInput, type ImageLimits,
} from './decode.js';
export { gifFrame0, gifFrame0FillColour, pngHeader, sniffFormat, type GifFrame0, type ImageFormat } from './sniff.js';
export {
  cmykToRgb, MODE_CHANNELS, modeToRgb8, mulDiv255, premultipliedRows, premultiplyRow, unpremultiplyToRgb,
  type ModeImage, type PilMode,
} from './pilmodes.js';
export {
  nearestIndices, resizeBicubic, resizeBicubicRows, resizeNearest, type OutputWindow, type RawImage, type RowSource,
} from './resample.js';
export {
  normalizeRgb8, padColour, padResizeRgb8, preprocess, preprocessBatch, preprocessToRgb8, resizeCropGeometry, resizeCropMode,
  resizeCropRgb8, toSquareRgb8,
} from './preprocess.js';
