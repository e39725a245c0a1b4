import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  decodeToPilMode, decodeToRgb8, gifFrame0, ImageError, modeToRgb8, parseDataUrl, pilModeFor, type ImageErrorCode,
} from '../../src/image/index.js';
import { inputPath, manifest, maxAbsDiff, u8 } from './helpers.js';

/**
 * Max abs difference allowed between our decode and PIL's convert('RGB'), per input. 0 everywhere,
 * JPEG included: sharp's mozjpeg and Debian PIL's libjpeg-turbo 2.1.5 share the ISLOW IDCT and fancy
 * upsampling and agreed bit for bit on these fixtures and on 95 extra JPEGs (4:4:4/4:2:2/4:2:0, baseline
 * and progressive, q50..100, odd sizes, grey). A non-zero value here would mean a decoder change in sharp.
 */
const MAX_ABS: Record<string, number> = { 'photo_97x61.jpg': 0, 'gray_40x26.jpg': 0, 'cmyk_32x24.jpg': 0 };

async function expectImageError(p: Promise<unknown>, code: ImageErrorCode, message?: RegExp): Promise<ImageError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(ImageError);
  expect((e as ImageError).code).toBe(code);
  if (message) expect((e as ImageError).message).toMatch(message);
  return e as ImageError;
}

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A real 1x1 PNG whose IHDR (with a valid CRC) claims width x height: cheap decompression-bomb stand-in. */
async function pngClaiming(width: number, height: number): Promise<Buffer> {
  const png = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#808080' } }).png().toBuffer();
  const b = Buffer.from(png);
  b.writeUInt32BE(width, 16);
  b.writeUInt32BE(height, 20);
  b.writeUInt32BE(crc32(b.subarray(12, 29)), 29);
  return b;
}

describe('decodeToRgb8 vs PIL Image.open().convert("RGB")', () => {
  for (const d of manifest.decode) {
    it(`${d.input} (PIL mode ${d.pilMode}) matches with max abs error ${MAX_ABS[d.input] ?? 0}`, async () => {
      const img = await decodeToRgb8(inputPath(d.input));
      expect([img.height, img.width, img.channels]).toEqual(d.rgb.shape);
      expect(maxAbsDiff(img.data, u8(d.rgb))).toBeLessThanOrEqual(MAX_ABS[d.input] ?? 0);
    });
  }

  it('gives the same pixels from a path, a Buffer, a plain Uint8Array and a data URL', async () => {
    for (const name of ['rgba_40x30.png', 'photo_97x61.jpg', 'trans_36x28.gif', 'rgba_64x48.webp']) {
      const bytes = readFileSync(inputPath(name));
      const ref = (await decodeToRgb8(inputPath(name))).data;
      expect((await decodeToRgb8(bytes)).data).toEqual(ref);
      expect((await decodeToRgb8(new Uint8Array(bytes))).data).toEqual(ref);
      const type = name.endsWith('.jpg') ? 'jpeg' : name.split('.').pop();
      expect((await decodeToRgb8(`data:image/${type};base64,${bytes.toString('base64')}`)).data).toEqual(ref);
    }
  });

  it('does not apply EXIF orientation (the JPEG fixture has Orientation=6)', async () => {
    expect((await sharp(inputPath('photo_97x61.jpg')).metadata()).orientation).toBe(6);
    const img = await decodeToRgb8(inputPath('photo_97x61.jpg'));
    expect([img.width, img.height]).toEqual([97, 61]);
  });

  it('ignores embedded ICC profiles, which would change these fixtures a lot', async () => {
    // The PNG and JPEG fixtures carry an sRGB profile with red/blue colorants swapped.
    for (const name of ['rgb_97x61.png', 'photo_97x61.jpg']) {
      const honoured = await sharp(inputPath(name)).toColourspace('srgb').raw().toBuffer();
      const pil = u8(manifest.decode.find((d) => d.input === name)!.rgb);
      expect(maxAbsDiff(honoured, pil)).toBeGreaterThan(50);
    }
  });

  it('GIF fixtures exercise the transparent-pixel path (libvips leaves them at alpha 0)', async () => {
    for (const name of ['trans_36x28.gif', 'canvas_44x31.gif']) {
      const { data, info } = await sharp(inputPath(name)).raw().toBuffer({ resolveWithObject: true });
      expect(info.channels).toBe(4);
      expect(data.some((v, i) => i % 4 === 3 && v === 0)).toBe(true);
    }
  });

  it('16-bit grey keeps the high byte (deliberate deviation: PIL 9.4 clips mode "I" to 0..255)', async () => {
    const v = Uint16Array.from({ length: 12 }, (_, i) => i * 5957);
    const png = await sharp(v, { raw: { width: 4, height: 3, channels: 1 } }).toColourspace('grey16').png().toBuffer();
    expect((await sharp(png).metadata()).depth).toBe('ushort');
    const img = await decodeToRgb8(png);
    expect(Array.from(img.data)).toEqual(Array.from(v).flatMap((x) => [x >> 8, x >> 8, x >> 8]));
  });
});

describe('decodeToPilMode: the mode PIL opens the file in', () => {
  for (const d of manifest.decode) {
    it(`${d.input} opens as "${d.pilMode}", and converts to the same RGB`, async () => {
      const img = await decodeToPilMode(inputPath(d.input));
      expect(img.mode).toBe(d.pilMode);
      expect(modeToRgb8(img).data).toEqual(u8(d.rgb));
    });
  }

  const png = (bitDepth: number, colourType: number) => {
    const b = new Uint8Array(33);
    b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 1, 0, 0, 0, 1, bitDepth, colourType]);
    return b;
  };
  it.each([
    [1, 0, 'b-w', 1, '1'], [4, 0, 'b-w', 1, 'L'], [8, 0, 'b-w', 2, 'L'], [16, 0, 'grey16', 1, 'L'],
    [8, 2, 'srgb', 4, 'RGB'], [4, 3, 'srgb', 4, 'P'], [8, 4, 'b-w', 2, 'LA'], [16, 4, 'grey16', 2, 'LA'],
    [8, 6, 'srgb', 4, 'RGBA'], [16, 6, 'rgb16', 4, 'RGBA'],
  ])('PNG bit depth %i colour type %i (libvips %s, %i bands) is "%s": tRNS adds no alpha in PIL', (d, t, space, c, mode) => {
    expect(pilModeFor('png', png(d, t), space, c)).toBe(mode);
  });

  it('JPEG and WebP modes follow libvips (colourspace; alpha band)', () => {
    const none = new Uint8Array(0);
    expect(pilModeFor('jpeg', none, 'cmyk', 4)).toBe('CMYK');
    expect(pilModeFor('jpeg', none, 'b-w', 1)).toBe('L');
    expect(pilModeFor('jpeg', none, 'srgb', 3)).toBe('RGB');
    expect(pilModeFor('webp', none, 'srgb', 4)).toBe('RGBA');
    expect(pilModeFor('webp', none, 'srgb', 3)).toBe('RGB');
  });

  it('a GIF is "P" unless its frame palette is the identity grey ramp (GifImagePlugin._is_palette_needed)', () => {
    const gif = (palette: number[], local?: number[]) => {
      const size = (p: number[]) => Math.log2(p.length / 3) - 1;
      const head = [...Buffer.from('GIF89a'), 1, 0, 1, 0, 0x80 | size(palette), 0, 0, ...palette];
      const desc = [0x2c, 0, 0, 0, 0, 1, 0, 1, 0, local ? 0x80 | size(local) : 0, ...(local ?? []), 2, 2, 0x44, 0x01, 0, 0x3b];
      return Uint8Array.from([...head, ...desc]);
    };
    const ramp = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3];
    const colour = [0, 0, 0, 1, 1, 1, 2, 2, 2, 9, 3, 3];
    expect(gifFrame0(gif(ramp))?.paletted).toBe(false);
    expect(gifFrame0(gif(colour))?.paletted).toBe(true);
    expect(gifFrame0(gif(colour, ramp))?.paletted).toBe(false); // a local identity palette wins
    expect(gifFrame0(gif(ramp, colour))?.paletted).toBe(true);
  });

  it('16-bit RGBA and grey+alpha PNGs are held as RGBA / LA with their high bytes (PIL: "RGBA;16B", "LA;16B")', async () => {
    const v = Uint16Array.from({ length: 4 * 3 * 4 }, (_, i) => (i * 5531 + 77) % 65536);
    const rgba = await sharp(v, { raw: { width: 4, height: 3, channels: 4 } }).toColourspace('rgb16').png().toBuffer();
    const a = await decodeToPilMode(rgba);
    expect([a.mode, a.channels]).toEqual(['RGBA', 4]);
    expect(Array.from(a.data)).toEqual(Array.from(v, (x) => x >> 8));
    const la = await sharp(v.subarray(0, 24), { raw: { width: 4, height: 3, channels: 2 } }).toColourspace('grey16').png().toBuffer();
    const l = await decodeToPilMode(la);
    expect([l.mode, l.channels]).toEqual(['LA', 2]);
    expect(Array.from(l.data)).toEqual(Array.from(v.subarray(0, 24), (x) => x >> 8));
  });
});

describe('decode errors', () => {
  const png = () => readFileSync(inputPath('rgb_97x61.png'));

  it('refuses a header claiming 30000×30000 from the header alone, quickly', async () => {
    const t0 = Date.now();
    await expectImageError(decodeToRgb8(await pngClaiming(30000, 30000)), 'TOO_MANY_PIXELS',
      /^image is 30000×30000 = 900000000 pixels, over the 178956970-pixel limit$/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('honours a lower maxPixels option; a lying header within the limit fails cleanly', async () => {
    await expectImageError(decodeToRgb8(png(), { maxPixels: 5916 }), 'TOO_MANY_PIXELS', /97×61 = 5917 pixels, over the 5916-pixel/);
    expect((await decodeToRgb8(png(), { maxPixels: 5917 })).width).toBe(97);
    // Header claims a size within the limit but inconsistent data: must fail, not allocate or hang.
    await expectImageError(decodeToRgb8(await pngClaiming(3000, 2000)), 'DECODE_FAILED');
  });

  it('refuses inputs over maxBytes (buffer, file, data URL before decoding it)', async () => {
    const b = png();
    await expectImageError(decodeToRgb8(b, { maxBytes: b.length - 1 }), 'TOO_MANY_BYTES', new RegExp(`image is ${b.length} bytes`));
    await expectImageError(decodeToRgb8(inputPath('rgb_97x61.png'), { maxBytes: 1000 }), 'TOO_MANY_BYTES');
    expect(() => parseDataUrl(`data:image/png;base64,${'A'.repeat(4000)}`, 2000)).toThrow(/3000 bytes.*over the 2000-byte/);
  });

  it.each([
    ['rgb_97x61.png', 0.5], ['rgb_97x61.png', 0.97], ['photo_97x61.jpg', 0.6], ['photo_97x61.jpg', 0.98],
    ['rgba_64x48.webp', 0.7], ['anim_40x30.gif', 0.4],
  ])('truncated %s (%f of the bytes) is DECODE_FAILED', async (name, frac) => {
    const b = readFileSync(inputPath(name));
    await expectImageError(decodeToRgb8(b.subarray(0, Math.floor(b.length * frac))), 'DECODE_FAILED', /cannot decode/);
  });

  it('random bytes are UNSUPPORTED_FORMAT; random bytes behind a PNG signature are DECODE_FAILED', async () => {
    const rnd = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251));
    await expectImageError(decodeToRgb8(rnd), 'UNSUPPORTED_FORMAT', /first bytes/);
    const fake = Buffer.concat([png().subarray(0, 8), rnd]);
    await expectImageError(decodeToRgb8(fake), 'DECODE_FAILED');
  });

  it('formats outside the allow-list never reach their libvips loaders', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
    await expectImageError(decodeToRgb8(svg), 'UNSUPPORTED_FORMAT');
    const tiff = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } }).tiff().toBuffer();
    await expectImageError(decodeToRgb8(tiff), 'UNSUPPORTED_FORMAT');
    await expectImageError(decodeToRgb8('data:image/svg+xml;base64,PHN2Zz4='), 'UNSUPPORTED_FORMAT', /image\/svg\+xml/);
  });

  it('empty inputs are EMPTY_INPUT', async () => {
    await expectImageError(decodeToRgb8(Buffer.alloc(0)), 'EMPTY_INPUT', /0 bytes/);
    await expectImageError(decodeToRgb8(new Uint8Array(0)), 'EMPTY_INPUT');
    await expectImageError(decodeToRgb8(''), 'EMPTY_INPUT');
    await expectImageError(decodeToRgb8('data:image/png;base64,'), 'EMPTY_INPUT');
  });

  it.each([
    ['data:image/png,iVBORw0KGgo=', /only ";base64,"/],
    ['data:image/png;base64', /no ","/],
    ['data:text/plain;base64,aGVsbG8=', /not image\/<type>/],
    ['data:;base64,aGVsbG8=', /not image\/<type>/],
    ['data:image/png;base64,iVBOR*w0K', /invalid base64 at character 5/],
    ['data:image/png;base64,iVBOR-w0K_Gg', /base64url/],
    ['data:image/png;base64,iVBORw0KG', /bad length/],
    ['data:image/png;base64,iVBORw0=Kgo', /invalid base64/],
    ['data:image/png;base64,iVBORw%3D%3D', /percent-encoded|invalid base64/],
  ])('bad data URL %s', async (url, msg) => {
    await expectImageError(decodeToRgb8(url), 'BAD_DATA_URL', msg);
  });

  it('accepts an upper-case scheme, extra parameters and line-wrapped base64', async () => {
    const b64 = png().toString('base64').replace(/(.{76})/g, '$1\r\n');
    const img = await decodeToRgb8(`DATA:Image/PNG;name=x.png;BASE64,${b64}`);
    expect(img.width).toBe(97);
  });

  it('a data URL holding non-image bytes is UNSUPPORTED_FORMAT', async () => {
    await expectImageError(decodeToRgb8('data:image/png;base64,aGVsbG8gd29ybGQ='), 'UNSUPPORTED_FORMAT');
  });

  it('unreadable paths are READ_FAILED and do not block (device, directory, missing)', async () => {
    await expectImageError(decodeToRgb8('/dev/zero'), 'READ_FAILED', /not a regular file/);
    await expectImageError(decodeToRgb8(inputPath('')), 'READ_FAILED');
    await expectImageError(decodeToRgb8(inputPath('missing.png')), 'READ_FAILED', /cannot open/);
  });

  it('bad options are programming errors (RangeError), not ImageError', async () => {
    await expect(decodeToRgb8(png(), { maxPixels: 0 })).rejects.toThrow(RangeError);
    await expect(decodeToRgb8(png(), { maxBytes: 1.5 })).rejects.toThrow(RangeError);
  });
});
