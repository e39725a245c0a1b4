/**
 * The one noun every checkpoint format reduces to: a lazily-read set of named tensors.
 * Readers never load a whole file; each tensor is read (and converted to float32) on demand,
 * so converting a checkpoint needs about one tensor of memory beyond the output.
 */
export type DType = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  /** Row-major logical shape. */
  readonly shape: readonly number[];
}

export interface TensorReader {
  /** Where the tensors come from (a file path, or a description for in-memory sets). */
  readonly source: string;
  names(): string[];
  info(name: string): TensorInfo | undefined;
  /** Reads one tensor, contiguous row-major, widened to float32. Throws CheckpointError if absent. */
  readF32(name: string): Float32Array;
  close(): void;
}

/** Any problem with a checkpoint's bytes, structure or contents; the message names the file and the problem. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** In-memory tensors: for synthesised checkpoints and tests. */
export class MemoryTensors implements TensorReader {
  readonly source: string;
  private readonly map = new Map<string, { info: TensorInfo; data: Float32Array }>();

  constructor(source = 'memory') {
    this.source = source;
  }

  set(name: string, shape: readonly number[], data: Float32Array, dtype: DType = 'F32'): this {
    if (numel(shape) !== data.length) {
      throw new CheckpointError(`${this.source}: tensor ${name} has ${data.length} values for shape [${shape.join(', ')}]`);
    }
    this.map.set(name, { info: { name, dtype, shape: [...shape] }, data });
    return this;
  }

  names(): string[] {
    return [...this.map.keys()];
  }

  info(name: string): TensorInfo | undefined {
    return this.map.get(name)?.info;
  }

  readF32(name: string): Float32Array {
    const t = this.map.get(name);
    if (!t) throw new CheckpointError(`${this.source}: no tensor named ${name}`);
    return t.data;
  }

  close(): void {}
}

/**
 * A view of a reader under canonical names (canonical name → stored name), so graph builders see one
 * naming whatever wrapper prefix or legacy spelling a checkpoint used. Names without a mapping are hidden.
 */
export class RenamedTensors implements TensorReader {
  readonly source: string;
  constructor(
    private readonly inner: TensorReader,
    private readonly mapping: ReadonlyMap<string, string>,
  ) {
    this.source = inner.source;
  }

  names(): string[] {
    return [...this.mapping.keys()];
  }

  info(name: string): TensorInfo | undefined {
    const stored = this.mapping.get(name);
    const i = stored === undefined ? undefined : this.inner.info(stored);
    return i ? { ...i, name } : undefined;
  }

  readF32(name: string): Float32Array {
    const stored = this.mapping.get(name);
    if (stored === undefined) throw new CheckpointError(`${this.source}: no tensor named ${name}`);
    return this.inner.readF32(stored);
  }

  close(): void {
    this.inner.close();
  }
}
