import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openCheckpoint, sniffFormat } from '../../src/formats/checkpoint.js';
import { SafetensorsReader } from '../../src/formats/safetensors.js';
import { CheckpointError } from '../../src/formats/tensor.js';
import { TorchCheckpointReader } from '../../src/formats/torch.js';
import { fixture, scratch, writeScratch } from './helpers.js';

describe('openCheckpoint', () => {
  it('opens a torch zip and a safetensors file by content, whatever the extension', () => {
    const pt = openCheckpoint(fixture('torch_sd.pt'));
    expect(pt).toBeInstanceOf(TorchCheckpointReader);
    expect(pt.names()).toContain('f16');
    pt.close();
    const disguised = writeScratch('model.bin', fs.readFileSync(fixture('mixed.safetensors')));
    const st = openCheckpoint(disguised);
    expect(st).toBeInstanceOf(SafetensorsReader);
    expect(st.source).toBe(disguised);
    expect(st.names()).toContain('a.f32');
    st.close();
  });

  it('explains legacy torch files', () => {
    expect(() => openCheckpoint(fixture('torch_legacy.pt'))).toThrow(/torch_legacy.pt: legacy \(pre-1.6, non-zip\) PyTorch checkpoint/);
  });

  it('rejects random bytes, showing the first bytes', () => {
    const p = writeScratch('random.bin', Buffer.from('GGUF\x03\x00\x00\x00 some other format', 'latin1'));
    expect(() => openCheckpoint(p)).toThrow(CheckpointError);
    expect(() => openCheckpoint(p)).toThrow(`${p}: not a safetensors or PyTorch zip checkpoint (first bytes: 47 47 55 46 03 00 00 00 20 73 6f 6d 65 20 6f 74)`);
  });

  it('rejects an empty and a missing file', () => {
    expect(() => openCheckpoint(writeScratch('empty.bin', new Uint8Array(0)))).toThrow(/first bytes: none, the file is empty/);
    expect(() => openCheckpoint(scratch('missing.safetensors'))).toThrow(/missing.safetensors: no such file/);
  });

  it('a truncated safetensors file is still recognised and its problem named', () => {
    const b = fs.readFileSync(fixture('mixed.safetensors'));
    const p = writeScratch('cut.safetensors', b.subarray(0, b.length - 10));
    expect(() => openCheckpoint(p)).toThrow(/lie outside the .*-byte data section/);
  });
});

describe('sniffFormat', () => {
  const st = (n: number, first: string): Buffer => {
    const b = Buffer.alloc(8 + first.length);
    b.writeBigUInt64LE(BigInt(n));
    b.write(first, 8, 'latin1');
    return b;
  };
  it('classifies by magic bytes', () => {
    expect(sniffFormat(Buffer.from('PK\x03\x04', 'latin1'), 100)).toBe('torch-zip');
    expect(sniffFormat(st(20, '{"a'), 100)).toBe('safetensors');
    expect(sniffFormat(st(200, '{"a'), 100)).toBe('unknown'); // header longer than the file
    expect(sniffFormat(st(20, '[1,'), 100)).toBe('unknown');
    expect(sniffFormat(Buffer.from([0x80, 0x02, 0x8a, 0x0a]), 100)).toBe('torch-legacy');
    expect(sniffFormat(Buffer.alloc(3), 3)).toBe('unknown');
  });
});
