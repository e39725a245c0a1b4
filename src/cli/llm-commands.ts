/** CLI commands of the GGUF tools: synth-llm (random-weight test LLMs) and convert-llm (HF Llama → GGUF). */
import { z } from 'zod';
import { convertLlm } from '../gguf/convert-llm.js';
import { LLM_PRESETS, synthLlm, type LlmPreset } from '../gguf/synth.js';
import { flag, parse, UsageError } from './args.js';
import { progressLine } from './progress.js';

const nonEmpty = z.string().min(1);
const ggufPath = nonEmpty.refine((p) => p.endsWith('.gguf'), 'the output file name must end in .gguf');
const dtypeSchema = z.enum(['f32', 'f16']).transform((d) => d.toUpperCase() as 'F32' | 'F16');

const progress = (label: string) => progressLine(label);

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** `llm2clip synth-llm --preset tiny|0.5b --out FILE.gguf [--seed N] [--dtype f32|f16]` */
export async function cmdSynthLlm(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { preset: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' }, dtype: { type: 'string' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
  const r = await synthLlm({
    preset: flag(values, 'preset', z.enum(LLM_PRESETS as [LlmPreset, ...LlmPreset[]])),
    out: flag(values, 'out', ggufPath),
    seed: values.seed === undefined ? undefined : flag(values, 'seed', z.coerce.number().int().nonnegative().max(0xffffffff)),
    dtype: flag(values, 'dtype', dtypeSchema.optional()),
    onProgress: progress('writing'),
  });
  const h = r.hparams;
  process.stdout.write(
    `wrote ${r.path} (${mib(r.bytes)}): llama ${h.nLayer}×${h.nEmbd}, ${h.nHead} heads / ${h.nHeadKv} KV, n_ff ${h.nFf}, ` +
      `vocab ${h.vocabSize} (SPM; <image> = ${r.tokens.image}), ${r.dtype}, seed ${r.seed}\n`,
  );
}

/** `llm2clip convert-llm <hf-llama-dir> --out FILE.gguf [--dtype f32|f16]` */
export async function cmdConvertLlm(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { out: { type: 'string' }, dtype: { type: 'string' } });
  if (positionals.length !== 1) throw new UsageError('convert-llm takes exactly one Hugging Face model directory');
  const r = await convertLlm({
    dir: positionals[0]!,
    out: flag(values, 'out', ggufPath),
    dtype: flag(values, 'dtype', dtypeSchema.optional()),
    onProgress: progress('converting'),
  });
  const h = r.hparams;
  const t = r.tokenizer;
  process.stdout.write(
    `wrote ${r.path} (${mib(r.bytes)}): ${r.architecture} → llama ${h.nLayer}×${h.nEmbd}, ${h.nHead} heads / ${h.nHeadKv} KV, ` +
      `${r.dtype}${r.tiedEmbeddings ? ', tied embeddings' : ''}; tokenizer ${t.model}${t.model === 'gpt2' ? ` (${t.pre})` : ''} with ${t.tokens} tokens, ` +
      `${t.chatTemplate ? 'chat template included' : 'no chat template'}\n`,
  );
}
