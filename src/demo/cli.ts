/**
 * Demo-world commands:
 *   llm2clip demo-world --out DIR [--train N] [--heldout M] [--seed S] [--per-image K] [--min-objects A] [--max-objects B] [--types t1,t2]
 *   llm2clip demo-tower-set --out DIR --count N [--seed S] [--min-objects A] [--max-objects B]
 * The recipe under models/demo/recipe/ calls them through `node dist/src/demo/run.js`.
 */
import { z } from 'zod';

import { flag, parse, positiveInt, UsageError } from '../cli/args.js';
import { writeChatDataset, writeDemoDataset, writeTowerSet } from './dataset.js';
import { QUESTION_TYPES, type QuestionType } from './world.js';
import { progressLine } from '../cli/progress.js';

export const DEMO_WORLD_USAGE =
  'llm2clip demo-world --out DIR [--train N] [--heldout M] [--seed S] [--per-image K] [--min-objects A] [--max-objects B] [--types colour,shape,where,exists,count,what]\n' +
  '    [--heldout-min-objects A] [--heldout-max-objects B]';
export const DEMO_CHAT_WORLD_USAGE = 'llm2clip demo-chat-world --out DIR [--train N] [--heldout M] [--seed S] [--min-objects A] [--max-objects B]';
export const DEMO_TOWER_SET_USAGE = 'llm2clip demo-tower-set --out DIR --count N [--seed S] [--min-objects A] [--max-objects B]';

const nonEmpty = z.string().min(1);
const nonNegInt = z.coerce.number().int().min(0);

function worldFlags(values: Record<string, unknown>): { minObjects: number; maxObjects: number; types?: QuestionType[] } {
  const minObjects = values['min-objects'] === undefined ? 1 : flag(values, 'min-objects', positiveInt);
  const maxObjects = values['max-objects'] === undefined ? 4 : flag(values, 'max-objects', positiveInt);
  if (minObjects > maxObjects || maxObjects > 9) throw new UsageError(`objects per image must satisfy 1 ≤ min (${minObjects}) ≤ max (${maxObjects}) ≤ 9`);
  let types: QuestionType[] | undefined;
  if (values.types !== undefined) {
    types = String(values.types).split(',').map((t) => t.trim()) as QuestionType[];
    const bad = types.filter((t) => !(QUESTION_TYPES as readonly string[]).includes(t));
    if (bad.length > 0 || types.length === 0) throw new UsageError(`--types: unknown question type(s) ${bad.join(', ')} (known: ${QUESTION_TYPES.join(', ')})`);
  }
  return { minObjects, maxObjects, ...(types ? { types } : {}) };
}

const progress = (label: string) => progressLine(label);

/** `llm2clip demo-world`: writes the LLaVA-format demo dataset (PNG images + train/held-out JSON). */
export async function cmdDemoWorld(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    out: { type: 'string' },
    train: { type: 'string' },
    heldout: { type: 'string' },
    seed: { type: 'string' },
    'per-image': { type: 'string' },
    'min-objects': { type: 'string' },
    'max-objects': { type: 'string' },
    types: { type: 'string' },
    'heldout-min-objects': { type: 'string' },
    'heldout-max-objects': { type: 'string' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}\n  ${DEMO_WORLD_USAGE}`);
  const world = worldFlags(values);
  const held = worldFlags({
    'min-objects': values['heldout-min-objects'] ?? values['min-objects'],
    'max-objects': values['heldout-max-objects'] ?? values['max-objects'],
  });
  const summary = await writeDemoDataset({
    outDir: flag(values, 'out', nonEmpty),
    train: values.train === undefined ? 3000 : flag(values, 'train', nonNegInt),
    heldout: values.heldout === undefined ? 300 : flag(values, 'heldout', nonNegInt),
    seed: values.seed === undefined ? 1 : flag(values, 'seed', nonNegInt),
    questionsPerImage: values['per-image'] === undefined ? 3 : flag(values, 'per-image', positiveInt),
    ...world,
    heldoutWorld: { minObjects: held.minObjects, maxObjects: held.maxObjects },
    onProgress: progress('rendering'),
  });
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
}

/** `llm2clip demo-chat-world`: conversation formats (several turns, two pictures, JSON answers) of the demo world. */
export async function cmdDemoChatWorld(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    out: { type: 'string' },
    train: { type: 'string' },
    heldout: { type: 'string' },
    seed: { type: 'string' },
    'min-objects': { type: 'string' },
    'max-objects': { type: 'string' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}\n  ${DEMO_CHAT_WORLD_USAGE}`);
  const { minObjects, maxObjects } = worldFlags(values);
  const summary = await writeChatDataset(
    flag(values, 'out', nonEmpty),
    values.train === undefined ? 3000 : flag(values, 'train', nonNegInt),
    values.heldout === undefined ? 200 : flag(values, 'heldout', nonNegInt),
    values.seed === undefined ? 1 : flag(values, 'seed', nonNegInt),
    { minObjects, maxObjects },
    progress('rendering'),
  );
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
}

/** `llm2clip demo-tower-set`: raw pixels + per-cell labels for pretraining the demo tower. */
export async function cmdDemoTowerSet(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    out: { type: 'string' },
    count: { type: 'string' },
    seed: { type: 'string' },
    'min-objects': { type: 'string' },
    'max-objects': { type: 'string' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}\n  ${DEMO_TOWER_SET_USAGE}`);
  const { minObjects, maxObjects } = worldFlags(values);
  await writeTowerSet(
    flag(values, 'out', nonEmpty),
    flag(values, 'count', positiveInt),
    values.seed === undefined ? 1 : flag(values, 'seed', nonNegInt),
    { minObjects, maxObjects },
    progress('rendering'),
  );
}
