/**
 * `npm run eval:demo`: the demo model end to end through the evaluation tooling. Generates the demo VQA
 * benchmark (eval/src/demo-bench.ts: the demo world's held-out split in the VQAv2 file formats, ten
 * answers per question, some deliberately varied), answers it with `runEval` and the local pipeline
 * (CPU, greedy, 8 new tokens, concurrency 1, one node-llama-cpp instance with maxThreads 2), scores it with
 * `scoreTask('vqav2', …)`, and prints one JSON document: the official metrics (overall, perAnswerType,
 * perQuestionType), the demo's exact-match accuracy on the same answers, how the two relate, and the
 * accuracy recorded in models/demo/manifest.json. Progress and notes go to stderr.
 *
 * By default the questions are the ones the recorded accuracy was measured on (the manifest's world, else
 * the recipe's: seed 1, 300 questions). Exit status: 0 scored; 1 the demo model is missing, or some
 * questions failed; 2 bad flags.
 *
 * Flags: --questions N  --seed S  --dir DIR (default models/cache/demo-bench/seed<S>-n<N>; regenerated)
 *        --model DIR (a demo-model folder, default models/demo) | --tower DIR --projector DIR --llm FILE.gguf
 *        --threads N (2)  --max-tokens N (8)  --no-progress
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import { z } from 'zod';

import { flag, parse, positiveInt, UsageError } from '../src/cli/args.js';
import { demoModelDir, findDemoModel, type DemoModelPaths } from '../src/demo/model.js';
import { BENCH_META_FILE, readDemoManifest, recordedAccuracy, runDemoBenchmark, writeDemoBenchmark, RECIPE_WORLD } from './src/demo-bench.js';

const nonEmpty = z.string().min(1);
const nonNegInt = z.coerce.number().int().min(0);

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    questions: { type: 'string' },
    seed: { type: 'string' },
    dir: { type: 'string' },
    model: { type: 'string' },
    tower: { type: 'string' },
    projector: { type: 'string' },
    llm: { type: 'string' },
    threads: { type: 'string' },
    'max-tokens': { type: 'string' },
    'no-progress': { type: 'boolean' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const parts = ['tower', 'projector', 'llm'].filter((k) => values[k] !== undefined);
  if (parts.length > 0 && values.model !== undefined) throw new UsageError('give --model DIR or --tower/--projector/--llm, not both');
  if (parts.length > 0 && parts.length < 3) throw new UsageError('--tower, --projector and --llm go together');

  const modelDir = values.model === undefined ? demoModelDir() : resolve(flag(values, 'model', nonEmpty));
  let model: DemoModelPaths | undefined;
  if (parts.length === 3) {
    model = { tower: flag(values, 'tower', nonEmpty), projector: flag(values, 'projector', nonEmpty), llm: flag(values, 'llm', nonEmpty) };
    for (const [k, p] of Object.entries(model)) if (!existsSync(p)) throw new UsageError(`--${k} ${p}: not found`);
  } else {
    model = findDemoModel(modelDir);
    if (!model) {
      process.stderr.write(
        `eval:demo: the demo model is missing: ${modelDir} needs tower/tower.json, projector/projector.json and llm.gguf.\n` +
          `It is built by \`npm run build && bash models/demo/recipe/build.sh\` (models/demo/README.md); or name parts with --tower/--projector/--llm.\n`,
      );
      return 1;
    }
  }
  // The manifest records the accuracy of the bundled parts only.
  const manifest = parts.length === 3 ? undefined : readDemoManifest(modelDir);
  const world = manifest?.world ?? RECIPE_WORLD;
  const questions = values.questions === undefined ? world.heldout : flag(values, 'questions', positiveInt);
  const seed = values.seed === undefined ? world.seed : flag(values, 'seed', nonNegInt);
  const dir = resolve(
    values.dir === undefined ? join(dirname(demoModelDir()), 'cache', 'demo-bench', `seed${seed}-n${questions}`) : flag(values, 'dir', nonEmpty),
  );
  if (existsSync(dir)) {
    if (!existsSync(join(dir, BENCH_META_FILE)) && readdirSync(dir).length > 0) throw new UsageError(`--dir ${dir}: exists and is not a demo benchmark folder; give an empty or new one`);
    rmSync(dir, { recursive: true, force: true });
  }

  const bench = await writeDemoBenchmark(dir, {
    questions,
    seed,
    questionsPerImage: world.questionsPerImage,
    minObjects: world.minObjects,
    maxObjects: world.maxObjects,
    types: world.types,
  });
  process.stderr.write(`eval:demo: ${bench.questions.length} questions on ${bench.images} images in ${dir}\n`);
  const recorded = recordedAccuracy(manifest, join(modelDir, 'manifest.json'));
  const { run, report } = await runDemoBenchmark({
    bench,
    model,
    ...(values.threads !== undefined ? { threads: flag(values, 'threads', positiveInt) } : {}),
    ...(values['max-tokens'] !== undefined ? { maxTokens: flag(values, 'max-tokens', positiveInt) } : {}),
    ...(recorded ? { recorded } : {}),
    progress: values['no-progress'] ? false : 'auto',
  });
  const doc = {
    model: { ...model, model_id: run.model_id },
    run: { answers: run.out, answered: run.answered, failed: run.failed, elapsed_s: run.elapsed_s, ...(run.failed > 0 ? { failures_file: run.failures_file, failures: run.failures.slice(0, 10) } : {}) },
    ...report,
  };
  process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  if ('consistent' in report.recorded && report.recorded.sameQuestions && !report.recorded.consistent) {
    process.stderr.write(`eval:demo: warning: exact-match accuracy ${report.exactMatch.accuracy}% differs from the recorded ${report.recorded.accuracy}% on the same questions\n`);
  }
  if (!report.agreement.holds) process.stderr.write('eval:demo: warning: the official overall is not explained by exact match and credit (a scoring bug)\n');
  return run.failed > 0 ? 1 : 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`eval:demo: ${(e as Error).message}\n`);
  if (process.env.LLM2CLIP_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
}
