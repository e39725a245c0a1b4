/**
 * Records which tensors a graph builder read, so conversion can refuse checkpoints carrying weights the
 * graph ignores (layer scale, a k bias, extra norms…): such a tower would convert "successfully" into a
 * wrong model.
 */
import { CheckpointError, type TensorInfo, type TensorReader } from '../formats/tensor.js';

export class TrackedTensors implements TensorReader {
  readonly source: string;
  private readonly read = new Set<string>();

  constructor(private readonly inner: TensorReader) {
    this.source = inner.source;
  }

  names(): string[] {
    return this.inner.names();
  }

  info(name: string): TensorInfo | undefined {
    return this.inner.info(name);
  }

  readF32(name: string): Float32Array {
    this.read.add(name);
    return this.inner.readF32(name);
  }

  close(): void {
    this.inner.close();
  }

  assertAllRead(what: string): void {
    const unused = this.names().filter((n) => !this.read.has(n));
    if (unused.length > 0) {
      const list = unused.slice(0, 8).join(', ') + (unused.length > 8 ? `, … (${unused.length} in all)` : '');
      throw new CheckpointError(`${this.source}: the ${what} graph does not use these tensors, so this is not an architecture it supports: ${list}`);
    }
  }
}
