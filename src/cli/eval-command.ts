/**
 * `llm2clip eval run|score|export`: LLaVA-format VQA runs against llm2clip or any OpenAI-compatible
 * server, official benchmark metrics, and EvalAI upload files (eval/src).
 */
import { writeFileSync } from 'node:fs';

import { z } from 'zod';

import {
  EvalInputError,
  EXPORT_TASKS,
  NORMALIZE_MODES,
  runEval,
  scoreTask,
  TASKS,
  writeExport,
  type ExportTask,
  type NormalizeMode,
  type RunOptions,
  type TaskName,
} from '../../eval/src/index.js';
import { flag, parse, positiveInt, UsageError } from './args.js';

export const EVAL_USAGE = `Usage:
  llm2clip eval run --questions Q.jsonl --images DIR --out answers.jsonl
      (--endpoint URL --model NAME [--api-key K] | --tower DIR --projector DIR --llm FILE.gguf [--template T]
       [--gpu auto|cuda|vulkan|metal|off] [--threads N] [--context-size N])
      [--prompt-suffix S] [--concurrency N] [--limit N] [--max-tokens N] [--temperature T]
      [--retries N] [--retry-delay MS] [--timeout S] [--model-id NAME] [--failures FILE] [--no-progress]
  llm2clip eval score --task vqav2|vizwiz|textvqa|gqa|pope|scienceqa|mme --answers answers.jsonl [task files] [--partial] [--out FILE]
      vqav2, vizwiz  --annotations ANN.json [--questions QUESTIONS.json] [--normalize official|always|vizwiz]
      textvqa        --annotations TextVQA_0.5.1_val.json
      gqa            --questions testdev_balanced_questions.json
      pope           --annotations-dir DIR --questions llava_pope_test.jsonl
      scienceqa      --problems problems.json --splits pid_splits.json [--split test]
      mme            --annotations-dir MME_Benchmark_release_version
  llm2clip eval export --task vqav2|vizwiz --answers A.jsonl --questions Q.jsonl --out FILE.json

run appends one answer per question; rerunning resumes (answered questions are skipped). Questions that
still fail after retries go to <out>.failed.jsonl and make the exit code 1. "\\n" in --prompt-suffix is a
newline. The API key may also come from LLM2CLIP_API_KEY or OPENAI_API_KEY.
`;

const nonEmpty = z.string().min(1);
const number = z.coerce.number().refine(Number.isFinite, 'must be a number');

function optional<T>(values: Record<string, unknown>, name: string, schema: z.ZodType<T>): T | undefined {
  return values[name] === undefined ? undefined : flag(values, name, schema);
}

function usage(message: string): UsageError {
  return new UsageError(`${message}\n${EVAL_USAGE}`);
}

async function cmdRun(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    questions: { type: 'string' },
    images: { type: 'string' },
    out: { type: 'string' },
    endpoint: { type: 'string' },
    model: { type: 'string' },
    'api-key': { type: 'string' },
    tower: { type: 'string' },
    projector: { type: 'string' },
    llm: { type: 'string' },
    template: { type: 'string' },
    gpu: { type: 'string' },
    threads: { type: 'string' },
    'context-size': { type: 'string' },
    'prompt-suffix': { type: 'string' },
    concurrency: { type: 'string' },
    limit: { type: 'string' },
    'max-tokens': { type: 'string' },
    temperature: { type: 'string' },
    retries: { type: 'string' },
    'retry-delay': { type: 'string' },
    timeout: { type: 'string' },
    'model-id': { type: 'string' },
    failures: { type: 'string' },
    'no-progress': { type: 'boolean' },
  });
  if (positionals.length > 0) throw usage(`eval run takes no positional arguments (got ${JSON.stringify(positionals[0])})`);
  const local = ['tower', 'projector', 'llm', 'template', 'gpu', 'threads', 'context-size'].filter((k) => values[k] !== undefined);
  const remote = ['endpoint', 'model', 'api-key'].filter((k) => values[k] !== undefined);
  if (local.length > 0 && remote.length > 0) throw usage(`--${remote[0]} (endpoint mode) and --${local[0]} (local mode) cannot be combined`);
  if (local.length === 0 && remote.length === 0) throw usage('give --endpoint URL --model NAME, or --tower DIR --projector DIR --llm FILE.gguf');
  const concurrency = optional(values, 'concurrency', positiveInt);
  let backend: RunOptions['backend'];
  if (remote.length > 0) {
    backend = {
      kind: 'endpoint',
      endpoint: flag(values, 'endpoint', nonEmpty),
      model: flag(values, 'model', nonEmpty),
      ...((): { apiKey?: string } => {
        const k = optional(values, 'api-key', nonEmpty) ?? process.env.LLM2CLIP_API_KEY ?? process.env.OPENAI_API_KEY;
        return k ? { apiKey: k } : {};
      })(),
      ...(values.timeout !== undefined ? { timeoutMs: flag(values, 'timeout', number.pipe(z.number().positive())) * 1000 } : {}),
    };
  } else {
    const gpu = optional(values, 'gpu', z.enum(['auto', 'cuda', 'vulkan', 'metal', 'off']).transform((g) => (g === 'off' ? (false as const) : g)));
    const threads = optional(values, 'threads', positiveInt);
    const contextSize = optional(values, 'context-size', positiveInt);
    const template = optional(values, 'template', nonEmpty);
    backend = {
      kind: 'local',
      tower: flag(values, 'tower', nonEmpty),
      projector: flag(values, 'projector', nonEmpty),
      llm: flag(values, 'llm', nonEmpty),
      ...(template !== undefined ? { template } : {}),
      ...(gpu !== undefined ? { gpu } : {}),
      ...(threads !== undefined ? { threads } : {}),
      ...(contextSize !== undefined ? { contextSize } : {}),
    };
  }
  const out = flag(values, 'out', nonEmpty);
  const opts: RunOptions = {
    questions: flag(values, 'questions', nonEmpty),
    images: flag(values, 'images', nonEmpty),
    out,
    backend,
    progress: values['no-progress'] ? false : 'auto',
  };
  const suffix = optional(values, 'prompt-suffix', z.string());
  if (suffix !== undefined) opts.promptSuffix = suffix.split('\\n').join('\n');
  if (concurrency !== undefined) opts.concurrency = concurrency;
  const limit = optional(values, 'limit', positiveInt);
  if (limit !== undefined) opts.limit = limit;
  const maxTokens = optional(values, 'max-tokens', positiveInt);
  if (maxTokens !== undefined) opts.maxTokens = maxTokens;
  const temperature = optional(values, 'temperature', number.pipe(z.number().min(0)));
  if (temperature !== undefined) opts.temperature = temperature;
  const retries = optional(values, 'retries', z.coerce.number().int().min(0));
  if (retries !== undefined) opts.retries = retries;
  const retryDelay = optional(values, 'retry-delay', z.coerce.number().int().min(0));
  if (retryDelay !== undefined) opts.retryDelayMs = retryDelay;
  const modelId = optional(values, 'model-id', nonEmpty);
  if (modelId !== undefined) opts.modelId = modelId;
  const failures = optional(values, 'failures', nonEmpty);
  if (failures !== undefined) opts.failuresFile = failures;

  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write('\ninterrupted: finishing the answers being written (Ctrl-C again to quit at once)\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  opts.signal = controller.signal;
  let summary;
  try {
    summary = await runEval(opts);
  } finally {
    process.off('SIGINT', onSigint);
  }
  const { failures: failed, ...rest } = summary;
  process.stdout.write(`${JSON.stringify({ ...rest, failed_ids: failed.map((f) => f.question_id) }, null, 2)}\n`);
  process.stderr.write(
    `eval run: ${summary.already_answered} already answered, ${summary.answered} answered now, ${summary.failed} failed` +
      (summary.not_attempted > 0 ? `, ${summary.not_attempted} not attempted` : '') +
      ` → ${summary.out}\n`,
  );
  if (summary.failed > 0) {
    const shown = failed.slice(0, 10).map((f) => `  ${JSON.stringify(f.question_id)}: ${f.error}`);
    throw new Error(
      `${summary.failed} question(s) failed and were not answered (see ${summary.failures_file}):\n${shown.join('\n')}` +
        (failed.length > 10 ? `\n  ... and ${failed.length - 10} more` : '') +
        '\nrerun the same command to retry them',
    );
  }
  if (summary.interrupted) throw new Error(`interrupted with ${summary.not_attempted} question(s) not attempted; rerun the same command to resume`);
}

async function cmdScore(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    task: { type: 'string' },
    answers: { type: 'string' },
    annotations: { type: 'string' },
    'annotations-dir': { type: 'string' },
    questions: { type: 'string' },
    problems: { type: 'string' },
    splits: { type: 'string' },
    split: { type: 'string' },
    normalize: { type: 'string' },
    partial: { type: 'boolean' },
    out: { type: 'string' },
  });
  if (positionals.length > 0) throw usage(`eval score takes no positional arguments (got ${JSON.stringify(positionals[0])})`);
  const task = flag(values, 'task', z.enum(TASKS as unknown as [TaskName, ...TaskName[]]));
  const normalize = optional(values, 'normalize', z.enum(NORMALIZE_MODES as [NormalizeMode, ...NormalizeMode[]]));
  if (normalize !== undefined && task !== 'vqav2' && task !== 'vizwiz') throw usage('--normalize applies to --task vqav2 and vizwiz only');
  const str = (k: string) => optional(values, k, nonEmpty);
  const files = {
    answers: flag(values, 'answers', nonEmpty),
    ...Object.fromEntries(
      (
        [
          ['annotations', 'annotations'],
          ['annotationsDir', 'annotations-dir'],
          ['questions', 'questions'],
          ['problems', 'problems'],
          ['splits', 'splits'],
          ['split', 'split'],
        ] as const
      )
        .map(([key, fl]) => [key, str(fl)] as const)
        .filter(([, v]) => v !== undefined),
    ),
    ...(normalize ? { normalize } : {}),
    ...(values.partial ? { partial: true } : {}),
  };
  let result;
  try {
    result = scoreTask(task, files, (m) => process.stderr.write(`warning: ${m}\n`));
  } catch (e) {
    if (e instanceof EvalInputError && /needs --/.test(e.message)) throw usage(e.message);
    throw e;
  }
  const json = JSON.stringify({ task, ...result }, null, 2);
  process.stdout.write(`${json}\n`);
  const out = str('out');
  if (out) writeFileSync(out, `${json}\n`);
}

async function cmdExport(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    task: { type: 'string' },
    answers: { type: 'string' },
    questions: { type: 'string' },
    out: { type: 'string' },
  });
  if (positionals.length > 0) throw usage(`eval export takes no positional arguments (got ${JSON.stringify(positionals[0])})`);
  const task = flag(values, 'task', z.enum(EXPORT_TASKS as [ExportTask, ...ExportTask[]]));
  const out = flag(values, 'out', nonEmpty);
  const r = writeExport(task, flag(values, 'answers', nonEmpty), flag(values, 'questions', nonEmpty), out, (m) => process.stderr.write(`warning: ${m}\n`));
  if (r.missing > 0) process.stderr.write(`warning: ${r.missing} question(s) had no answer and were exported with an empty answer\n`);
  process.stderr.write(`eval export: ${r.entries.length} entries → ${out}\n`);
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<void>> = { run: cmdRun, score: cmdScore, export: cmdExport };

export async function cmdEval(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h') {
    process.stdout.write(EVAL_USAGE);
    return;
  }
  const run = SUBCOMMANDS[sub];
  if (!run) throw usage(`unknown eval subcommand ${JSON.stringify(sub)}`);
  await run(rest);
}
