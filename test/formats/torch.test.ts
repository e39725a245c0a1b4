import * as fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { CheckpointError } from '../../src/formats/tensor.js';
import { TorchCheckpointReader, writeTorchCheckpoint } from '../../src/formats/torch.js';
import { ZipWriter } from '../../src/formats/zip.js';
import { dumpPickle, PyGlobal, PyPersId, PyReduce, PyTuple, type PickleValue } from '../../src/formats/pickle.js';
import { expected, f32, fixture, noTorchReason, runPython, scratch } from './helpers.js';

const readers: TorchCheckpointReader[] = [];
function openPt(p: string): TorchCheckpointReader {
  const r = TorchCheckpointReader.open(p);
  readers.push(r);
  return r;
}
afterEach(() => {
  while (readers.length) readers.pop()!.close();
});

const DTYPE: Record<string, string> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

describe('TorchCheckpointReader on files written by real torch.save', () => {
  it('reads a module state_dict() with f32/f16/bf16, strided views, offsets, stride-0, scalars and parameters', () => {
    const r = openPt(fixture('torch_sd.pt'));
    const want = expected.torch_sd;
    expect(r.archive).toBe('torch_sd');
    expect(r.names().sort()).toEqual(Object.keys(want).sort());
    expect(r.names()).toContain('transposed');
    expect(r.names()).toContain('0.weight');
    for (const [name, t] of Object.entries(want)) {
      expect(r.info(name), name).toEqual({ name, dtype: DTYPE[t.dtype!], shape: t.shape });
      expect(Array.from(r.readF32(name)), name).toEqual(t.values);
    }
    expect(r.skipped).toEqual([{ name: 'position_ids', dtype: 'I64' }]);
    expect(r.info('position_ids')).toBeUndefined();
    expect(() => r.readF32('position_ids')).toThrow(/no tensor named position_ids/);
  });

  it("finds the state dict nested under 'state_dict', ignoring the other entries", () => {
    const r = openPt(fixture('torch_nested.pt'));
    expect(r.names().sort()).toEqual(['b', 'w']);
    for (const [name, t] of Object.entries(expected.torch_nested)) expect(Array.from(r.readF32(name))).toEqual(t.values);
  });

  it('reports a checkpoint without tensors', () => {
    expect(() => TorchCheckpointReader.open(fixture('torch_no_tensors.pt'))).toThrow(/no tensors found in the checkpoint \(top-level keys: epoch, lr/);
  });

  it('reports the legacy (pre-1.6) format', () => {
    expect(() => TorchCheckpointReader.open(fixture('torch_legacy.pt'))).toThrow(CheckpointError);
    expect(() => TorchCheckpointReader.open(fixture('torch_legacy.pt'))).toThrow(/legacy \(pre-1.6, non-zip\) PyTorch checkpoint format/);
  });

  it('reports a truncated checkpoint', () => {
    const b = fs.readFileSync(fixture('torch_sd.pt'));
    const p = scratch('trunc.pt');
    fs.writeFileSync(p, b.subarray(0, b.length >> 1));
    expect(() => TorchCheckpointReader.open(p)).toThrow(/truncated/);
  });
});

describe('writeTorchCheckpoint', () => {
  const tensors = [
    { name: 'enc.w', shape: [2, 3], dtype: 'F32' as const, data: f32([1, 2, 3, 4, 5, 6.25]) },
    { name: 'enc.h', shape: [3], dtype: 'F16' as const, data: f32([0.1, -65504, 1e-7]) },
    { name: 'enc.b', shape: [1, 2], dtype: 'BF16' as const, data: () => f32([3.14159, -1]) },
    { name: 'scalar', shape: [], dtype: 'F32' as const, data: f32([7]) },
    { name: 'empty', shape: [0], dtype: 'F16' as const, data: new Float32Array(0) },
  ];

  it('round-trips through our reader with a custom archive name', () => {
    const p = scratch('ours.pt');
    writeTorchCheckpoint(p, tensors, { archiveName: 'my_model' });
    const r = openPt(p);
    expect(r.archive).toBe('my_model');
    expect(r.names()).toEqual(tensors.map((t) => t.name));
    expect(r.info('enc.h')).toEqual({ name: 'enc.h', dtype: 'F16', shape: [3] });
    expect(Array.from(r.readF32('enc.w'))).toEqual([1, 2, 3, 4, 5, 6.25]);
    // Rounded as torch does: torch.tensor([0.1, -65504, 1e-7]).half().float(), torch.tensor([3.14159, -1]).bfloat16().float()
    expect(Array.from(r.readF32('enc.h'))).toEqual([0.0999755859375, -65504, 1.1920928955078125e-7]);
    expect(Array.from(r.readF32('enc.b'))).toEqual([3.140625, -1]);
    expect(Array.from(r.readF32('scalar'))).toEqual([7]);
    expect(r.readF32('empty').length).toBe(0);
  });

  it.skipIf(noTorchReason)(`real torch.load(weights_only=True) loads it${noTorchReason ? ` [skipped: ${noTorchReason}]` : ''}`, () => {
    const p = scratch('for-torch.pt');
    writeTorchCheckpoint(p, tensors);
    const out = runPython(
      `import sys, json, torch
sd = torch.load(sys.argv[1], weights_only=True)
print(json.dumps({'type': type(sd).__name__, 'items': {k: [str(v.dtype), list(v.shape), v.float().reshape(-1).tolist()] for k, v in sd.items()}}))`,
      [p],
    );
    expect(out).toEqual({
      type: 'OrderedDict',
      items: {
        'enc.w': ['torch.float32', [2, 3], [1, 2, 3, 4, 5, 6.25]],
        'enc.h': ['torch.float16', [3], [0.0999755859375, -65504, 1.1920928955078125e-7]],
        'enc.b': ['torch.bfloat16', [1, 2], [3.140625, -1]],
        scalar: ['torch.float32', [], [7]],
        empty: ['torch.float16', [0], []],
      },
    });
  });
});

describe('TorchCheckpointReader rejects hostile or broken archives', () => {
  /** A torch-shaped zip around an arbitrary data.pkl (and optional extra entries). */
  function archive(name: string, pkl: Uint8Array, extra: Record<string, Uint8Array> = {}): string {
    const p = scratch(name);
    const z = ZipWriter.create(p);
    z.add('archive/data.pkl', pkl);
    for (const [k, v] of Object.entries(extra)) z.add(k, v);
    z.close();
    return p;
  }
  const od = new PyGlobal('collections', 'OrderedDict');
  const tensorPickle = (key: string, numel: number, shape: number[], stride: number[], offset = 0): Uint8Array =>
    dumpPickle(new PyReduce(od, [], new Map<PickleValue, PickleValue>([
      ['w', new PyReduce(new PyGlobal('torch._utils', '_rebuild_tensor_v2'), [
        new PyPersId(new PyTuple(['storage', new PyGlobal('torch', 'FloatStorage'), key, 'cpu', numel])),
        offset, new PyTuple(shape), new PyTuple(stride), false, new PyReduce(od, []),
      ])],
    ])));

  it.each(['evil_system_p2.pkl', 'evil_system_p4.pkl', 'evil_eval_p2.pkl'])('a data.pkl like %s', (file) => {
    const p = archive(`evil-${file}.pt`, fs.readFileSync(fixture(file)));
    expect(() => TorchCheckpointReader.open(p)).toThrow(/refusing pickle global '(posix\.system|builtins\.eval)'/);
  });

  it('a zip without data.pkl', () => {
    const p = scratch('nopkl.pt');
    const z = ZipWriter.create(p);
    z.add('archive/other', new Uint8Array(1));
    z.close();
    expect(() => TorchCheckpointReader.open(p)).toThrow(/no <archive>\/data.pkl: not a PyTorch checkpoint/);
  });

  it('a missing storage entry', () => {
    expect(() => TorchCheckpointReader.open(archive('nostorage.pt', tensorPickle('0', 2, [2], [1])))).toThrow(/storage archive\/data\/0 is missing/);
  });

  it('a storage smaller than it claims', () => {
    const p = archive('small.pt', tensorPickle('0', 4, [4], [1]), { 'archive/data/0': new Uint8Array(8) });
    expect(() => TorchCheckpointReader.open(p)).toThrow(/has 8 bytes, needs 16/);
  });

  it('a view that overruns its storage', () => {
    const p = archive('overrun.pt', tensorPickle('0', 4, [2, 2], [2, 1], 1), { 'archive/data/0': new Uint8Array(16) });
    expect(() => TorchCheckpointReader.open(p)).toThrow(/tensor w .* overruns its 4-element storage/);
  });

  it('big-endian byteorder', () => {
    const p = archive('be.pt', tensorPickle('0', 1, [1], [1]), { 'archive/byteorder': Buffer.from('big'), 'archive/data/0': new Uint8Array(4) });
    expect(() => TorchCheckpointReader.open(p)).toThrow(/byteorder is 'big'/);
  });

  it('a storage persistent id with an unknown type', () => {
    const pkl = dumpPickle(new PyReduce(od, [], new Map<PickleValue, PickleValue>([
      ['w', new PyPersId(new PyTuple(['storage', 'FloatStorage', '0', 'cpu', 1]))],
    ])));
    expect(() => TorchCheckpointReader.open(archive('badpid.pt', pkl))).toThrow(/does not name an allowed storage type/);
  });

  it('a missing file', () => {
    expect(() => TorchCheckpointReader.open(scratch('nope.pt'))).toThrow(/nope.pt: no such file/);
  });
});
