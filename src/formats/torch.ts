/**
 * PyTorch zip checkpoints (torch.save ≥ 1.6): `<archive>/data.pkl` is a pickle whose tensors are
 * `_rebuild_tensor_v2(storage, offset, size, stride, …)` calls and whose storages are persistent ids
 * ('storage', FloatStorage, key, location, numel) pointing at `<archive>/data/<key>`.
 * The pickle is read with a restricted unpickler (see pickle.ts); tensors are gathered on demand.
 */
import * as fs from 'node:fs';
import { CheckpointError, numel, type DType, type TensorInfo, type TensorReader } from './tensor.js';
import { bf16ArrayToF32, f16ArrayToF32 } from './half.js';
import { bytesOf, encodeAs, ITEMSIZE, openForRead, planTensors, tensorData, type WritableTensor } from './io.js';
import { describeValue, dumpPickle, PyGlobal, PyPersId, PyReduce, PyTuple, unpickle, type PickleValue } from './pickle.js';
import { ZipReader, ZipWriter } from './zip.js';

/** A storage class named in the pickle. Only float ones are readable; the others only mark tensors to skip. */
class StorageType {
  constructor(
    readonly name: string,
    readonly dtype: string,
    readonly itemsize: number,
  ) {}
  get readable(): boolean {
    return this.dtype in ITEMSIZE;
  }
}

const STORAGE_TYPES: readonly [string, string, number][] = [
  ['FloatStorage', 'F32', 4],
  ['HalfStorage', 'F16', 2],
  ['BFloat16Storage', 'BF16', 2],
  // Integer buffers (position_ids, num_batches_tracked) appear in real state dicts; they are skipped.
  ['DoubleStorage', 'F64', 8],
  ['LongStorage', 'I64', 8],
  ['IntStorage', 'I32', 4],
  ['ShortStorage', 'I16', 2],
  ['CharStorage', 'I8', 1],
  ['ByteStorage', 'U8', 1],
  ['BoolStorage', 'BOOL', 1],
];

class Storage {
  constructor(
    readonly type: StorageType,
    readonly entry: string,
    readonly numel: number,
  ) {}
}

class TensorRef {
  constructor(
    readonly storage: Storage,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

const isIntList = (v: unknown): v is number[] => Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && d >= 0);

/** The only globals a state-dict pickle may name. */
function allowedGlobals(fail: (msg: string) => never): Map<string, unknown> {
  const g = new Map<string, unknown>();
  const orderedDict = (args: unknown[]): Map<unknown, unknown> => {
    const m = new Map<unknown, unknown>();
    const init = args[0];
    if (Array.isArray(init)) for (const kv of init) if (Array.isArray(kv) && kv.length === 2) m.set(kv[0], kv[1]);
    return m;
  };
  g.set('collections.OrderedDict', orderedDict);
  g.set('torch._utils._rebuild_tensor_v2', (args: unknown[]) => {
    const [storage, offset, shape, stride] = args;
    if (!(storage instanceof Storage)) fail('_rebuild_tensor_v2 called without a storage');
    if (!Number.isSafeInteger(offset) || (offset as number) < 0) fail(`_rebuild_tensor_v2: bad storage offset ${describeValue(offset)}`);
    if (!isIntList(shape) || !isIntList(stride) || shape.length !== stride.length) {
      fail(`_rebuild_tensor_v2: bad size ${describeValue(shape)} / stride ${describeValue(stride)}`);
    }
    return new TensorRef(storage as Storage, offset as number, [...(shape as number[])], [...(stride as number[])]);
  });
  const parameter = (args: unknown[]): unknown => {
    if (!(args[0] instanceof TensorRef)) fail('_rebuild_parameter called without a tensor');
    return args[0];
  };
  g.set('torch._utils._rebuild_parameter', parameter);
  g.set('torch._utils._rebuild_parameter_with_state', parameter);
  for (const [name, dtype, size] of STORAGE_TYPES) g.set(`torch.${name}`, new StorageType(name, dtype, size));
  return g;
}

/** Torch files that predate the zip format start with a pickle (or, very old ones, a tar archive). */
export function legacyTorchMessage(path: string, head: Uint8Array): string | undefined {
  const isPickle = head.length >= 2 && head[0] === 0x80 && head[1] >= 2 && head[1] <= 5;
  const isTar = head.length >= 262 && Buffer.from(head.subarray(257, 262)).toString('latin1') === 'ustar';
  if (!isPickle && !isTar) return undefined;
  return `${path}: legacy (pre-1.6, non-zip) PyTorch checkpoint format is not supported; re-save it with torch.save() from torch >= 1.6 (or convert it to safetensors)`;
}

export class TorchCheckpointReader implements TensorReader {
  readonly source: string;
  /** The archive folder inside the zip (torch uses the file stem or 'archive'). */
  readonly archive: string;
  /** Tensors present in the state dict but not float32/16/bf16 (e.g. int64 position_ids); not readable. */
  readonly skipped: readonly { name: string; dtype: string }[];
  private readonly tensors = new Map<string, { info: TensorInfo; ref: TensorRef }>();

  private constructor(
    private readonly zip: ZipReader,
    path: string,
  ) {
    this.source = path;
    function fail(msg: string): never {
      throw new CheckpointError(`${path}: ${msg}`);
    }
    const pkl = zip.names().filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    const first = zip.names()[0]?.split('/')[0];
    const chosen = pkl.find((n) => n.split('/')[0] === first) ?? pkl[0];
    if (!chosen) fail('zip archive has no <archive>/data.pkl: not a PyTorch checkpoint');
    this.archive = chosen.split('/')[0];
    const bo = zip.entry(`${this.archive}/byteorder`);
    if (bo) {
      const order = zip.read(bo.name).toString('latin1').trim();
      if (order !== 'little') fail(`checkpoint byteorder is '${order}'; only little-endian checkpoints are supported`);
    }
    const storages = new Map<string, Storage>();
    const persistentLoad = (pid: unknown): Storage => {
      if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) fail(`unsupported persistent id ${describeValue(pid)}`);
      const [, type, key, , n] = pid as unknown[];
      if (!(type instanceof StorageType)) fail('persistent id does not name an allowed storage type');
      if (typeof key !== 'string' || !Number.isSafeInteger(n) || (n as number) < 0) fail(`malformed storage id for key ${describeValue(key)}`);
      const st = type as StorageType;
      const entry = `${this.archive}/data/${key as string}`;
      const cached = storages.get(entry);
      if (cached) return cached;
      const e = zip.entry(entry);
      if (!e) fail(`storage ${entry} is missing from the archive`);
      if (e.size < (n as number) * st.itemsize) fail(`storage ${entry} has ${e.size} bytes, needs ${(n as number) * st.itemsize}`);
      const s = new Storage(st, entry, n as number);
      storages.set(entry, s);
      return s;
    };
    const root = unpickle(zip.read(chosen), { globals: allowedGlobals(fail), persistentLoad, source: `${path}:${chosen}` });
    const dict = findStateDict(root, fail);
    const skipped: { name: string; dtype: string }[] = [];
    for (const [name, ref] of dict) {
      const t = ref.storage.type;
      if (!t.readable) {
        skipped.push({ name, dtype: t.dtype });
        continue;
      }
      const last = ref.offset + ref.shape.reduce((acc, d, i) => acc + (d - 1) * ref.stride[i], 0);
      if (numel(ref.shape) > 0 && last >= ref.storage.numel) {
        fail(`tensor ${name} (size [${ref.shape}], stride [${ref.stride}], offset ${ref.offset}) overruns its ${ref.storage.numel}-element storage`);
      }
      this.tensors.set(name, { info: { name, dtype: t.dtype as DType, shape: ref.shape }, ref });
    }
    this.skipped = skipped;
  }

  static open(path: string): TorchCheckpointReader {
    const head = Buffer.alloc(512);
    const { fd } = openForRead(path);
    const got = fs.readSync(fd, head, 0, head.length, 0);
    fs.closeSync(fd);
    const legacy = head[0] === 0x50 && head[1] === 0x4b ? undefined : legacyTorchMessage(path, head.subarray(0, got));
    if (legacy) throw new CheckpointError(legacy);
    const zip = ZipReader.open(path);
    try {
      return new TorchCheckpointReader(zip, path);
    } catch (e) {
      zip.close();
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo | undefined {
    return this.tensors.get(name)?.info;
  }

  readF32(name: string): Float32Array {
    const t = this.tensors.get(name);
    if (!t) throw new CheckpointError(`${this.source}: no tensor named ${name}`);
    const { storage, offset, shape, stride } = t.ref;
    const n = numel(shape);
    if (n === 0) return new Float32Array(0);
    // Read only the span of the storage this view touches (views of a big shared storage stay cheap).
    const spanLen = shape.reduce((acc, d, i) => acc + (d - 1) * stride[i], 0) + 1;
    const dtype = storage.type.dtype as DType;
    // Read straight into a typed array of the stored width: no intermediate byte copy.
    const raw = dtype === 'F32' ? new Float32Array(spanLen) : new Uint16Array(spanLen);
    this.zip.readRange(storage.entry, offset * storage.type.itemsize, bytesOf(raw));
    const span = raw instanceof Float32Array ? raw : dtype === 'F16' ? f16ArrayToF32(raw) : bf16ArrayToF32(raw);
    const contiguous = shape.every((d, i) => d === 1 || stride[i] === shape.slice(i + 1).reduce((a, b) => a * b, 1));
    if (contiguous) return span.length === n ? span : span.slice(0, n);
    return gather(span, shape, stride, n);
  }

  close(): void {
    this.zip.close();
  }
}

function gather(src: Float32Array, shape: number[], stride: number[], n: number): Float32Array {
  const out = new Float32Array(n);
  const nd = shape.length;
  const idx = new Array<number>(nd).fill(0);
  let s = 0;
  for (let i = 0; i < n; i++) {
    out[i] = src[s];
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]++;
      s += stride[d];
      if (idx[d] < shape[d]) break;
      s -= stride[d] * shape[d];
      idx[d] = 0;
    }
  }
  return out;
}

const STATE_DICT_KEYS = ['state_dict', 'model', 'module', 'state_dict_ema'];

function tensorsOf(v: unknown): Map<string, TensorRef> {
  const out = new Map<string, TensorRef>();
  if (v instanceof Map) for (const [k, x] of v) if (typeof k === 'string' && x instanceof TensorRef) out.set(k, x);
  return out;
}

function findStateDict(root: unknown, fail: (msg: string) => never): Map<string, TensorRef> {
  if (!(root instanceof Map)) {
    fail(`checkpoint holds ${root instanceof TensorRef ? 'a single tensor' : 'a non-dict object'}, not a state dict`);
  }
  const top = tensorsOf(root);
  if (top.size) return top;
  for (const key of STATE_DICT_KEYS) {
    const nested = tensorsOf((root as Map<unknown, unknown>).get(key));
    if (nested.size) return nested;
  }
  const keys = [...(root as Map<unknown, unknown>).keys()].slice(0, 10).map(String);
  return fail(`no tensors found in the checkpoint (top-level keys: ${keys.join(', ') || 'none'}; also looked under ${STATE_DICT_KEYS.join(', ')})`);
}

const STORAGE_CLASS: Readonly<Record<DType, string>> = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage' };

export interface TorchWriteOptions {
  /** Folder name inside the zip (default 'archive', as torch ≥ 2 uses). */
  archiveName?: string;
}

/**
 * Writes an OrderedDict state dict that `torch.load(path, weights_only=True)` accepts: one storage per
 * tensor, 64-byte aligned like torch's own writer. Tensor data is streamed one tensor at a time.
 */
export function writeTorchCheckpoint(path: string, tensors: Iterable<WritableTensor>, options: TorchWriteOptions = {}): void {
  const archive = options.archiveName ?? 'archive';
  if (!/^[A-Za-z0-9_.-]+$/.test(archive)) throw new CheckpointError(`${path}: bad archive name ${archive}`);
  const list = planTensors(tensors, path);
  const orderedDict = new PyGlobal('collections', 'OrderedDict');
  const rebuild = new PyGlobal('torch._utils', '_rebuild_tensor_v2');
  const items = new Map<PickleValue, PickleValue>();
  list.forEach((t, i) => {
    const stride = t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * b, 1));
    const storage = new PyPersId(new PyTuple(['storage', new PyGlobal('torch', STORAGE_CLASS[t.dtype]), String(i), 'cpu', numel(t.shape)]));
    const args = [storage, 0, new PyTuple(t.shape), new PyTuple(stride), false, new PyReduce(orderedDict, [])];
    items.set(t.name, new PyReduce(rebuild, args));
  });
  const zip = ZipWriter.create(path);
  try {
    // data.pkl must come first: torch takes the archive folder name from the first entry.
    zip.add(`${archive}/data.pkl`, dumpPickle(new PyReduce(orderedDict, [], items)));
    zip.add(`${archive}/byteorder`, Buffer.from('little'));
    list.forEach((t, i) => {
      zip.addStream(`${archive}/data/${i}`, numel(t.shape) * ITEMSIZE[t.dtype], (write) => write(encodeAs(tensorData(t, path), t.dtype)));
    });
    zip.add(`${archive}/version`, Buffer.from('3\n'));
    zip.close();
  } catch (e) {
    zip.abort();
    throw e;
  }
}
