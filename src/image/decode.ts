/**
 * Decode PNG/JPEG/WebP/GIF to 8-bit RGB the way `PIL.Image.open(f).convert('RGB')` does, using sharp only
 * as a decoder. PIL applies no EXIF rotation, no ICC transform and no alpha compositing, so sharp is asked
 * for the file's native colourspace with `ignoreIcc` and no `autoOrient`, and the RGB conversion is ours:
 * - alpha is dropped, keeping whatever colour transparent pixels store;
 * - grey (1-, 2-, 4-, 8-bit, with or without alpha) is replicated to three channels;
 * - CMYK JPEG uses PIL's naive formula (not sharp's ICC conversion);
 * - 16-bit RGB(A)/grey+alpha keep the high byte, as PIL's "RGB;16B"/"LA;16B" unpackers do. 16-bit grey
 *   without alpha also keeps the high byte; PIL 9.4 instead opens it as mode "I" and clips to 0..255, which
 *   turns almost every pixel white, so this is a deliberate deviation;
 * - GIF: first frame only; pixels that libvips leaves transparent (the transparent index, and any canvas
 *   outside the first frame) get PIL's colour: palette[transparency index], or palette[0] when there is none.
 * Safety: a byte limit before anything is parsed, a pixel limit checked from the header and again by libvips
 * (limitInputPixels), a format allow-list from magic bytes (no SVG/TIFF/PDF parsers reachable), and a timeout.
 */
import { constants as fsc } from 'node:fs';
import { open } from 'node:fs/promises';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { ImageError } from './errors.js';
import type { RawImage } from './resample.js';

export type ImageInput = string | Uint8Array;
export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'gif';

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

export function sniffFormat(b: Uint8Array): ImageFormat | undefined {
  const ascii = (o: number, s: string) => b.length >= o + s.length && [...s].every((ch, i) => b[o + i] === ch.charCodeAt(0));
  if (b.length >= 8 && b[0] === 0x89 && ascii(1, 'PNG\r\n\x1a\n')) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  return undefined;
}

/** The colour PIL gives pixels libvips leaves transparent in GIF frame 0, or undefined if not determinable. */
export function gifFrame0FillColour(b: Uint8Array): [number, number, number] | undefined {
  if (b.length < 13) return undefined;
  let palette: Uint8Array | undefined;
  let p = 13;
  if (b[10]! & 0x80) {
    const n = 3 << ((b[10]! & 7) + 1);
    palette = b.subarray(p, p + n);
    p += n;
  }
  let transparency: number | undefined;
  const skipSubBlocks = () => {
    while (p < b.length && b[p] !== 0) p += b[p]! + 1;
    p++;
  };
  while (p < b.length) {
    const tag = b[p++];
    if (tag === 0x21) {
      const label = b[p++];
      if (label === 0xf9 && b[p] === 4 && p + 4 < b.length) transparency = b[p + 1]! & 1 ? b[p + 4] : undefined;
      skipSubBlocks();
    } else if (tag === 0x2c) {
      if (p + 9 > b.length) return undefined;
      const flags = b[p + 8]!;
      if (flags & 0x80) palette = b.subarray(p + 9, p + 9 + (3 << ((flags & 7) + 1)));
      break;
    } else {
      return undefined;
    }
  }
  const idx = transparency ?? 0;
  if (!palette) return [idx, idx, idx]; // PIL mode "L": the index is the grey level
  if (idx * 3 + 2 >= palette.length) return undefined;
  return [palette[idx * 3]!, palette[idx * 3 + 1]!, palette[idx * 3 + 2]!];
}

function decodeError(e: unknown, format: string): ImageError {
  const msg = (e as Error)?.message ?? String(e);
  if (/timeout/i.test(msg)) return new ImageError('TIMEOUT', `decoding the ${format} image timed out`, { cause: e });
  if (/pixel limit/i.test(msg)) return new ImageError('TOO_MANY_PIXELS', `image is over the pixel limit: ${msg}`, { cause: e });
  return new ImageError('DECODE_FAILED', `cannot decode ${format} image: ${msg.split('\n')[0]}`, { cause: e });
}

/** PIL Convert.c cmyk2rgb: R = clip(255 - K - C*(255-K)/255) with PIL's rounding division by 255. */
function cmykToRgb(src: Uint8Array, pixels: number, c: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const nk = 255 - src[i * c + 3]!;
    for (let ch = 0; ch < 3; ch++) {
      const t = src[i * c + ch]! * nk + 128;
      const v = nk - (((t >> 8) + t) >> 8);
      out[i * 3 + ch] = v < 0 ? 0 : v;
    }
  }
  return out;
}

/** Decode to PIL-equivalent RGB (see the file comment). */
export async function decodeToRgb8(input: ImageInput, limits?: ImageLimits): Promise<DecodedImage> {
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

  let raw: { data: Buffer; info: OutputInfo };
  try {
    let pipe = make(lim.maxPixels);
    if (space === 'cmyk') pipe = pipe.pipelineColourspace('cmyk').toColourspace('cmyk');
    else pipe = pipe.toColourspace(space);
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

  let rgb: Uint8Array;
  if (space === 'cmyk') {
    if (c < 4) throw new ImageError('DECODE_FAILED', `CMYK image decoded to ${c} channels`);
    rgb = cmykToRgb(raw.data, pixels, c);
  } else {
    // Colour channels first, alpha (if any) last; grey has one colour channel.
    const colour = space === 'b-w' || space === 'grey16' ? 1 : 3;
    if (c < colour) throw new ImageError('DECODE_FAILED', `${space} image decoded to ${c} channels`);
    const d = raw.data;
    // sharp's 16-bit raw output is native-endian; copy if the Buffer is not 2-byte aligned.
    const src = !sixteen ? d : d.byteOffset % 2 === 0 ? new Uint16Array(d.buffer, d.byteOffset, pixels * c)
      : new Uint16Array(Uint8Array.from(d).buffer);
    const shift = sixteen ? 8 : 0;
    rgb = new Uint8Array(pixels * 3);
    for (let i = 0, s = 0, o = 0; i < pixels; i++, s += c, o += 3) {
      if (colour === 1) {
        rgb[o] = rgb[o + 1] = rgb[o + 2] = src[s]! >> shift;
      } else {
        rgb[o] = src[s]! >> shift;
        rgb[o + 1] = src[s + 1]! >> shift;
        rgb[o + 2] = src[s + 2]! >> shift;
      }
    }
    if (format === 'gif' && c === colour + 1) {
      const fill = gifFrame0FillColour(bytes);
      if (fill) {
        for (let i = 0; i < pixels; i++) {
          if (src[i * c + colour] === 0) rgb.set(fill, i * 3);
        }
      }
    }
  }
  return { width, height, channels: 3, data: rgb, format };
}
