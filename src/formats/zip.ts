/**
 * Minimal ZIP reading and writing for PyTorch checkpoints (torch.save ≥ 1.6 writes a stored-only zip
 * with ZIP64 end records and 64-byte-aligned entry data). Reads are positional and on demand so a
 * multi-GiB checkpoint never has to fit in memory; writes stream each entry from a callback.
 */
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { CheckpointError } from './tensor.js';
import { openForRead, readAt, readExact, u64, writeAll } from './io.js';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;
/** Deflated entries are inflated in memory, so only small ones (pickles, metadata) are accepted. */
export const MAX_DEFLATED_BYTES = 64 * 1024 * 1024;

let crcTable: Int32Array | undefined;

/** CRC-32 (ISO-HDLC, as zip uses); pass the previous value to continue over several chunks. */
export function crc32(data: Uint8Array, previous = 0): number {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let c = ~previous;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflated. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
}

export class ZipReader {
  private readonly byName = new Map<string, ZipEntry>();
  private readonly dataOffsets = new Map<string, number>();
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly fileSize: number,
  ) {}

  static open(path: string): ZipReader {
    const { fd, size } = openForRead(path);
    const z = new ZipReader(path, fd, size);
    try {
      z.readCentralDirectory();
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return z;
  }

  private fail(msg: string): never {
    throw new CheckpointError(`${this.path}: ${msg}`);
  }

  private readCentralDirectory(): void {
    const size = this.fileSize;
    if (size < 22) this.fail(`not a zip archive (only ${size} bytes; truncated?)`);
    // The EOCD sits at the very end, followed only by an archive comment of at most 64 KiB.
    const tailLen = Math.min(size, 22 + U16_MAX);
    const tail = readAt(this.fd, size - tailLen, tailLen, this.path);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === SIG_EOCD && i + 22 + tail.readUInt16LE(i + 20) <= tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) this.fail('no zip end-of-central-directory record (truncated or not a zip archive)');
    const eocdPos = size - tailLen + eocd;
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    if (eocdPos >= 20) {
      const loc = readAt(this.fd, eocdPos - 20, 20, this.path);
      if (loc.readUInt32LE(0) === SIG_EOCD64_LOCATOR) {
        const recPos = u64(loc, 8, this.path);
        if (recPos + 56 > eocdPos) this.fail('ZIP64 end-of-central-directory locator points outside the archive (corrupt)');
        const rec = readAt(this.fd, recPos, 56, this.path);
        if (rec.readUInt32LE(0) !== SIG_EOCD64) this.fail('ZIP64 end-of-central-directory record missing (corrupt archive)');
        count = u64(rec, 32, this.path);
        cdSize = u64(rec, 40, this.path);
        cdOffset = u64(rec, 48, this.path);
      }
    }
    if (cdOffset + cdSize > eocdPos) {
      this.fail(`central directory (offset ${cdOffset}, ${cdSize} bytes) lies beyond the end records (truncated or corrupt)`);
    }
    if (count > cdSize / 46) this.fail(`central directory claims ${count} entries in ${cdSize} bytes (corrupt)`);
    const cd = readAt(this.fd, cdOffset, cdSize, this.path);
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cdSize || cd.readUInt32LE(p) !== SIG_CENTRAL) this.fail(`central directory entry ${i} is corrupt`);
      const flags = cd.readUInt16LE(p + 8);
      const method = cd.readUInt16LE(p + 10);
      const crc = cd.readUInt32LE(p + 16);
      let compressedSize = cd.readUInt32LE(p + 20);
      let usize = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let lho = cd.readUInt32LE(p + 42);
      const end = p + 46 + nameLen + extraLen + commentLen;
      if (end > cdSize) this.fail(`central directory entry ${i} runs past the directory (corrupt)`);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      // ZIP64 extra: the 64-bit values appear, in this order, only for fields saturated at 0xFFFFFFFF.
      let q = p + 46 + nameLen;
      const extraEnd = q + extraLen;
      while (q + 4 <= extraEnd) {
        const id = cd.readUInt16LE(q);
        const len = cd.readUInt16LE(q + 2);
        if (q + 4 + len > extraEnd) this.fail(`entry ${name}: extra field overruns its header (corrupt)`);
        if (id === 0x0001) {
          let r = q + 4;
          const next = (): number => {
            if (r + 8 > q + 4 + len) this.fail(`entry ${name}: ZIP64 extra field too short (corrupt)`);
            const v = u64(cd, r, this.path);
            r += 8;
            return v;
          };
          if (usize === U32_MAX) usize = next();
          if (compressedSize === U32_MAX) compressedSize = next();
          if (lho === U32_MAX) lho = next();
        }
        q += 4 + len;
      }
      if (flags & 1) this.fail(`entry ${name} is encrypted`);
      if (method !== 0 && method !== 8) this.fail(`entry ${name} uses unsupported compression method ${method}`);
      if (method === 0 && compressedSize !== usize) this.fail(`stored entry ${name} has differing sizes (corrupt)`);
      if (lho + 30 + compressedSize > cdOffset) this.fail(`entry ${name} data lies outside the archive (truncated or corrupt)`);
      if (this.byName.has(name)) this.fail(`duplicate entry ${name}`);
      this.byName.set(name, { name, method, compressedSize, size: usize, crc32: crc, localHeaderOffset: lho });
      p = end;
    }
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  entry(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  private need(name: string): ZipEntry {
    const e = this.byName.get(name);
    if (!e) this.fail(`no entry named ${name}`);
    return e;
  }

  /** Absolute offset of an entry's data: the local header's own extra field (alignment padding) decides it. */
  dataOffset(name: string): number {
    this.checkOpen();
    const cached = this.dataOffsets.get(name);
    if (cached !== undefined) return cached;
    const e = this.need(name);
    const h = readAt(this.fd, e.localHeaderOffset, 30, this.path);
    if (h.readUInt32LE(0) !== SIG_LOCAL) this.fail(`entry ${name}: local header signature missing (corrupt archive)`);
    const off = e.localHeaderOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
    if (off + e.compressedSize > this.fileSize) this.fail(`entry ${name}: data runs past the end of the file (truncated)`);
    this.dataOffsets.set(name, off);
    return off;
  }

  /** The whole entry, inflated if needed and CRC-checked. */
  read(name: string): Buffer {
    const e = this.need(name);
    if (e.method === 8 && e.compressedSize > MAX_DEFLATED_BYTES) {
      this.fail(`entry ${name} is deflated and ${e.compressedSize} bytes; only deflated entries up to ${MAX_DEFLATED_BYTES} bytes are supported`);
    }
    if (e.method === 8 && e.size > 4 * MAX_DEFLATED_BYTES) this.fail(`entry ${name} inflates to ${e.size} bytes; too large`);
    const raw = readAt(this.fd, this.dataOffset(name), e.compressedSize, this.path);
    let data = raw;
    if (e.method === 8) {
      try {
        data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
      } catch (err) {
        this.fail(`entry ${name}: cannot inflate (${(err as Error).message})`);
      }
      if (data.length !== e.size) this.fail(`entry ${name}: inflated to ${data.length} bytes, expected ${e.size}`);
    }
    if (crc32(data) !== e.crc32) this.fail(`entry ${name}: CRC mismatch (corrupt archive)`);
    return data;
  }

  /** Reads `dst.length` bytes starting `offset` bytes into an entry, without reading the rest of it. */
  readRange(name: string, offset: number, dst: Uint8Array): void {
    const e = this.need(name);
    if (offset < 0 || offset + dst.length > e.size) {
      this.fail(`entry ${name}: range ${offset}+${dst.length} exceeds its ${e.size} bytes`);
    }
    if (e.method === 0) {
      readExact(this.fd, dst, this.dataOffset(name) + offset, this.path);
    } else {
      dst.set(this.read(name).subarray(offset, offset + dst.length));
    }
  }

  private checkOpen(): void {
    if (this.closed) this.fail('archive already closed');
  }

  close(): void {
    if (!this.closed) {
      this.closed = true;
      fs.closeSync(this.fd);
    }
  }
}

export interface ZipWriterOptions {
  /** Entry data alignment, done like PyTorch with a 'FB' extra field padded with 'Z' (default 64; 1 = none). */
  align?: number;
  /** Write ZIP64 fields and end records even when nothing needs them (to exercise readers). */
  forceZip64?: boolean;
}

interface Written {
  name: Buffer;
  size: number;
  crc: number;
  offset: number;
  zip64Sizes: boolean;
}

/** Stored-only zip writer; sizes are declared up front so headers are final except the CRC, patched afterwards. */
export class ZipWriter {
  private pos = 0;
  private readonly entries: Written[] = [];
  private done = false;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly opts: Required<ZipWriterOptions>,
  ) {}

  static create(path: string, options: ZipWriterOptions = {}): ZipWriter {
    const align = options.align ?? 64;
    if (!Number.isInteger(align) || align < 1 || align > 4096) throw new RangeError(`bad zip alignment ${align}`);
    return new ZipWriter(path, fs.openSync(path, 'w'), { align, forceZip64: options.forceZip64 ?? false });
  }

  private emit(bytes: Uint8Array): void {
    writeAll(this.fd, bytes, this.pos);
    this.pos += bytes.length;
  }

  add(name: string, data: Uint8Array): void {
    this.addStream(name, data.length, (write) => write(data));
  }

  /** `produce` must call `write` with exactly `size` bytes in total. */
  addStream(name: string, size: number, produce: (write: (chunk: Uint8Array) => void) => void): void {
    if (this.done) throw new Error(`${this.path}: zip already closed`);
    const nameBytes = Buffer.from(name, 'utf8');
    if (nameBytes.length > U16_MAX) throw new RangeError(`zip entry name too long: ${name}`);
    const offset = this.pos;
    const zip64Sizes = this.opts.forceZip64 || size >= U32_MAX;
    const z64 = zip64Sizes ? 20 : 0;
    const base = offset + 30 + nameBytes.length + z64 + 4;
    const pad = (this.opts.align - (base % this.opts.align)) % this.opts.align;
    const alignLen = this.opts.align > 1 ? 4 + pad : 0;
    const h = Buffer.alloc(30 + nameBytes.length + z64 + alignLen);
    h.writeUInt32LE(SIG_LOCAL, 0);
    h.writeUInt16LE(zip64Sizes ? 45 : 20, 4);
    h.writeUInt16LE(0x0800, 6); // names are UTF-8
    h.writeUInt16LE(0, 8);
    h.writeUInt16LE(0, 10);
    h.writeUInt16LE(0x21, 12); // 1980-01-01: a valid DOS date
    h.writeUInt32LE(zip64Sizes ? U32_MAX : size, 18);
    h.writeUInt32LE(zip64Sizes ? U32_MAX : size, 22);
    h.writeUInt16LE(nameBytes.length, 26);
    h.writeUInt16LE(z64 + alignLen, 28);
    nameBytes.copy(h, 30);
    let q = 30 + nameBytes.length;
    if (zip64Sizes) {
      h.writeUInt16LE(0x0001, q);
      h.writeUInt16LE(16, q + 2);
      h.writeBigUInt64LE(BigInt(size), q + 4);
      h.writeBigUInt64LE(BigInt(size), q + 12);
      q += 20;
    }
    if (alignLen) {
      h.write('FB', q, 'latin1');
      h.writeUInt16LE(pad, q + 2);
      h.fill('Z', q + 4);
    }
    this.emit(h);
    let crc = 0;
    let written = 0;
    produce((chunk) => {
      if (written + chunk.length > size) throw new RangeError(`zip entry ${name}: more than the declared ${size} bytes`);
      crc = crc32(chunk, crc);
      this.emit(chunk);
      written += chunk.length;
    });
    if (written !== size) throw new RangeError(`zip entry ${name}: wrote ${written} bytes, declared ${size}`);
    const crcBuf = Buffer.alloc(4);
    crcBuf.writeUInt32LE(crc, 0);
    writeAll(this.fd, crcBuf, offset + 14);
    this.entries.push({ name: nameBytes, size, crc, offset, zip64Sizes });
  }

  close(): void {
    if (this.done) return;
    const cdOffset = this.pos;
    for (const e of this.entries) {
      const offset64 = this.opts.forceZip64 || e.offset >= U32_MAX;
      const z64Len = (e.zip64Sizes ? 16 : 0) + (offset64 ? 8 : 0);
      const extraLen = z64Len ? 4 + z64Len : 0;
      const c = Buffer.alloc(46 + e.name.length + extraLen);
      c.writeUInt32LE(SIG_CENTRAL, 0);
      c.writeUInt16LE(z64Len ? 45 : 20, 4);
      c.writeUInt16LE(z64Len ? 45 : 20, 6);
      c.writeUInt16LE(0x0800, 8);
      c.writeUInt16LE(0x21, 14);
      c.writeUInt32LE(e.crc, 16);
      c.writeUInt32LE(e.zip64Sizes ? U32_MAX : e.size, 20);
      c.writeUInt32LE(e.zip64Sizes ? U32_MAX : e.size, 24);
      c.writeUInt16LE(e.name.length, 28);
      c.writeUInt16LE(extraLen, 30);
      c.writeUInt32LE(offset64 ? U32_MAX : e.offset, 42);
      e.name.copy(c, 46);
      let q = 46 + e.name.length;
      if (z64Len) {
        c.writeUInt16LE(0x0001, q);
        c.writeUInt16LE(z64Len, q + 2);
        q += 4;
        if (e.zip64Sizes) {
          c.writeBigUInt64LE(BigInt(e.size), q);
          c.writeBigUInt64LE(BigInt(e.size), q + 8);
          q += 16;
        }
        if (offset64) c.writeBigUInt64LE(BigInt(e.offset), q);
      }
      this.emit(c);
    }
    const cdSize = this.pos - cdOffset;
    const n = this.entries.length;
    const zip64End = this.opts.forceZip64 || n >= U16_MAX || cdOffset >= U32_MAX || cdSize >= U32_MAX;
    if (zip64End) {
      const rec = Buffer.alloc(56 + 20);
      rec.writeUInt32LE(SIG_EOCD64, 0);
      rec.writeBigUInt64LE(44n, 4);
      rec.writeUInt16LE(45, 12);
      rec.writeUInt16LE(45, 14);
      rec.writeBigUInt64LE(BigInt(n), 24);
      rec.writeBigUInt64LE(BigInt(n), 32);
      rec.writeBigUInt64LE(BigInt(cdSize), 40);
      rec.writeBigUInt64LE(BigInt(cdOffset), 48);
      rec.writeUInt32LE(SIG_EOCD64_LOCATOR, 56);
      rec.writeBigUInt64LE(BigInt(this.pos), 64);
      rec.writeUInt32LE(1, 72);
      this.emit(rec);
    }
    const end = Buffer.alloc(22);
    end.writeUInt32LE(SIG_EOCD, 0);
    end.writeUInt16LE(zip64End ? U16_MAX : n, 8);
    end.writeUInt16LE(zip64End ? U16_MAX : n, 10);
    end.writeUInt32LE(zip64End ? U32_MAX : cdSize, 12);
    end.writeUInt32LE(zip64End ? U32_MAX : cdOffset, 16);
    this.emit(end);
    this.done = true;
    fs.closeSync(this.fd);
  }

  /** Closes and deletes a partly written file (after a producer failed). */
  abort(): void {
    if (!this.done) {
      this.done = true;
      fs.closeSync(this.fd);
    }
    fs.rmSync(this.path, { force: true });
  }
}
