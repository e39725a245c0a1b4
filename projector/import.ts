/**
 * `llm2clip import-projector`: a LLaVA projector (`model.mm_projector.*` in a LLaVA checkpoint folder —
 * safetensors or torch zip shards — or a stage-1 `mm_projector.bin`) → our projector format. Torch files go
 * through the restricted unpickler; the layout is read from the tensors and checked against config.json.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { z } from 'zod';
import { openCheckpoint } from '../src/formats/checkpoint.js';
import { writeSafetensors } from '../src/formats/safetensors.js';
import type { TensorReader } from '../src/formats/tensor.js';
import { PROJECTOR_JSON, PROJECTOR_WEIGHTS, ProjectorError, projectorShapes, type ProjectorManifest } from './spec.js';

const KEY = /^(?:.*\.)?mm_projector\.(?:(\d+)\.)?(weight|bias)$/;

const llavaConfig = z.looseObject({
  mm_projector_type: z.string().optional(),
  mm_hidden_size: z.number().int().positive().optional(),
  hidden_size: z.number().int().positive().optional(),
  image_aspect_ratio: z.string().optional(),
  _name_or_path: z.string().optional(),
});

function weightFiles(src: string): string[] {
  if (!existsSync(src)) throw new ProjectorError(`${src}: no such file or directory`);
  if (!statSync(src).isDirectory()) return [src];
  const files = readdirSync(src)
    .filter((f) => ['.safetensors', '.bin', '.pt', '.pth'].includes(extname(f)))
    .sort()
    .map((f) => join(src, f));
  if (files.length === 0) throw new ProjectorError(`${src}: no .safetensors/.bin/.pt files`);
  return files;
}

interface Found {
  readonly reader: TensorReader;
  readonly stored: string;
}

/** Collects mm_projector tensors from every weight file, keyed by canonical `<index>.weight` names. */
function collect(files: string[]): { found: Map<string, Found>; readers: TensorReader[] } {
  const found = new Map<string, Found>();
  const readers: TensorReader[] = [];
  for (const f of files) {
    const r = openCheckpoint(f);
    readers.push(r);
    for (const name of r.names()) {
      const m = KEY.exec(name);
      if (!m) continue;
      const canon = m[1] === undefined ? m[2]! : `${m[1]}.${m[2]}`;
      const prev = found.get(canon);
      if (prev) throw new ProjectorError(`mm_projector ${canon} appears twice (${prev.reader.source}: ${prev.stored}; ${f}: ${name})`);
      found.set(canon, { reader: r, stored: name });
    }
  }
  return { found, readers };
}

function inferType(src: string, canon: string[]): string {
  if (canon.every((c) => !c.includes('.'))) return 'linear';
  const idx = [...new Set(canon.map((c) => Number(c.split('.')[0])))].sort((a, b) => a - b);
  if (!idx.every((v, i) => v === 2 * i)) {
    throw new ProjectorError(`${src}: mm_projector layers ${idx.join(',')} are not LLaVA's Linear/GELU sequence (0, 2, 4, …)`);
  }
  return `mlp${idx.length}x_gelu`;
}

export async function importLlavaProjector(src: string, outDir: string): Promise<ProjectorManifest> {
  const cfgPath = statSync(src, { throwIfNoEntry: false })?.isDirectory() ? join(src, 'config.json') : undefined;
  let cfg: z.infer<typeof llavaConfig> | undefined;
  if (cfgPath && existsSync(cfgPath)) {
    const r = llavaConfig.safeParse(JSON.parse(readFileSync(cfgPath, 'utf8')));
    if (!r.success) throw new ProjectorError(`${cfgPath}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    cfg = r.data;
  }
  const { found, readers } = collect(weightFiles(src));
  try {
    if (found.size === 0) throw new ProjectorError(`${src}: no mm_projector tensors (expected model.mm_projector.{0,2}.weight/bias)`);
    const type = inferType(src, [...found.keys()]);
    if (cfg?.mm_projector_type !== undefined && cfg.mm_projector_type !== type) {
      throw new ProjectorError(`${cfgPath}: mm_projector_type is ${cfg.mm_projector_type} but the weights form ${type}`);
    }
    const first = found.get(type === 'linear' ? 'weight' : '0.weight');
    if (!first) throw new ProjectorError(`${src}: mm_projector has no first-layer weight`);
    const shapeOf = (f: Found) => f.reader.info(f.stored)!.shape;
    const lastIdx = type === 'linear' ? undefined : 2 * (Number(/\d+/.exec(type)![0]) - 1);
    const last = found.get(lastIdx === undefined ? 'weight' : `${lastIdx}.weight`)!;
    const inputDim = shapeOf(first)[1]!;
    const outputDim = shapeOf(last)[0]!;
    const hiddenDim = type === 'linear' ? undefined : shapeOf(first)[0]!;
    if (cfg?.mm_hidden_size !== undefined && cfg.mm_hidden_size !== inputDim) {
      throw new ProjectorError(`${cfgPath}: mm_hidden_size ${cfg.mm_hidden_size} but the projector takes ${inputDim}`);
    }
    if (cfg?.hidden_size !== undefined && cfg.hidden_size !== outputDim) {
      throw new ProjectorError(`${cfgPath}: hidden_size ${cfg.hidden_size} but the projector outputs ${outputDim}`);
    }
    const manifest: ProjectorManifest = {
      format: 'llm2clip-projector',
      version: 1,
      type,
      inputDim,
      ...(hiddenDim !== undefined ? { hiddenDim } : {}),
      outputDim,
      llm: { nEmbd: outputDim, ...(cfg?._name_or_path ? { name: cfg._name_or_path } : {}) },
      ...(cfg?.image_aspect_ratio === 'pad' ? { resizeMode: 'pad' as const } : cfg?.image_aspect_ratio ? { resizeMode: 'crop' as const } : {}),
    };
    const expected = projectorShapes(manifest);
    for (const [name, shape] of expected) {
      const f = found.get(name);
      if (!f) throw new ProjectorError(`${src}: mm_projector.${name} is missing`);
      const got = shapeOf(f);
      if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
        throw new ProjectorError(`${src}: mm_projector.${name} has shape [${got.join(', ')}], expected [${shape.join(', ')}]`);
      }
    }
    if (found.size !== expected.size) {
      const extra = [...found.keys()].filter((k) => !expected.has(k));
      throw new ProjectorError(`${src}: unexpected mm_projector tensors ${extra.join(', ')}`);
    }
    mkdirSync(outDir, { recursive: true });
    writeSafetensors(
      join(outDir, PROJECTOR_WEIGHTS),
      [...expected].map(([name, shape]) => ({ name, shape, dtype: 'F32' as const, data: () => found.get(name)!.reader.readF32(found.get(name)!.stored) })),
      { format: 'pt' },
    );
    writeFileSync(join(outDir, PROJECTOR_JSON), JSON.stringify(manifest, null, 2) + '\n');
    return manifest;
  } finally {
    for (const r of readers) r.close();
  }
}
