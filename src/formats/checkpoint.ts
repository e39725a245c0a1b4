/** Opens any supported checkpoint by its magic bytes, whatever its file extension says. */
import * as fs from 'node:fs';
import { openForRead } from './io.js';
import { SafetensorsReader, MAX_HEADER_BYTES } from './safetensors.js';
import { CheckpointError, type TensorReader } from './tensor.js';
import { legacyTorchMessage, TorchCheckpointReader } from './torch.js';

export type CheckpointFormat = 'torch-zip' | 'safetensors' | 'torch-legacy' | 'unknown';

/** Classifies a file from its first bytes (at least 512 wanted, for the tar check) and its size. */
export function sniffFormat(head: Uint8Array, fileSize: number): CheckpointFormat {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length >= 4 && b.readUInt32LE(0) === 0x04034b50) return 'torch-zip';
  if (b.length >= 9) {
    const n = b.readBigUInt64LE(0);
    // A JSON header: '{' right after the length, which must fit the file and the reference limit.
    if (n >= 2n && n <= BigInt(MAX_HEADER_BYTES) && 8n + n <= BigInt(fileSize) && b[8] === 0x7b) return 'safetensors';
  }
  if (legacyTorchMessage('', b) !== undefined) return 'torch-legacy';
  return 'unknown';
}

export function openCheckpoint(path: string): TensorReader {
  const { fd, size } = openForRead(path);
  const head = Buffer.alloc(512);
  let got: number;
  try {
    got = fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  const first = head.subarray(0, got);
  switch (sniffFormat(first, size)) {
    case 'torch-zip':
      return TorchCheckpointReader.open(path);
    case 'safetensors':
      return SafetensorsReader.open(path);
    case 'torch-legacy':
      throw new CheckpointError(legacyTorchMessage(path, first)!);
    default: {
      const hex = [...first.subarray(0, 16)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
      throw new CheckpointError(`${path}: not a safetensors or PyTorch zip checkpoint (first bytes: ${hex || 'none, the file is empty'})`);
    }
  }
}
