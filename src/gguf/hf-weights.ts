/**
 * The weights of a Hugging Face model directory as one lazily-read tensor set: `model.safetensors`, or
 * shards listed by `model.safetensors.index.json` (its weight_map says which file holds which tensor).
 * Reuses the project's safetensors reader, so each tensor is read (and widened to float32) on demand.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { SafetensorsReader } from '../formats/safetensors.js';
import type { TensorInfo, TensorReader } from '../formats/tensor.js';
import { GgufError } from './types.js';

const indexSchema = z.looseObject({ weight_map: z.record(z.string(), z.string()) });

export class HfWeights implements TensorReader {
  readonly source: string;
  private constructor(
    dir: string,
    private readonly readers: SafetensorsReader[],
    private readonly where: Map<string, SafetensorsReader>,
  ) {
    this.source = dir;
  }

  static open(dir: string): HfWeights {
    const single = path.join(dir, 'model.safetensors');
    const indexFile = path.join(dir, 'model.safetensors.index.json');
    if (fs.existsSync(single)) {
      const r = SafetensorsReader.open(single);
      return new HfWeights(dir, [r], new Map(r.names().map((n) => [n, r])));
    }
    if (!fs.existsSync(indexFile)) {
      const bin = fs.readdirSync(dir).find((f) => /^pytorch_model.*\.bin$/.test(f));
      throw new GgufError(
        `${dir}: no model.safetensors or model.safetensors.index.json` +
          (bin ? ` (found ${bin}: convert-llm reads safetensors checkpoints only; re-save with save_pretrained(safe_serialization=True))` : ''),
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
    } catch (e) {
      throw new GgufError(`${indexFile}: not valid JSON (${(e as Error).message})`);
    }
    const idx = indexSchema.safeParse(json);
    if (!idx.success) throw new GgufError(`${indexFile}: expected {"weight_map": {tensor: file}}`);
    const readers = new Map<string, SafetensorsReader>();
    const where = new Map<string, SafetensorsReader>();
    try {
      for (const [tensor, file] of Object.entries(idx.data.weight_map)) {
        // Shards live next to the index; a path that leaves the directory is not a shard.
        if (file !== path.basename(file)) throw new GgufError(`${indexFile}: shard name ${JSON.stringify(file)} is not a plain file name`);
        let r = readers.get(file);
        if (!r) {
          r = SafetensorsReader.open(path.join(dir, file));
          readers.set(file, r);
        }
        if (r.info(tensor) === undefined && !r.skipped.some((s) => s.name === tensor)) {
          throw new GgufError(`${indexFile}: weight_map puts ${tensor} in ${file}, which does not hold it`);
        }
        where.set(tensor, r);
      }
    } catch (e) {
      for (const r of readers.values()) r.close();
      throw e;
    }
    return new HfWeights(dir, [...readers.values()], where);
  }

  names(): string[] {
    return [...this.where.keys()].filter((n) => this.where.get(n)!.info(n) !== undefined);
  }

  /** Tensors present but in a dtype other than F32/F16/BF16 (integer buffers and the like). */
  skipped(): { name: string; dtype: string }[] {
    return this.readers.flatMap((r) => r.skipped.filter((s) => this.where.get(s.name) === r));
  }

  info(name: string): TensorInfo | undefined {
    return this.where.get(name)?.info(name);
  }

  readF32(name: string): Float32Array {
    const r = this.where.get(name);
    if (!r) throw new GgufError(`${this.source}: no tensor named ${name}`);
    return r.readF32(name);
  }

  close(): void {
    for (const r of this.readers) r.close();
  }
}
