/**
 * `llm2clip features --dataset FILE.json --images DIR --tower DIR --llm FILE.gguf --out SHARDS/`:
 * training shards for the projector trainer (src/train/shards.ts). The plain `features` command (images
 * → one .npy) stays in vision-commands.ts; main.ts dispatches here when argv holds --dataset.
 */
import { z } from 'zod';

import { TEMPLATE_CHOICES, type TemplateChoice } from '../chat/prompt.js';
import { buildFeatureShards, DEFAULT_SHARD_SIZE } from '../train/shards.js';
import { flag, parse, positiveInt, UsageError } from './args.js';

export const FEATURES_DATASET_USAGE =
  'llm2clip features --dataset FILE.json --images DIR --tower DIR --llm FILE.gguf --out SHARDS/ ' +
  `[--template ${TEMPLATE_CHOICES.join('|')}] [--shard-size N (${DEFAULT_SHARD_SIZE})] [--batch N] [--resize-mode crop|pad] [--feature-dtype f32|f16] [--skip-invalid]`;

const nonEmpty = z.string().min(1);

/** True when a `features` command line asks for dataset shards rather than per-image features. */
export function isDatasetFeatures(argv: readonly string[]): boolean {
  return argv.some((a) => a === '--dataset' || a.startsWith('--dataset='));
}

/** A one-line progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise. */
export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): (done: number, total: number, note?: string) => void {
  const t0 = performance.now();
  let lastDecile = -1;
  let lastDraw = 0;
  return (done, total, note) => {
    const now = performance.now();
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const secs = (now - t0) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 && total > done ? `${Math.ceil((total - done) / rate)}s` : '-';
    const width = 24;
    const bar = '█'.repeat(Math.round(frac * width)).padEnd(width, '░');
    const line = `${label} ${bar} ${done}/${total} ${rate.toFixed(1)}/s ETA ${eta}${note ? ` ${note}` : ''}`;
    if (stream.isTTY) {
      if (now - lastDraw > 100 || done === total) {
        stream.write(`\r${line}\x1b[K${done === total ? '\n' : ''}`);
        lastDraw = now;
      }
    } else {
      const decile = Math.floor(frac * 10);
      if (decile !== lastDecile) {
        stream.write(`${line}\n`);
        lastDecile = decile;
      }
    }
  };
}

export async function cmdFeaturesDataset(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    dataset: { type: 'string' },
    images: { type: 'string' },
    tower: { type: 'string' },
    llm: { type: 'string' },
    template: { type: 'string' },
    out: { type: 'string' },
    'shard-size': { type: 'string' },
    batch: { type: 'string' },
    'resize-mode': { type: 'string' },
    'feature-dtype': { type: 'string' },
    'skip-invalid': { type: 'boolean' },
    provider: { type: 'string' },
    threads: { type: 'string' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]} (usage: ${FEATURES_DATASET_USAGE})`);
  const provider = flag(values, 'provider', z.enum(['cpu', 'cuda', 'tensorrt', 'dml', 'coreml', 'webgpu']).optional());
  const threads = values.threads === undefined ? undefined : flag(values, 'threads', positiveInt);
  const bar = progressBar('features');
  const r = await buildFeatureShards({
    dataset: flag(values, 'dataset', nonEmpty),
    images: flag(values, 'images', nonEmpty),
    tower: flag(values, 'tower', nonEmpty),
    llm: flag(values, 'llm', nonEmpty),
    out: flag(values, 'out', nonEmpty),
    template: flag(values, 'template', z.enum(TEMPLATE_CHOICES as [TemplateChoice, ...TemplateChoice[]]).optional()),
    shardSize: values['shard-size'] === undefined ? undefined : flag(values, 'shard-size', positiveInt),
    batch: values.batch === undefined ? undefined : flag(values, 'batch', positiveInt),
    resizeMode: flag(values, 'resize-mode', z.enum(['crop', 'pad']).optional()),
    featureDtype: flag(values, 'feature-dtype', z.enum(['f32', 'f16']).optional()),
    skipInvalid: values['skip-invalid'] === true,
    towerSession: { ...(provider ? { executionProvider: provider } : {}), ...(threads ? { threads } : {}) },
    onProgress: (done, total, resumed) => bar(done, total, resumed > 0 ? `(${resumed} shard(s) already done)` : undefined),
  });
  const m = r.manifest;
  const rows = m.shards.reduce((a, s) => a + s.rows, 0);
  const labels = m.shards.reduce((a, s) => a + s.labelTokens, 0);
  process.stdout.write(
    `wrote ${r.written} of ${m.shards.length} shard(s) to ${values.out}: ${rows} rows, ${labels} answer tokens, ` +
      `${m.tokensPerImage} image tokens × ${m.tower.width} per image, template ${m.template}` +
      (m.dataset.skipped.length ? `, ${m.dataset.skipped.length} sample(s) skipped` : '') +
      '\n',
  );
}
