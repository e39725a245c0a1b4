/** CLI commands of the vision stage: convert, preprocess, features, embed, adapt, synth-checkpoint. */
import { writeNpy, readNpy } from '../formats/npy.js';
import { convertCheckpoint } from '../vision/convert.js';
import { SYNTH_PRESETS, synthCheckpoint, type SynthPreset } from '../vision/synth.js';
import { l2normalize, TextAdapter, VisionTower } from '../vision/tower.js';
import { z } from 'zod';
import { flag, parse, positiveInt, UsageError } from './args.js';
import { progressLine } from './progress.js';

const towerFlags = {
  tower: { type: 'string' },
  provider: { type: 'string' },
  threads: { type: 'string' },
} as const;

const providerSchema = z.enum(['cpu', 'cuda', 'tensorrt', 'dml', 'coreml', 'webgpu']).optional();
const nonEmpty = z.string().min(1);

/** Progress of a multi-stage job: one line per stage, in 5% steps. */
function progressPrinter(): (stage: string, done: number, total: number) => void {
  const lines = new Map<string, (done: number, total: number) => void>();
  return (stage, done, total) => {
    if (!lines.has(stage)) lines.set(stage, progressLine(stage, 5));
    lines.get(stage)!(done, total);
  };
}

async function loadTower(values: Record<string, unknown>): Promise<VisionTower> {
  return VisionTower.load(flag(values, 'tower', nonEmpty), {
    executionProvider: flag(values, 'provider', providerSchema),
    threads: values.threads === undefined ? undefined : flag(values, 'threads', positiveInt),
  });
}

/** Pixels from --pixels FILE.npy: [3,S,S] or [n,3,S,S]. */
function readPixels(file: string, tower: VisionTower): { data: Float32Array; count: number } {
  const { shape, data } = readNpy(file);
  const S = tower.manifest.imageSize;
  const tail = shape.slice(-3);
  const ok = (shape.length === 3 || shape.length === 4) && tail[0] === 3 && tail[1] === S && tail[2] === S && (shape.length === 3 || shape[0]! > 0);
  if (!ok) throw new UsageError(`--pixels ${file}: shape [${shape.join(', ')}]; this tower takes [3,${S},${S}] or [n,3,${S},${S}]`);
  return { data, count: shape.length === 3 ? 1 : shape[0]! };
}

async function towerInputs(values: Record<string, unknown>, positionals: string[], tower: VisionTower, batch: number) {
  const pixels = values.pixels as string | undefined;
  if (pixels !== undefined && positionals.length > 0) throw new UsageError('give images or --pixels, not both');
  if (pixels !== undefined) {
    const { data, count } = readPixels(pixels, tower);
    const labels = Array.from({ length: count }, (_, i) => `${pixels}#${i}`);
    return { labels, out: await tower.encodePixels(data, count, { batch }) };
  }
  if (positionals.length === 0) throw new UsageError('no images given (pass image paths, or --pixels FILE.npy)');
  return { labels: positionals, out: await tower.encode(positionals, { batch }) };
}

export async function cmdConvert(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    out: { type: 'string' }, config: { type: 'string' }, dtype: { type: 'string' }, 'resize-mode': { type: 'string' },
  });
  if (positionals.length !== 1) throw new UsageError('convert takes exactly one checkpoint (file or directory)');
  const m = await convertCheckpoint(positionals[0]!, {
    outDir: flag(values, 'out', nonEmpty),
    config: flag(values, 'config', nonEmpty.optional()),
    dtype: flag(values, 'dtype', z.enum(['fp32', 'fp16']).optional()),
    resizeMode: flag(values, 'resize-mode', z.enum(['crop', 'pad']).optional()),
    onProgress: progressPrinter(),
  });
  process.stdout.write(
    `wrote ${values.out}: ${m.arch} ${m.layers}×${m.width} @${m.imageSize}px, patch_features [n,${m.patchTokens},${m.width}] from block ${m.tapLayer}, ` +
      `image_embeds [n,${m.embedDim}]${m.adapter ? `, adapter ${m.adapter.inputDim}→${m.adapter.embedDim}` : ''} (${m.dtype})\n`,
  );
}

export async function cmdPreprocess(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...towerFlags, out: { type: 'string' }, 'resize-mode': { type: 'string' } });
  if (positionals.length !== 1) throw new UsageError('preprocess takes exactly one image');
  const out = flag(values, 'out', nonEmpty);
  const resizeMode = flag(values, 'resize-mode', z.enum(['crop', 'pad']).optional());
  const tower = await loadTower(values);
  try {
    const px = await tower.preprocess(positionals[0]!, { resizeMode });
    const S = tower.manifest.imageSize;
    writeNpy(out, [3, S, S], px);
  } finally {
    await tower.dispose();
  }
}

export async function cmdFeatures(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...towerFlags, out: { type: 'string' }, pixels: { type: 'string' }, batch: { type: 'string' } });
  const out = flag(values, 'out', nonEmpty);
  const batch = values.batch === undefined ? 1 : flag(values, 'batch', positiveInt);
  const tower = await loadTower(values);
  try {
    const { out: r } = await towerInputs(values, positionals, tower, batch);
    writeNpy(out, [r.count, r.patchTokens, r.width], r.patchFeatures);
  } finally {
    await tower.dispose();
  }
}

export async function cmdEmbed(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...towerFlags, pixels: { type: 'string' }, batch: { type: 'string' }, 'no-normalize': { type: 'boolean' } });
  const batch = values.batch === undefined ? 1 : flag(values, 'batch', positiveInt);
  const tower = await loadTower(values);
  try {
    const { labels, out: r } = await towerInputs(values, positionals, tower, batch);
    const emb = values['no-normalize'] ? r.imageEmbeds : l2normalize(r.imageEmbeds, r.embedDim);
    for (let i = 0; i < r.count; i++) {
      const v = Array.from(emb.subarray(i * r.embedDim, (i + 1) * r.embedDim));
      process.stdout.write(JSON.stringify({ input: labels[i], embedding: v }) + '\n');
    }
  } finally {
    await tower.dispose();
  }
}

export async function cmdAdapt(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...towerFlags, 'llm-embeds': { type: 'string' }, out: { type: 'string' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
  const file = flag(values, 'llm-embeds', nonEmpty);
  const out = flag(values, 'out', nonEmpty);
  const adapter = await TextAdapter.load(flag(values, 'tower', nonEmpty), {
    executionProvider: flag(values, 'provider', providerSchema),
    threads: values.threads === undefined ? undefined : flag(values, 'threads', positiveInt),
  });
  try {
    const { shape, data } = readNpy(file);
    const rows = shape.length === 1 ? 1 : shape[0]!;
    if (!(shape.length === 1 || shape.length === 2) || shape[shape.length - 1] !== adapter.inputDim || rows < 1) {
      throw new UsageError(`--llm-embeds ${file}: shape [${shape.join(', ')}]; this adapter takes [n, ${adapter.inputDim}]`);
    }
    writeNpy(out, [rows, adapter.embedDim], await adapter.adapt(data, rows));
  } finally {
    await adapter.dispose();
  }
}

export async function cmdSynthCheckpoint(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    arch: { type: 'string' }, preset: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' }, dtype: { type: 'string' }, 'no-adapter': { type: 'boolean' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
  const r = await synthCheckpoint({
    arch: flag(values, 'arch', z.enum(['openai', 'eva02'])),
    preset: flag(values, 'preset', z.enum(SYNTH_PRESETS as [SynthPreset, ...SynthPreset[]])),
    outDir: flag(values, 'out', nonEmpty),
    seed: values.seed === undefined ? undefined : flag(values, 'seed', z.coerce.number().int().nonnegative()),
    dtype: flag(values, 'dtype', z.enum(['f32', 'f16', 'bf16']).transform((d) => d.toUpperCase() as 'F32' | 'F16' | 'BF16').optional()),
    adapter: !values['no-adapter'],
  });
  process.stdout.write(`wrote ${r.checkpoint}${r.config ? ` and ${r.config}` : ''}\n`);
}
