/**
 * Decode PNG/JPEG/WebP/GIF the way `PIL.Image.open(f)` does, using sharp only as a decoder: to the pixels of
 * the PIL mode the file opens in (`decodeToPilMode`; the crop pipeline resizes in that mode, as torchvision's
 * Resize on a PIL image does), or straight to `.convert('RGB')` (`decodeToRgb8`). PIL applies no EXIF
 * rotation, no ICC transform and no alpha compositing, so sharp is asked for the file's native colourspace with
 * `ignoreIcc` and no `autoOrient`, and the mode and the conversions are ours (pilmodes.ts):
 * - the mode comes from the PNG header (bit depth, colour type: a tRNS chunk adds no alpha in PIL, so
 *   grey/RGB/palette + tRNS stay L/RGB/P), the GIF palette (an identity grey ramp opens as "L"), libvips'
 *   colourspace for JPEG (L/RGB/CMYK) and its alpha band for WebP (RGB/RGBA);
 * - "P" and "1" are held as their RGB expansion; converting to RGB drops alpha, keeping whatever colour
 *   transparent pixels store; grey (1-, 2-, 4-, 8-bit) is replicated to three channels;
 * - CMYK JPEG uses PIL's naive formula (not sharp's ICC conversion);
 * - 16-bit RGB(A)/grey+alpha keep the high byte, as PIL's "RGB;16B"/"RGBA;16B"/"LA;16B" unpackers do. 16-bit
 *   grey without alpha is held as "L" with its high byte; PIL 9.4 instead opens it as mode "I" and clips to
 *   0..255, which turns almost every pixel white, so this is a deliberate deviation;
 * - GIF: first frame only; pixels that libvips leaves transparent (the transparent index, and any canvas
 *   outside the first frame) get PIL's colour: palette[transparency index], or palette[0] when there is none.
 * Safety: a byte limit before anything is parsed, a pixel limit checked from the header and again by libvips
 * (limitInputPixels), a format allow-list from magic bytes (no SVG/TIFF/PDF parsers reachable), and a timeout.
 */
import { constants as fsc } from 'node:fs';
import { open } from 'node:fs/promises';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { ImageError } from './errors.js';
import { MODE_CHANNELS, modeToRgb8, type ModeImage, type PilMode } from './pilmodes.js';
import type { RawImage } from './resample.js';
import { gifFrame0, gifFrame0FillColour, pngHeader, sniffFormat, type ImageFormat } from './sniff.js';

export { gifFrame0FillColour, sniffFormat, type ImageFormat } from './sniff.js';

export type ImageInput = string | Uint8Array;

export interface ImageLimits {
  /** Largest accepted width*height. Default 178,956,970: the size at which PIL raises DecompressionBombError. */
  readonly maxPixels?: number;
  /** Largest accepted encoded size in bytes (file, buffer or decoded data URL). Default 64 MiB. */
  readonly maxBytes?: number;
  /** libvips processing timeout in seconds. Default 60. */
  readonly timeoutSeconds?: number;
}

export const DEFAULT_MAX_PIXELS = 2 * 89_478_485;
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
export const DEFAULT_TIMEOUT_SECONDS = 60;

export interface DecodedImage extends RawImage {
  readonly channels: 3;
  readonly format: ImageFormat;
}

/** An image in the channel layout of the PIL mode `Image.open` gives it (see PilMode). */
export interface DecodedModeImage extends ModeImage {
  readonly format: ImageFormat;
}

interface ResolvedLimits { maxPixels: number; maxBytes: number; timeoutSeconds: number }

function resolveLimits(l: ImageLimits | undefined): ResolvedLimits {
  const r = {
    maxPixels: l?.maxPixels ?? DEFAULT_MAX_PIXELS,
    maxBytes: l?.maxBytes ?? DEFAULT_MAX_BYTES,
    timeoutSeconds: l?.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
  };
  for (const [k, v] of Object.entries(r)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`limits.${k} must be a positive integer, got ${v}`);
  }
  return r;
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

function tooManyBytes(n: number, max: number): ImageError {
  return new ImageError('TOO_MANY_BYTES', `image is ${n} bytes (${mib(n)}), over the ${max}-byte (${mib(max)}) limit`);
}

const DATA_URL_TYPES = new Set(['png', 'jpeg', 'jpg', 'pjpeg', 'webp', 'gif']);

/** Parse `data:image/<type>[;param]*;base64,<payload>`. Whitespace in the payload is ignored, as browsers do. */
export function parseDataUrl(url: string, maxBytes = DEFAULT_MAX_BYTES): Uint8Array {
  const bad = (why: string) => new ImageError('BAD_DATA_URL', `malformed data URL: ${why}`);
  const comma = url.indexOf(',');
  if (!/^data:/i.test(url)) throw bad('it does not start with "data:"');
  if (comma < 0) throw bad('no "," separates the header from the data');
  const params = url.slice(5, comma).split(';').map((p) => p.trim());
  const mediaType = params[0]!.toLowerCase();
  const m = /^image\/([a-z0-9.+-]+)$/.exec(mediaType);
  if (!m) throw bad(`media type "${params[0]}" is not image/<type>`);
  if (!DATA_URL_TYPES.has(m[1]!)) {
    throw new ImageError('UNSUPPORTED_FORMAT', `data URL type ${mediaType} is not supported (png, jpeg, webp, gif)`);
  }
  if (params.length < 2 || params[params.length - 1]!.toLowerCase() !== 'base64') {
    throw bad('only ";base64," data URLs are supported');
  }
  const payload = url.slice(comma + 1).replace(/[\t\n\f\r ]+/g, '');
  if (payload.length === 0) throw new ImageError('EMPTY_INPUT', 'data URL contains no data');
  if (payload.includes('%')) throw bad('percent-encoded base64 is not supported');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(payload)) {
    const i = payload.search(/[^A-Za-z0-9+/=]|=[^=]/);
    throw bad(`invalid base64 at character ${i < 0 ? payload.length : i}` + (/[-_]/.test(payload) ? ' (base64url is not allowed)' : ''));
  }
  if (payload.length % 4 === 1 || (payload.endsWith('=') && payload.length % 4 !== 0)) {
    throw bad(`base64 has a bad length (${payload.length})`);
  }
  const pad = payload.endsWith('==') ? 2 : payload.endsWith('=') ? 1 : 0;
  const decodedLength = Math.floor((payload.length * 3) / 4) - pad;
  if (decodedLength > maxBytes) throw tooManyBytes(decodedLength, maxBytes);
  return Buffer.from(payload, 'base64');
}

async function readFileLimited(path: string, maxBytes: number): Promise<Uint8Array> {
  let fh;
  try {
    // O_NONBLOCK so that a FIFO or device path cannot block open(); regular files ignore it.
    fh = await open(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch (e) {
    throw new ImageError('READ_FAILED', `cannot open image file ${JSON.stringify(path)}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ImageError('READ_FAILED', `${JSON.stringify(path)} is not a regular file`);
    if (st.size > maxBytes) throw tooManyBytes(st.size, maxBytes);
    const buf = Buffer.allocUnsafe(st.size + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === buf.length) throw tooManyBytes(n, Math.min(st.size, maxBytes)); // grew while we read it
    }
    return buf.subarray(0, n);
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError('READ_FAILED', `cannot read image file ${JSON.stringify(path)}: ${(e as Error).message}`, { cause: e });
  } finally {
    await fh.close();
  }
}

/** Resolve a path, data URL or bytes to encoded bytes, enforcing the byte limit. */
export async function loadImageBytes(input: ImageInput, limits?: ImageLimits): Promise<Uint8Array> {
  const { maxBytes } = resolveLimits(limits);
  let bytes: Uint8Array;
  if (typeof input === 'string') {
    if (input.length === 0) throw new ImageError('EMPTY_INPUT', 'image path is an empty string');
    bytes = /^data:/i.test(input) ? parseDataUrl(input, maxBytes) : await readFileLimited(input, maxBytes);
  } else if (input instanceof Uint8Array) {
    bytes = input;
  } else {
    throw new TypeError('image input must be a file path, a data URL, a Buffer or a Uint8Array');
  }
  if (bytes.length === 0) throw new ImageError('EMPTY_INPUT', 'image is empty (0 bytes)');
  if (bytes.length > maxBytes) throw tooManyBytes(bytes.length, maxBytes);
  return bytes;
}

function decodeError(e: unknown, format: string): ImageError {
  const msg = (e as Error)?.message ?? String(e);
  if (/timeout/i.test(msg)) return new ImageError('TIMEOUT', `decoding the ${format} image timed out`, { cause: e });
  if (/pixel limit/i.test(msg)) return new ImageError('TOO_MANY_PIXELS', `image is over the pixel limit: ${msg}`, { cause: e });
  return new ImageError('DECODE_FAILED', `cannot decode ${format} image: ${msg.split('\n')[0]}`, { cause: e });
}

/**
 * The mode Pillow 9.4's Image.open gives the file (see PilMode), from its header where libvips hides it
 * (PNG bit depth and colour type, GIF palette) and from what libvips reports otherwise.
 */
export function pilModeFor(format: ImageFormat, bytes: Uint8Array, space: string | undefined, channels: number): PilMode {
  const grey = space === 'b-w' || space === 'grey16';
  const fallback: PilMode = grey ? (channels > 1 ? 'LA' : 'L') : channels > 3 ? 'RGBA' : 'RGB';
  switch (format) {
    case 'png': {
      // PngImagePlugin._MODES. 16-bit grey is "I" in PIL; we keep its high byte as "L" (see the file comment).
      // 16-bit grey+alpha is "RGBA" from rawmode "LA;16B": the same pixels as "LA", so it is handled as LA.
      const h = pngHeader(bytes);
      const byType: Record<number, PilMode> = { 0: h?.bitDepth === 1 ? '1' : 'L', 2: 'RGB', 3: 'P', 4: 'LA', 6: 'RGBA' };
      return (h && byType[h.colourType]) ?? fallback;
    }
    case 'jpeg':
      return space === 'cmyk' ? 'CMYK' : grey ? 'L' : 'RGB';
    case 'gif':
      return gifFrame0(bytes)?.paletted === false ? 'L' : 'P';
    case 'webp':
      // WebPImagePlugin: "RGBA" when libwebp reports alpha, else "RGB"; libvips adds an alpha band in that case.
      return channels > 3 ? 'RGBA' : 'RGB';
  }
}

/**
 * Rearrange libvips' raw output (`c` channels, `colour` of them colour, alpha next if present, 8 or 16 bits)
 * into the channel layout of `mode`. `fill` replaces the colour of pixels whose alpha is 0 (GIF).
 */
function toModeLayout(src: Uint8Array | Uint16Array, pixels: number, c: number, colour: 1 | 3, shift: number,
  mode: Exclude<PilMode, 'CMYK'>, fill?: readonly [number, number, number]): Uint8Array {
  const outC = MODE_CHANNELS[mode];
  const grey = mode === 'L' || mode === 'LA';
  const alpha = mode === 'RGBA' || mode === 'LA';
  const hasAlpha = c > colour;
  const g1 = colour === 3 ? 1 : 0;
  const g2 = colour === 3 ? 2 : 0;
  const out = new Uint8Array(pixels * outC);
  for (let i = 0, s = 0, o = 0; i < pixels; i++, s += c, o += outC) {
    if (fill && hasAlpha && src[s + colour] === 0) {
      out[o] = fill[0];
      if (!grey) {
        out[o + 1] = fill[1];
        out[o + 2] = fill[2];
      }
    } else {
      out[o] = src[s]! >> shift; // "L" from a GIF whose palette is the grey ramp: r = g = b
      if (!grey) {
        out[o + 1] = src[s + g1]! >> shift;
        out[o + 2] = src[s + g2]! >> shift;
      }
    }
    if (alpha) out[o + outC - 1] = hasAlpha ? src[s + colour]! >> shift : 255;
  }
  return out;
}

/** Decode to the pixels of the PIL mode `Image.open` would give (see the file comment and PilMode). */
export async function decodeToPilMode(input: ImageInput, limits?: ImageLimits): Promise<DecodedModeImage> {
  const lim = resolveLimits(limits);
  const bytes = await loadImageBytes(input, lim);
  const format = sniffFormat(bytes);
  if (!format) {
    const head = Buffer.from(bytes.subarray(0, 8)).toString('hex');
    throw new ImageError('UNSUPPORTED_FORMAT', `unsupported or unrecognised image format (first bytes ${head}); expected PNG, JPEG, WebP or GIF`);
  }
  // The header read runs without libvips' limit so the refusal below can name the size; decoding has it.
  const make = (limitInputPixels: number | false) => sharp(bytes, {
    limitInputPixels, failOn: 'error', ignoreIcc: true, autoOrient: false, pages: 1, page: 0,
  }).timeout({ seconds: lim.timeoutSeconds });

  let meta: Metadata;
  try {
    meta = await make(false).metadata();
  } catch (e) {
    throw decodeError(e, format);
  }
  const { width, height } = meta;
  if (!width || !height) throw new ImageError('DECODE_FAILED', `${format} image has no usable dimensions`);
  if (width * height > lim.maxPixels) {
    throw new ImageError('TOO_MANY_PIXELS',
      `image is ${width}×${height} = ${width * height} pixels, over the ${lim.maxPixels}-pixel limit`);
  }
  const space = meta.space;
  const sixteen = meta.depth === 'ushort';
  if (!(space === 'srgb' || space === 'b-w' || space === 'cmyk' || space === 'rgb16' || space === 'grey16')) {
    throw new ImageError('UNSUPPORTED_FORMAT', `${format} image in colourspace ${space} is not supported`);
  }

  const mode = pilModeFor(format, bytes, space, meta.channels ?? 0);
  // sharp's 8-bit 'b-w' output drops alpha; for "LA" ask for sRGB, which libvips makes by replicating grey.
  const target = space === 'b-w' && mode === 'LA' ? 'srgb' : space;
  let raw: { data: Buffer; info: OutputInfo };
  try {
    let pipe = make(lim.maxPixels);
    if (space === 'cmyk') pipe = pipe.pipelineColourspace('cmyk').toColourspace('cmyk');
    else pipe = pipe.toColourspace(target);
    raw = await pipe.raw(sixteen ? { depth: 'ushort' } : {}).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw decodeError(e, format);
  }
  const { info } = raw;
  const c = info.channels;
  const pixels = info.width * info.height;
  if (info.width !== width || info.height !== height || raw.data.length !== pixels * c * (sixteen ? 2 : 1)) {
    throw new ImageError('DECODE_FAILED', `${format} decoder returned ${info.width}×${info.height}×${c}, expected ${width}×${height}`);
  }

  let data: Uint8Array;
  if (space === 'cmyk' || mode === 'CMYK') {
    if (space !== 'cmyk' || mode !== 'CMYK' || c < 4) throw new ImageError('DECODE_FAILED', `${format} CMYK image decoded to ${space} with ${c} channels`);
    data = new Uint8Array(pixels * 4);
    for (let i = 0; i < pixels; i++) data.set(raw.data.subarray(i * c, i * c + 4), i * 4);
  } else {
    // Colour channels first, alpha (if any) last; grey has one colour channel.
    const colour = target === 'b-w' || target === 'grey16' ? 1 : 3;
    if (c < colour) throw new ImageError('DECODE_FAILED', `${target} image decoded to ${c} channels`);
    const d = raw.data;
    // sharp's 16-bit raw output is native-endian; copy if the Buffer is not 2-byte aligned.
    const src = !sixteen ? d : d.byteOffset % 2 === 0 ? new Uint16Array(d.buffer, d.byteOffset, pixels * c)
      : new Uint16Array(Uint8Array.from(d).buffer);
    const fill = format === 'gif' ? gifFrame0FillColour(bytes) : undefined;
    data = toModeLayout(src, pixels, c, colour, sixteen ? 8 : 0, mode, fill);
  }
  return { width, height, channels: MODE_CHANNELS[mode], data, mode, format };
}

/** Decode to PIL-equivalent `Image.open(f).convert('RGB')` pixels (see the file comment). */
export async function decodeToRgb8(input: ImageInput, limits?: ImageLimits): Promise<DecodedImage> {
  const img = await decodeToPilMode(input, limits);
  return { ...modeToRgb8(img), channels: 3, format: img.format };
}
