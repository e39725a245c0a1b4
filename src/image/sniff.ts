/**
 * Header sniffing: the container format from magic bytes, and the facts about a file that decide which mode
 * Pillow 9.4 opens it in (which libvips does not report): a PNG's IHDR bit depth and colour type, and a GIF's
 * frame-0 palette and transparency. Pure functions over the encoded bytes; nothing here decodes pixels.
 */

export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'gif';

export function sniffFormat(b: Uint8Array): ImageFormat | undefined {
  const ascii = (o: number, s: string) => b.length >= o + s.length && [...s].every((ch, i) => b[o + i] === ch.charCodeAt(0));
  if (b.length >= 8 && b[0] === 0x89 && ascii(1, 'PNG\r\n\x1a\n')) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  return undefined;
}

/** A PNG's IHDR bit depth and colour type, or undefined when the first chunk is not a plausible IHDR. */
export function pngHeader(b: Uint8Array): { bitDepth: number; colourType: number } | undefined {
  if (b.length < 29 || b[12] !== 0x49 || b[13] !== 0x48 || b[14] !== 0x44 || b[15] !== 0x52) return undefined;
  return { bitDepth: b[24]!, colourType: b[25]! };
}

export interface GifFrame0 {
  /**
   * Whether PIL opens frame 0 as mode "P". GifImagePlugin drops a palette that is the identity grey ramp
   * (entry i = (i, i, i) for every entry) and then opens the frame as mode "L", the index being the grey level.
   * The frame's palette is its local one if it has one (even an identity one), else the global one.
   */
  readonly paletted: boolean;
  /** The colour PIL gives pixels libvips leaves transparent, or undefined if not determinable. */
  readonly fill: [number, number, number] | undefined;
}

/** GifImagePlugin._is_palette_needed. */
function paletteNeeded(p: Uint8Array): boolean {
  for (let i = 0; i + 2 < p.length; i += 3) {
    const n = i / 3;
    if (!(p[i] === n && p[i + 1] === n && p[i + 2] === n)) return true;
  }
  return false;
}

/** What PIL makes of a GIF's first frame (see GifFrame0), or undefined if the headers cannot be walked. */
export function gifFrame0(b: Uint8Array): GifFrame0 | undefined {
  if (b.length < 13) return undefined;
  let global: Uint8Array | undefined;
  let p = 13;
  if (b[10]! & 0x80) {
    const n = 3 << ((b[10]! & 7) + 1);
    global = b.subarray(p, p + n);
    p += n;
  }
  let local: Uint8Array | undefined;
  let transparency: number | undefined;
  const skipSubBlocks = () => {
    while (p < b.length && b[p] !== 0) p += b[p]! + 1;
    p++;
  };
  for (;;) {
    if (p >= b.length) return undefined;
    const tag = b[p++];
    if (tag === 0x21) {
      const label = b[p++];
      if (label === 0xf9 && b[p] === 4 && p + 4 < b.length) transparency = b[p + 1]! & 1 ? b[p + 4] : undefined;
      skipSubBlocks();
    } else if (tag === 0x2c) {
      if (p + 9 > b.length) return undefined;
      const flags = b[p + 8]!;
      if (flags & 0x80) local = b.subarray(p + 9, p + 9 + (3 << ((flags & 7) + 1)));
      break;
    } else {
      return undefined;
    }
  }
  const palette = local ?? global;
  const paletted = palette !== undefined && paletteNeeded(palette);
  const idx = transparency ?? 0;
  let fill: [number, number, number] | undefined;
  if (!paletted) fill = [idx, idx, idx]; // mode "L": the index is the grey level
  else if (idx * 3 + 2 < palette.length) fill = [palette[idx * 3]!, palette[idx * 3 + 1]!, palette[idx * 3 + 2]!];
  return { paletted, fill };
}

/** The colour PIL gives pixels libvips leaves transparent in GIF frame 0, or undefined if not determinable. */
export function gifFrame0FillColour(b: Uint8Array): [number, number, number] | undefined {
  return gifFrame0(b)?.fill;
}
