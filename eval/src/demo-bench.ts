/**
 * A VQAv2-format benchmark generated from the demo world (src/demo), and the end-to-end run behind
 * `npm run eval:demo`: generate → `runEval` with the bundled demo model → `scoreTask('vqav2', …)`.
 *
 * Questions are the demo world's held-out split, `demoSplit('heldout', N, seed, world)`: by default the
 * very questions the demo model's recorded runtime accuracy was measured on (models/demo/manifest.json
 * `world`, else the recipe's SEED=1 HELDOUT=300 PER_IMAGE=3 MIN_OBJ=1 MAX_OBJ=4, all question types;
 * models/demo/recipe/build.sh). The first n questions of a split are the same for every N ≥ n.
 *
 * Files (the official names and shapes):
 *   v2_OpenEnded_mscoco_val2014_questions.json  {info, task_type, data_type, data_subtype, questions: [{image_id, question, question_id}], license}
 *   v2_mscoco_val2014_annotations.json          {info, license, data_type, data_subtype, annotations: [{question_id, image_id,
 *                                                 question_type, answer_type, multiple_choice_answer, answers: 10 × {answer, answer_confidence, answer_id}}]}
 *   llava_vqav2_demo_val.jsonl                  LLaVA question file {question_id, image, text, category: "default"}
 *   images/heldout-NNNNNN.png                   the scenes, rendered exactly as the demo dataset renders them
 *   demo_bench.json                             what was generated: world, seed, variant kind of every question
 *
 * Ids: image_id = 1 + the demo image index (heldout-000007.png → 8; COCO ids are positive), question_id =
 * 1000 × image_id + k, as VQAv2 numbers them. question_type is the question's lead words ("what colour is
 * the", "how many", "is there a", …, as VQA's types are); answer_type: exists → yes/no, count → number,
 * else other. multiple_choice_answer is the world's canonical answer.
 *
 * Prompt: the LLaVA `text` is the bare question, without LLaVA's VQAv2 suffix "\nAnswer the question using
 * a single word or phrase.": the demo model was trained on `<image>\n{question}` only (src/demo/dataset.ts
 * toLlava, tokenized by the recipe's `tokens` step) and its recorded accuracy asks the bare question
 * (src/demo/evaluate.ts); its tokenizer has one token per world word, so the suffix would be unseen bytes.
 *
 * The ten answers (a deterministic draw from the seed; per block of ten questions: five unanimous, two
 * surface, two minority, one mixed). With c the canonical answer, f1..f3 surface forms of it that the
 * official normalisation maps onto it (digits for number words, "none" for zero, articles, case, a
 * trailing ".", a hyphen), w a plausible wrong answer (a neighbouring colour or cell, another shape, the
 * opposite yes/no, a count off by one, another object / "nothing"), wf a surface form of w:
 *   unanimous  10 × c. Nothing is normalised (vqaEval.py master normalises only when the answers differ):
 *              only c itself scores; "Red", "red." or "2" for "two" score 0 (the demo's own exact match
 *              accepts the first two).
 *   surface    3 × c, 3 × f1, 2 × f2, 2 × f3. c and every fi score 1 — only because of the normalisation:
 *              compared raw, c matches 3 answers and would get (3 × 2/3 + 7 × 1)/10 = 0.9.
 *   minority   (10 − m) × c, m × w, m = 1, 2, 3 in turn: c scores 1; w gets min(1, n/3) credit averaged over the
 *              ten leave-one-out subsets = 0.3 m (0.3, 0.6, 0.9) instead of 0.
 *   mixed      2 × c, 2 × f1, 2 × f2, 1 × f3, 2 × w, 1 × wf: c (7 after normalisation) scores 1 (raw: 0.6);
 *              w (3 after normalisation) scores 0.9 (raw: 0.6).
 * So the canonical answers score exactly 100 overall, and a model that answers in the world's lowercase
 * words scores official = exact-match accuracy + (credit earned by wrong answers that some annotators
 * gave) / N; `demoBenchReport` prints that decomposition.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { z } from 'zod';

import { demoSplit } from '../../src/demo/dataset.js';
import type { DemoModelPaths } from '../../src/demo/model.js';
import { article, COLOURS, GRID, NUMBERS, POSITIONS, QUESTION_TYPES, renderScene, SHAPES, normalizeAnswer, type QuestionType } from '../../src/demo/world.js';
import { hashName, mulberry32 } from '../../src/util/random.js';
import { answersById, idKey, readAnswers, type AnswerRecord } from './files.js';
import { vqaNormalize } from './normalize.js';
import { pyRound } from './py.js';
import { runEval, type RunSummary } from './run.js';
import { scoreTask, type VqaResult } from './score.js';
import { vqaQuestionAccuracy } from './vqa.js';

export const VQA_QUESTIONS_FILE = 'v2_OpenEnded_mscoco_val2014_questions.json';
export const VQA_ANNOTATIONS_FILE = 'v2_mscoco_val2014_annotations.json';
export const LLAVA_QUESTIONS_FILE = 'llava_vqav2_demo_val.jsonl';
export const BENCH_META_FILE = 'demo_bench.json';
export const IMAGES_DIR = 'images';
/** The demo model's prompt is the bare question (see the header). */
export const DEMO_PROMPT_SUFFIX = '';

/** The held-out split the recipe evaluates the demo model on (models/demo/recipe/build.sh). */
export const RECIPE_WORLD = { seed: 1, heldout: 300, questionsPerImage: 3, minObjects: 1, maxObjects: 3, types: [...QUESTION_TYPES] as QuestionType[] };

export const VARIANT_KINDS = ['unanimous', 'surface', 'minority', 'mixed'] as const;
export type VariantKind = (typeof VARIANT_KINDS)[number];
/** One block of ten questions, shuffled per block. */
const KIND_BLOCK: readonly VariantKind[] = ['unanimous', 'unanimous', 'unanimous', 'unanimous', 'unanimous', 'surface', 'surface', 'minority', 'minority', 'mixed'];

export type AnswerType = 'yes/no' | 'number' | 'other';

// ---------------------------------------------------------------------------------------------------
// The official file shapes (strict: exactly the official fields)

const info = z.object({ description: z.string(), version: z.string(), year: z.number().int(), contributor: z.string(), date_created: z.string(), url: z.string() }).strict();
const license = z.object({ name: z.string(), url: z.string() }).strict();

export const officialQuestionsSchema = z
  .object({
    info,
    task_type: z.literal('Open-Ended'),
    data_type: z.literal('mscoco'),
    data_subtype: z.string(),
    questions: z.array(z.object({ image_id: z.number().int().positive(), question: z.string().min(1), question_id: z.number().int().positive() }).strict()).min(1),
    license,
  })
  .strict();

export const officialAnswerSchema = z.object({ answer: z.string().min(1), answer_confidence: z.enum(['yes', 'maybe', 'no']), answer_id: z.number().int().min(1).max(10) }).strict();

export const officialAnnotationSchema = z
  .object({
    question_id: z.number().int().positive(),
    image_id: z.number().int().positive(),
    question_type: z.string().min(1),
    answer_type: z.enum(['yes/no', 'number', 'other']),
    multiple_choice_answer: z.string().min(1),
    answers: z.array(officialAnswerSchema).length(10),
  })
  .strict();
export type OfficialAnnotation = z.infer<typeof officialAnnotationSchema>;

export const officialAnnotationsSchema = z
  .object({ info, license, data_type: z.literal('mscoco'), data_subtype: z.string(), annotations: z.array(officialAnnotationSchema).min(1) })
  .strict();

export const llavaQuestionLineSchema = z.object({ question_id: z.number().int().positive(), image: z.string().min(1), text: z.string().min(1), category: z.string() }).strict();

// ---------------------------------------------------------------------------------------------------
// Generation

export interface DemoBenchOptions {
  /** questions (default: the recipe's 300) */
  questions?: number;
  /** the world seed of the held-out split (default: the recipe's 1) */
  seed?: number;
  questionsPerImage?: number;
  minObjects?: number;
  maxObjects?: number;
  types?: readonly QuestionType[];
  /** render the PNGs (default true) */
  images?: boolean;
}

export interface DemoBenchQuestion {
  question_id: number;
  image_id: number;
  image: string;
  /** the demo dataset's id ("heldout-<image index>-<k>") */
  demo_id: string;
  type: QuestionType;
  question: string;
  /** the world's canonical answer (= multiple_choice_answer) */
  answer: string;
  kind: VariantKind;
  annotation: OfficialAnnotation;
  /** the wrong answer some annotators gave, how many gave it in exactly that form, and its official credit */
  minority?: { answer: string; annotators: number; credit: number };
}

export interface DemoBenchmark {
  dir: string;
  files: { questions: string; annotations: string; llavaQuestions: string; images: string; meta: string };
  seed: number;
  world: { questionsPerImage: number; minObjects: number; maxObjects: number; types: QuestionType[] };
  questions: DemoBenchQuestion[];
  images: number;
  kinds: Record<VariantKind, number>;
}

const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/** Three raw forms of `answer`, each different from it, that vqaEval.py's normalisation maps onto it. */
export function surfaceForms(answer: string, type: QuestionType): [string, string, string] {
  switch (type) {
    case 'count': {
      const d = String(NUMBERS.indexOf(answer as (typeof NUMBERS)[number]));
      return answer === 'zero' ? ['0', 'none', 'Zero.'] : [d, cap(answer), `${d}.`];
    }
    case 'exists':
    case 'colour':
      return [cap(answer), `${answer}.`, answer.toUpperCase()];
    case 'shape':
      return [cap(answer), `a ${answer}`, `${answer}.`];
    case 'where':
      return answer.includes(' ') ? [cap(answer), answer.split(' ').join('-'), `${answer}.`] : [cap(answer), `the ${answer}`, `${answer}.`];
    case 'what':
      if (answer === 'nothing') return [cap(answer), `${answer}.`, answer.toUpperCase()];
      {
        const bare = answer.replace(/^an? /, '');
        return [bare, `the ${bare}`, `${cap(answer)}.`];
      }
  }
}

type Rng = () => number;
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const neighbourColour = (r: Rng, c: string): string => {
  const i = COLOURS.indexOf(c as (typeof COLOURS)[number]);
  return COLOURS[(i + (r() < 0.5 ? 1 : COLOURS.length - 1)) % COLOURS.length]!;
};
const describe = (colour: string, shape: string): string => `${article(colour)} ${colour} ${shape}`;

/** A plausible wrong answer to a question of `type` whose answer is `answer`. */
export function confusion(r: Rng, answer: string, type: QuestionType): string {
  switch (type) {
    case 'colour':
      return neighbourColour(r, answer);
    case 'shape':
      return pick(r, SHAPES.filter((s) => s !== answer));
    case 'where': {
      const cell = POSITIONS.indexOf(answer as (typeof POSITIONS)[number]);
      const [row, col] = [Math.floor(cell / GRID), cell % GRID];
      const near = [[row - 1, col], [row + 1, col], [row, col - 1], [row, col + 1]].filter(([y, x]) => y! >= 0 && y! < GRID && x! >= 0 && x! < GRID);
      const [y, x] = pick(r, near);
      return POSITIONS[y! * GRID + x!]!;
    }
    case 'exists':
      return answer === 'yes' ? 'no' : 'yes';
    case 'count': {
      const n = NUMBERS.indexOf(answer as (typeof NUMBERS)[number]);
      const m = n === 0 ? 1 : n === NUMBERS.length - 1 ? n - 1 : n + (r() < 0.5 ? -1 : 1);
      return NUMBERS[m]!;
    }
    case 'what': {
      if (answer === 'nothing') return describe(pick(r, COLOURS), pick(r, SHAPES));
      if (r() < 0.5) return 'nothing';
      const [, colour, shape] = answer.split(' ') as [string, string, string];
      return describe(neighbourColour(r, colour), shape);
    }
  }
}

/** VQA-style question type: the question's lead words. */
const TYPE_PREFIXES = [
  'what is the shape of the', 'what colour is the', 'what color is the', 'which colour is the', 'what shape is the', 'which shape is',
  'where is the', 'is there a', 'how many', 'count the', 'what is at the', 'what is in the',
].sort((a, b) => b.length - a.length);

export function questionType(question: string): string {
  const q = question.toLowerCase();
  return TYPE_PREFIXES.find((p) => q.startsWith(p)) ?? q.split(/\s+/).slice(0, 3).join(' ');
}

export function answerType(type: QuestionType): AnswerType {
  return type === 'exists' ? 'yes/no' : type === 'count' ? 'number' : 'other';
}

function shuffle<T>(r: Rng, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

/** The ten annotator answers of one question (in annotator order), and the minority answer if any. */
function tenAnswers(r: Rng, kind: VariantKind, answer: string, type: QuestionType, m: number): { answers: { answer: string; confidence: 'yes' | 'maybe' }[]; minority?: { answer: string; annotators: number } } {
  const [f1, f2, f3] = surfaceForms(answer, type);
  const yes = (a: string, n: number) => Array.from({ length: n }, () => ({ answer: a, confidence: 'yes' as const }));
  const maybe = (a: string, n: number) => Array.from({ length: n }, () => ({ answer: a, confidence: 'maybe' as const }));
  switch (kind) {
    case 'unanimous':
      return { answers: yes(answer, 10) };
    case 'surface':
      return { answers: shuffle(r, [...yes(answer, 3), ...yes(f1, 3), ...yes(f2, 2), ...yes(f3, 2)]) };
    case 'minority': {
      const w = confusion(r, answer, type);
      return { answers: shuffle(r, [...yes(answer, 10 - m), ...maybe(w, m)]), minority: { answer: w, annotators: m } };
    }
    case 'mixed': {
      const w = confusion(r, answer, type);
      const wf = surfaceForms(w, type)[0];
      return { answers: shuffle(r, [...yes(answer, 2), ...yes(f1, 2), ...yes(f2, 2), ...yes(f3, 1), ...maybe(w, 2), ...maybe(wf, 1)]), minority: { answer: w, annotators: 2 } };
    }
  }
}

const INFO = {
  description: 'llm2clip demo-world VQA benchmark in the VQAv2 file formats (synthetic: coloured shapes on a 3x3 grid)',
  version: '2.0',
  year: 2024,
  contributor: 'llm2clip (generated by eval/src/demo-bench.ts)',
  date_created: '1970-01-01 00:00:00',
  url: 'https://visualqa.org/',
};
const LICENSE = { name: 'MIT (generated data)', url: 'https://opensource.org/licenses/MIT' };

/**
 * Writes the benchmark into `outDir` (created; the files it names are overwritten). Deterministic: the
 * same options give byte-identical files. Every question is checked on the way out: its canonical
 * answer scores exactly 1 with the official rule, its minority answer (if any) exactly the credit
 * recorded for it.
 */
export async function writeDemoBenchmark(outDir: string, o: DemoBenchOptions = {}): Promise<DemoBenchmark> {
  const n = o.questions ?? RECIPE_WORLD.heldout;
  const seed = o.seed ?? RECIPE_WORLD.seed;
  if (!Number.isInteger(n) || n < 1) throw new Error(`questions must be a positive integer (got ${n})`);
  const world = {
    questionsPerImage: o.questionsPerImage ?? RECIPE_WORLD.questionsPerImage,
    minObjects: o.minObjects ?? RECIPE_WORLD.minObjects,
    maxObjects: o.maxObjects ?? RECIPE_WORLD.maxObjects,
    types: [...(o.types ?? RECIPE_WORLD.types)],
  };
  const split = demoSplit('heldout', n, seed, world);
  const r = mulberry32(hashName('llm2clip demo VQA benchmark', seed));

  let block: VariantKind[] = [];
  let minorities = 0;
  const questions: DemoBenchQuestion[] = split.questions.map((dq, i) => {
    if (i % KIND_BLOCK.length === 0) block = shuffle(r, [...KIND_BLOCK]);
    const kind = block[i % KIND_BLOCK.length]!;
    const m = /^heldout-(\d+)-(\d+)$/.exec(dq.id);
    if (!m) throw new Error(`unexpected demo question id ${dq.id}`);
    const imageId = Number(m[1]) + 1;
    const questionId = 1000 * imageId + Number(m[2]);
    // minority sizes cycle 1, 2, 3 so each credit (0.3, 0.6, 0.9) is equally common
    const drawn = tenAnswers(r, kind, dq.answer, dq.type, kind === 'minority' ? 1 + (minorities++ % 3) : 0);
    const annotation: OfficialAnnotation = {
      question_id: questionId,
      image_id: imageId,
      question_type: questionType(dq.question),
      answer_type: answerType(dq.type),
      multiple_choice_answer: dq.answer,
      answers: drawn.answers.map((a, k) => ({ answer: a.answer, answer_confidence: a.confidence, answer_id: k + 1 })),
    };
    const q: DemoBenchQuestion = { question_id: questionId, image_id: imageId, image: dq.image, demo_id: dq.id, type: dq.type, question: dq.question, answer: dq.answer, kind, annotation };
    // The design's promises, checked with the scorer itself.
    if (vqaQuestionAccuracy(annotation.answers, dq.answer) !== 1) throw new Error(`${dq.id}: the canonical answer ${JSON.stringify(dq.answer)} does not score 1 (${kind})`);
    if (drawn.minority) {
      const credit = kind === 'mixed' ? 0.9 : Math.round(3 * drawn.minority.annotators) / 10;
      const got = vqaQuestionAccuracy(annotation.answers, drawn.minority.answer);
      if (Math.abs(got - credit) > 1e-12 || vqaNormalize(drawn.minority.answer) === vqaNormalize(dq.answer)) {
        throw new Error(`${dq.id}: the minority answer ${JSON.stringify(drawn.minority.answer)} scores ${got}, not ${credit}`);
      }
      q.minority = { ...drawn.minority, credit };
    }
    return q;
  });

  const imagesDir = join(outDir, IMAGES_DIR);
  mkdirSync(imagesDir, { recursive: true });
  if (o.images ?? true) for (const [name, scene] of split.scenes) writeFileSync(join(imagesDir, name), await renderScene(scene));

  const files = {
    questions: join(outDir, VQA_QUESTIONS_FILE),
    annotations: join(outDir, VQA_ANNOTATIONS_FILE),
    llavaQuestions: join(outDir, LLAVA_QUESTIONS_FILE),
    images: imagesDir,
    meta: join(outDir, BENCH_META_FILE),
  };
  const questionsFile = {
    info: INFO,
    task_type: 'Open-Ended',
    data_type: 'mscoco',
    data_subtype: 'val2014',
    questions: questions.map((q) => ({ image_id: q.image_id, question: q.question, question_id: q.question_id })),
    license: LICENSE,
  };
  const annotationsFile = { info: INFO, license: LICENSE, data_type: 'mscoco', data_subtype: 'val2014', annotations: questions.map((q) => q.annotation) };
  writeFileSync(files.questions, JSON.stringify(questionsFile) + '\n');
  writeFileSync(files.annotations, JSON.stringify(annotationsFile) + '\n');
  writeFileSync(files.llavaQuestions, questions.map((q) => JSON.stringify({ question_id: q.question_id, image: q.image, text: q.question + DEMO_PROMPT_SUFFIX, category: 'default' })).join('\n') + '\n');
  const kinds = Object.fromEntries(VARIANT_KINDS.map((k) => [k, questions.filter((q) => q.kind === k).length])) as Record<VariantKind, number>;
  const bench: DemoBenchmark = { dir: outDir, files, seed, world, questions, images: split.scenes.size, kinds };
  writeFileSync(
    files.meta,
    JSON.stringify(
      {
        format: 'llm2clip-demo-vqa-benchmark',
        version: 1,
        split: 'heldout',
        seed,
        world,
        questions: questions.length,
        images: bench.images,
        promptSuffix: DEMO_PROMPT_SUFFIX,
        kinds,
        ids: 'image_id = 1 + demo image index; question_id = 1000 * image_id + k',
        items: questions.map((q) => ({ question_id: q.question_id, demo_id: q.demo_id, type: q.type, kind: q.kind, answer: q.answer, ...(q.minority ? { minority: q.minority } : {}) })),
      },
      null,
      1,
    ) + '\n',
  );
  return bench;
}

// ---------------------------------------------------------------------------------------------------
// Answers, scoring, the end-to-end run

/** LLaVA answer records holding the benchmark's own canonical answers (a perfect model). */
export function groundTruthAnswers(bench: DemoBenchmark, pick: (q: DemoBenchQuestion) => string = (q) => q.answer): AnswerRecord[] {
  return bench.questions.map((q) => ({
    question_id: q.question_id,
    prompt: q.question + DEMO_PROMPT_SUFFIX,
    text: pick(q),
    answer_id: `gt-${q.question_id}`,
    model_id: 'ground-truth',
    metadata: {},
  }));
}

export function writeAnswerFile(file: string, records: readonly AnswerRecord[]): void {
  writeFileSync(file, records.map((a) => JSON.stringify(a)).join('\n') + '\n');
}

const demoManifestSchema = z
  .object({
    world: z
      .object({
        seed: z.number().int().nonnegative(),
        heldout: z.number().int().positive(),
        questionsPerImage: z.number().int().positive(),
        minObjects: z.number().int().positive(),
        maxObjects: z.number().int().positive(),
        types: z.array(z.enum(QUESTION_TYPES)).min(1),
      })
      .passthrough(),
    accuracy: z
      .object({
        final: z
          .object({
            stage: z.string().optional(),
            runtime: z.object({ questions: z.number().int().positive(), accuracy: z.number().min(0).max(1), correct: z.number().int().optional() }).passthrough().nullable().optional(),
          })
          .passthrough()
          .optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();
export type DemoManifest = z.infer<typeof demoManifestSchema>;

/** models/demo/manifest.json, or undefined when there is none; a malformed one is an error naming the problem. */
export function readDemoManifest(modelDir: string): DemoManifest | undefined {
  const file = join(modelDir, 'manifest.json');
  if (!existsSync(file)) return undefined;
  const r = demoManifestSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!r.success) throw new Error(`${file}: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
  return r.data;
}

export interface RecordedAccuracy {
  source: string;
  stage?: string;
  questions: number;
  /** percent */
  accuracy: number;
  world: DemoManifest['world'];
}

export function recordedAccuracy(manifest: DemoManifest | undefined, file = 'models/demo/manifest.json'): RecordedAccuracy | undefined {
  const rt = manifest?.accuracy?.final?.runtime;
  if (!manifest || !rt) return undefined;
  return {
    source: `${file} accuracy.final.runtime`,
    ...(manifest.accuracy?.final?.stage !== undefined ? { stage: manifest.accuracy.final.stage } : {}),
    questions: rt.questions,
    accuracy: pyRound(100 * rt.accuracy, 2),
    world: manifest.world,
  };
}

interface Tally {
  questions: number;
  correct: number;
  accuracy: number;
}

export interface DemoBenchReport {
  benchmark: { dir: string; questions: number; images: number; seed: number; world: DemoBenchmark['world']; kinds: Record<VariantKind, number>; promptSuffix: string };
  /** scoreTask('vqav2', …): vqaEval.py master, percent */
  official: Pick<VqaResult, 'normalize' | 'questions' | 'overall' | 'perAnswerType' | 'perQuestionType'>;
  /** the demo's own rule (src/demo/world.ts normalizeAnswer: trim, lower-case, trailing "." / "!" dropped) against the canonical answer */
  exactMatch: Tally & { byType: Record<string, Tally> };
  /** official = exact match − credit lost on exact matches + credit earned by mismatches */
  agreement: {
    creditLostOnExactMatches: { questions: number; credit: number };
    creditOnMismatches: { questions: number; credit: number };
    /** 100 × (correct − lost + earned) / N, which must equal official.overall */
    explainedOverall: number;
    holds: boolean;
  };
  /** per variant kind: questions, official accuracy and exact-match accuracy (percent) */
  byKind: Record<VariantKind, { questions: number; official: number; exactMatch: number }>;
  recorded:
    | (RecordedAccuracy & { sameQuestions: boolean; difference: number; consistent: boolean; note: string })
    | { note: string };
}

const pct = (x: number, n: number): number => (n === 0 ? 0 : pyRound((100 * x) / n, 2));

/**
 * Scores an answer file on the benchmark: the official VQA metrics through `scoreTask('vqav2', …)`, the
 * demo's exact-match accuracy on the same answers, the decomposition that links the two, and the
 * comparison with the recorded accuracy (`recorded`, from models/demo/manifest.json).
 */
export function demoBenchReport(bench: DemoBenchmark, answersFile: string, recorded?: RecordedAccuracy, opts: { partial?: boolean } = {}): DemoBenchReport {
  const official = scoreTask('vqav2', { answers: answersFile, annotations: bench.files.annotations, questions: bench.files.questions, ...(opts.partial ? { partial: true } : {}) }) as VqaResult;
  const byId = answersById(readAnswers(answersFile));
  let correct = 0;
  let lost = 0;
  let lostN = 0;
  let earned = 0;
  let earnedN = 0;
  let scored = 0;
  const byType: Record<string, Tally> = {};
  const kindSums = Object.fromEntries(VARIANT_KINDS.map((k) => [k, { questions: 0, official: 0, exact: 0 }])) as Record<VariantKind, { questions: number; official: number; exact: number }>;
  for (const q of bench.questions) {
    const a = byId.get(idKey(q.question_id));
    if (!a) continue;
    scored++;
    const acc = vqaQuestionAccuracy(q.annotation.answers, a.text);
    const ok = normalizeAnswer(a.text) === normalizeAnswer(q.answer);
    if (ok) {
      correct++;
      if (acc < 1) {
        lost += 1 - acc;
        lostN++;
      }
    } else if (acc > 0) {
      earned += acc;
      earnedN++;
    }
    const t = (byType[q.type] ??= { questions: 0, correct: 0, accuracy: 0 });
    t.questions++;
    if (ok) t.correct++;
    const k = kindSums[q.kind];
    k.questions++;
    k.official += acc;
    if (ok) k.exact++;
  }
  for (const t of Object.values(byType)) t.accuracy = pct(t.correct, t.questions);
  const explained = pct(correct - lost + earned, scored);
  const exactAcc = pct(correct, scored);
  let rec: DemoBenchReport['recorded'];
  if (!recorded) rec = { note: 'no recorded accuracy (models/demo/manifest.json is absent or has no accuracy.final.runtime)' };
  else {
    const w = recorded.world;
    const same =
      w.seed === bench.seed &&
      w.questionsPerImage === bench.world.questionsPerImage &&
      w.minObjects === bench.world.minObjects &&
      w.maxObjects === bench.world.maxObjects &&
      w.types.join(',') === bench.world.types.join(',') &&
      recorded.questions === scored &&
      scored === bench.questions.length;
    const difference = pyRound(exactAcc - recorded.accuracy, 2);
    // Same questions, same greedy decoding, same settings: the same answers; one question of slack.
    const consistent = same && Math.abs(difference) <= 100 / scored + 1e-9;
    rec = {
      ...recorded,
      sameQuestions: same,
      difference,
      consistent,
      note: same
        ? consistent
          ? 'exact-match accuracy of this run agrees with the recorded runtime accuracy on the same questions'
          : 'exact-match accuracy of this run DIFFERS from the recorded runtime accuracy on the same questions'
        : 'this run asked other questions than the recorded accuracy (other seed, count or world): compare only roughly',
    };
  }
  return {
    benchmark: { dir: bench.dir, questions: bench.questions.length, images: bench.images, seed: bench.seed, world: bench.world, kinds: bench.kinds, promptSuffix: DEMO_PROMPT_SUFFIX },
    official: {
      normalize: official.normalize,
      questions: official.questions,
      overall: official.overall,
      perAnswerType: official.perAnswerType,
      ...(official.perQuestionType ? { perQuestionType: official.perQuestionType } : {}),
    },
    exactMatch: { questions: scored, correct, accuracy: exactAcc, byType },
    agreement: {
      creditLostOnExactMatches: { questions: lostN, credit: pyRound(lost, 4) },
      creditOnMismatches: { questions: earnedN, credit: pyRound(earned, 4) },
      explainedOverall: explained,
      holds: explained === official.overall,
    },
    byKind: Object.fromEntries(VARIANT_KINDS.map((k) => [k, { questions: kindSums[k].questions, official: pct(kindSums[k].official, kindSums[k].questions), exactMatch: pct(kindSums[k].exact, kindSums[k].questions) }])) as DemoBenchReport['byKind'],
    recorded: rec,
  };
}

export interface DemoRunOptions {
  bench: DemoBenchmark;
  model: DemoModelPaths;
  /** answer file (default <bench dir>/answers.jsonl); replaced, not resumed */
  out?: string;
  /** llama.cpp threads (default 2) */
  threads?: number;
  /** default 8, as src/demo/evaluate.ts */
  maxTokens?: number;
  limit?: number;
  recorded?: RecordedAccuracy;
  progress?: 'auto' | false;
  log?: (msg: string) => void;
  modelId?: string;
}

/**
 * Asks the benchmark's LLaVA questions with `runEval` and the local pipeline, configured as the demo
 * model's recorded evaluation (src/demo/evaluate.ts loadDemoModel): CPU, greedy, one sequence, llama.cpp
 * maxThreads 2 on one node-llama-cpp instance, a one-thread tower session, a 256-token context, 8 new
 * tokens. Then scores the answers (`demoBenchReport`).
 */
export async function runDemoBenchmark(o: DemoRunOptions): Promise<{ run: RunSummary; report: DemoBenchReport }> {
  const out = o.out ?? join(o.bench.dir, 'answers.jsonl');
  rmSync(out, { force: true });
  const run = await runEval({
    questions: o.bench.files.llavaQuestions,
    images: o.bench.files.images,
    out,
    backend: { kind: 'local', ...o.model, gpu: false, threads: o.threads ?? 2, towerThreads: 1, contextSize: 256, modelId: o.modelId ?? 'llm2clip-demo' },
    promptSuffix: DEMO_PROMPT_SUFFIX,
    concurrency: 1,
    maxTokens: o.maxTokens ?? 8,
    temperature: 0,
    retries: 0,
    ...(o.limit !== undefined ? { limit: o.limit } : {}),
    progress: o.progress ?? 'auto',
    ...(o.log ? { log: o.log } : {}),
  });
  const partial = run.failed > 0 || run.questions < o.bench.questions.length;
  return { run, report: demoBenchReport(o.bench, out, o.recorded, { partial }) };
}
