import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { crc32, MAX_DEFLATED_BYTES, ZipReader, ZipWriter } from '../../src/formats/zip.js';
import { CheckpointError } from '../../src/formats/tensor.js';
import { fixture, noTorchReason, runPython, scratch, writeScratch } from './helpers.js';

const readers: ZipReader[] = [];
function openZip(p: string): ZipReader {
  const z = ZipReader.open(p);
  readers.push(z);
  return z;
}
afterEach(() => {
  while (readers.length) readers.pop()!.close();
});

function sample(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) b[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  return b;
}

function writeSample(name: string, opts: { forceZip64?: boolean; align?: number } = {}): string {
  const p = scratch(name);
  const z = ZipWriter.create(p, opts);
  z.add('a/first.txt', Buffer.from('hello'));
  z.addStream('a/data/0', 3000, (write) => {
    const s = sample(3000, 7);
    for (let i = 0; i < 3000; i += 1000) write(s.subarray(i, i + 1000));
  });
  z.add('a/empty', new Uint8Array(0));
  z.add('a/ünï', Buffer.from('utf8 name'));
  z.close();
  return p;
}

describe('crc32', () => {
  it('matches the standard check value and continues across chunks', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.from('6789'), crc32(Buffer.from('12345')))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });
});

describe('ZipReader on an archive written by python zipfile', () => {
  it('reads stored, deflated and ZIP64-local-header entries, skipping a fake EOCD in the comment', () => {
    const z = openZip(fixture('python.zip'));
    expect(z.names()).toEqual(['stored.txt', 'dir/deflated.txt', 'big64.bin']);
    expect(z.read('stored.txt').toString()).toBe('stored bytes '.repeat(5));
    expect(z.entry('dir/deflated.txt')?.method).toBe(8);
    expect(z.read('dir/deflated.txt').toString()).toBe('deflate me '.repeat(100));
    const big = z.read('big64.bin');
    expect(big.length).toBe(1024);
    expect(big[255]).toBe(255);
    expect(big[256]).toBe(0);
    const part = new Uint8Array(4);
    z.readRange('big64.bin', 254, part);
    expect(Array.from(part)).toEqual([254, 255, 0, 1]);
    z.readRange('dir/deflated.txt', 11, part);
    expect(Buffer.from(part).toString()).toBe('defl');
    expect(() => z.read('missing')).toThrow(/no entry named missing/);
  });
});

describe('ZipWriter → ZipReader', () => {
  for (const forceZip64 of [false, true]) {
    it(`round-trips with 64-byte aligned data${forceZip64 ? ' (forced ZIP64)' : ''}`, () => {
      const p = writeSample(`rt${forceZip64}.zip`, { forceZip64 });
      const z = openZip(p);
      expect(z.names()).toEqual(['a/first.txt', 'a/data/0', 'a/empty', 'a/ünï']);
      for (const n of z.names()) expect(z.dataOffset(n) % 64, n).toBe(0);
      expect(z.read('a/first.txt').toString()).toBe('hello');
      expect(Buffer.compare(z.read('a/data/0'), sample(3000, 7))).toBe(0);
      expect(z.read('a/empty').length).toBe(0);
      expect(z.read('a/ünï').toString()).toBe('utf8 name');
      const tail = fs.readFileSync(p).subarray(-98);
      expect(tail.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBe(forceZip64);
    });
  }

  it('checks the declared size against what the producer writes', () => {
    const z = ZipWriter.create(scratch('short.zip'));
    expect(() => z.addStream('x', 10, (w) => w(new Uint8Array(4)))).toThrow(/wrote 4 bytes, declared 10/);
    expect(() => z.addStream('y', 2, (w) => w(new Uint8Array(4)))).toThrow(/more than the declared 2 bytes/);
    z.abort();
    expect(fs.existsSync(scratch('short.zip'))).toBe(false);
  });

  it.skipIf(noTorchReason)(`python zipfile validates our archives, ZIP64 included${noTorchReason ? ` [skipped: ${noTorchReason}]` : ''}`, () => {
    for (const forceZip64 of [false, true]) {
      const p = writeSample(`py${forceZip64}.zip`, { forceZip64 });
      const out = runPython(
        `import sys, zipfile, json, hashlib
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
print(json.dumps({'bad': bad, 'names': z.namelist(), 'sha': hashlib.sha256(z.read('a/data/0')).hexdigest()}))`,
        [p],
      ) as { bad: string | null; names: string[]; sha: string };
      expect(out.bad).toBeNull();
      expect(out.names).toEqual(['a/first.txt', 'a/data/0', 'a/empty', 'a/ünï']);
      expect(out.sha).toBe(createHash('sha256').update(sample(3000, 7)).digest('hex'));
    }
  });
});

describe('ZipReader rejects corrupt archives', () => {
  const good = (): Buffer => fs.readFileSync(writeSample('good.zip'));

  it('truncated archive', () => {
    const b = good();
    const p = writeScratch('trunc.zip', b.subarray(0, b.length - 30));
    expect(() => ZipReader.open(p)).toThrow(CheckpointError);
    expect(() => ZipReader.open(p)).toThrow(/truncated/);
    const p2 = writeScratch('trunc2.zip', b.subarray(0, 10));
    expect(() => ZipReader.open(p2)).toThrow(/only 10 bytes; truncated/);
  });

  it('random bytes', () => {
    const p = writeScratch('random.zip', sample(5000, 3));
    expect(() => ZipReader.open(p)).toThrow(/no zip end-of-central-directory record/);
  });

  it('a corrupted data byte fails the CRC check', () => {
    const b = good();
    const p0 = writeScratch('crc0.zip', b);
    const off = openZip(p0).dataOffset('a/data/0');
    b[off + 100] ^= 0xff;
    const z = openZip(writeScratch('crc.zip', b));
    expect(() => z.read('a/data/0')).toThrow(/a\/data\/0: CRC mismatch/);
  });

  it('central directory offset pointing past the end records', () => {
    const b = good();
    b.writeUInt32LE(b.length, b.length - 6); // EOCD central-directory offset
    expect(() => ZipReader.open(writeScratch('cdoff.zip', b))).toThrow(/central directory .* lies beyond the end records/);
  });

  it('a broken local header signature', () => {
    const b = good();
    b.writeUInt32LE(0xdeadbeef, 0);
    const z = openZip(writeScratch('local.zip', b));
    expect(() => z.read('a/first.txt')).toThrow(/local header signature missing/);
  });

  it('encrypted and unknown compression methods', () => {
    const b = good();
    const cd = b.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    const enc = Buffer.from(b);
    enc.writeUInt16LE(0x0801, cd + 8);
    expect(() => ZipReader.open(writeScratch('enc.zip', enc))).toThrow(/a\/first.txt is encrypted/);
    const bz = Buffer.from(b);
    bz.writeUInt16LE(12, cd + 10);
    expect(() => ZipReader.open(writeScratch('bz.zip', bz))).toThrow(/unsupported compression method 12/);
  });

  it(`refuses deflated entries over ${MAX_DEFLATED_BYTES} bytes`, () => {
    const p = scratch('bigdeflate.zip');
    const size = MAX_DEFLATED_BYTES + 1024;
    const w = ZipWriter.create(p);
    const chunk = new Uint8Array(1 << 20);
    w.addStream('big', size, (write) => {
      for (let left = size; left > 0; left -= chunk.length) write(chunk.subarray(0, Math.min(left, chunk.length)));
    });
    w.close();
    // Relabel the stored entry as deflated (method 8) in the central directory.
    const fd = fs.openSync(p, 'r+');
    const tail = Buffer.alloc(200);
    const st = fs.fstatSync(fd).size;
    fs.readSync(fd, tail, 0, 200, st - 200);
    const cd = tail.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    fs.writeSync(fd, Buffer.from([8, 0]), 0, 2, st - 200 + cd + 10);
    fs.closeSync(fd);
    const z = openZip(p);
    expect(() => z.read('big')).toThrow(/deflated and 67109888 bytes; only deflated entries up to 67108864 bytes/);
    fs.rmSync(p);
  });
});
