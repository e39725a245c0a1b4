/**
 * `eval score`: one entry point per benchmark, reading the benchmarks' own files (the contract scripts
 * rely on) and an answer file, returning the metrics under the official scripts' names, rates in percent.
 * `scoreTask` is also the hook for end-to-end runs (e.g. a demo benchmark): run, then score.
 */
import { z } from 'zod';

import { answersById, EvalInputError, idKey, parseWith, readAnswers, readJson, readQuestions, type AnswerRecord } from './files.js';
import { scoreGqa, type GqaResult } from './tasks/gqa.js';
import { readMmeGroundTruth, scoreMme, type MmeResult } from './tasks/mme.js';
import { scorePope, type PopeResult } from './tasks/pope.js';
import { scoreScienceQa, type SqaResult } from './tasks/scienceqa.js';
import { scoreTextVqa, type TextVqaResult } from './tasks/textvqa.js';
import { vqaScores, type LeaveOneOut, type NormalizeMode, type VqaItem } from './vqa.js';

export const TASKS = ['vqav2', 'vizwiz', 'textvqa', 'gqa', 'pope', 'scienceqa', 'mme'] as const;
export type TaskName = (typeof TASKS)[number];

/** The files each task reads, as named by the CLI flags. */
export interface TaskFiles {
  answers: string;
  /** vqav2/vizwiz: VQA annotation JSON (or VizWiz's list); textvqa: TextVQA_0.5.1_val.json */
  annotations?: string;
  /** pope: dir of coco_pope_<category>.json; mme: MME_Benchmark_release_version */
  annotationsDir?: string;
  /** vqav2: the VQA questions JSON; vizwiz with VizWiz annotations / pope: the LLaVA question file; gqa: testdev_balanced_questions.json */
  questions?: string;
  problems?: string;
  splits?: string;
  split?: string;
  normalize?: NormalizeMode;
  /** score what has been answered instead of refusing incomplete answer files */
  partial?: boolean;
}

export interface VqaResult {
  normalize: NormalizeMode;
  /** how the 10 leave-one-out subsets are formed: 'record' (vqaEval.py) or 'index' (VizWiz annotations) */
  leave_one_out: LeaveOneOut;
  questions: number;
  overall: number;
  perQuestionType?: Record<string, number>;
  perAnswerType: Record<string, number>;
  /** annotated questions without an answer / answers for unknown questions (only with partial) */
  missing?: number;
  extra?: number;
}

export type TaskResult = VqaResult | TextVqaResult | GqaResult | PopeResult | SqaResult | MmeResult;

const gtAnswersSchema = z.array(z.object({ answer: z.string() }).passthrough()).min(1);
/** What the vqav2 scorer requires of a VQA annotation file (the official file carries more; passthrough). */
export const vqaAnnotationsSchema = z
  .object({
    annotations: z.array(
      z
        .object({
          question_id: z.union([z.number(), z.string()]),
          question_type: z.string().optional(),
          answer_type: z.string(),
          answers: gtAnswersSchema,
        })
        .passthrough(),
    ),
  })
  .passthrough();
const vizwizAnnotationsSchema = z.array(
  z.object({ image: z.string(), answers: gtAnswersSchema, answer_type: z.string() }).passthrough(),
);
/** What the vqav2 scorer requires of a VQA questions file. */
export const vqaQuestionsFileSchema = z.object({ questions: z.array(z.object({ question_id: z.union([z.number(), z.string()]) }).passthrough()) }).passthrough();

function need(files: TaskFiles, key: keyof TaskFiles, task: TaskName, flag: string): string {
  const v = files[key];
  if (typeof v !== 'string' || v === '') throw new EvalInputError(`--task ${task} needs --${flag}`);
  return v;
}

const sample = (ids: string[]): string => ids.slice(0, 3).map((s) => JSON.stringify(s)).join(', ') + (ids.length > 3 ? ', ...' : '');

/**
 * VQAv2 / VizWiz: VQA-format annotations ({annotations: [{question_id, question_type, answer_type,
 * answers}]}) are matched to answers by question_id; VizWiz's own list ([{image, answers, answer_type}])
 * by image, through the LLaVA question file (--questions) that maps question_id → image. Like the
 * official loadRes, the answered ids must be exactly the annotated ones unless `partial`.
 */
export function scoreVqa(task: 'vqav2' | 'vizwiz', files: TaskFiles, answers: readonly AnswerRecord[]): VqaResult {
  const annFile = need(files, 'annotations', task, 'annotations');
  const raw = readJson(annFile, 'annotations');
  const mode = files.normalize ?? 'official';
  const gts: { id: string; answers: VqaItem['answers']; answerType: string; questionType?: string }[] = [];
  const predictions = new Map<string, string>();
  let leaveOneOut: LeaveOneOut | undefined;
  let unknownIds = 0;
  if (Array.isArray(raw)) {
    leaveOneOut = 'index'; // VizWiz answer records carry no id (see vqa.ts)
    const ann = parseWith(vizwizAnnotationsSchema, raw, `VizWiz annotations ${annFile}`);
    for (const a of ann) gts.push({ id: a.image, answers: a.answers, answerType: a.answer_type });
    const qFile = files.questions;
    if (!qFile) throw new EvalInputError(`VizWiz annotations are keyed by image: give the LLaVA question file with --questions to map question_id → image`);
    const imageOf = new Map(readQuestions(qFile).map((q) => [idKey(q.question_id), q.image]));
    for (const a of answers) {
      const image = imageOf.get(idKey(a.question_id));
      if (image === undefined) {
        if (files.partial) {
          unknownIds++;
          continue;
        }
        throw new EvalInputError(`answer ${JSON.stringify(a.question_id)} is not a question of ${qFile} (or has no image)`);
      }
      predictions.set(image, a.text);
    }
  } else {
    const ann = parseWith(vqaAnnotationsSchema, raw, `VQA annotations ${annFile}`);
    for (const a of ann.annotations) {
      gts.push({ id: idKey(a.question_id), answers: a.answers, answerType: a.answer_type, ...(a.question_type !== undefined ? { questionType: a.question_type } : {}) });
    }
    // The VQA questions file is part of the official tool's inputs; it carries nothing the accuracy uses.
    if (files.questions) parseWith(vqaQuestionsFileSchema, readJson(files.questions, 'VQA questions'), `VQA questions ${files.questions}`);
    for (const [id, a] of answersById(answers)) predictions.set(id, a.text);
  }
  const annotated = new Set(gts.map((g) => g.id));
  const missing = gts.filter((g) => !predictions.has(g.id)).map((g) => g.id);
  const extra = [...predictions.keys()].filter((id) => !annotated.has(id));
  if (!files.partial && (missing.length > 0 || extra.length > 0)) {
    throw new EvalInputError(
      'the answers do not correspond to the annotated questions' +
        (missing.length ? `: ${missing.length} annotated question(s) have no answer (${sample(missing)})` : '') +
        (extra.length ? `${missing.length ? ';' : ':'} ${extra.length} answer(s) are for questions not in the annotations (${sample(extra)})` : '') +
        ' — the official evaluation refuses this; use --partial to score the answered questions',
    );
  }
  const items: VqaItem[] = gts.filter((g) => predictions.has(g.id)).map((g) => ({ ...g, prediction: predictions.get(g.id)! }));
  if (items.length === 0) throw new EvalInputError('no annotated question has an answer');
  const s = vqaScores(items, mode, leaveOneOut);
  return {
    normalize: mode,
    leave_one_out: leaveOneOut ?? (mode === 'vizwiz' ? 'index' : 'record'),
    questions: items.length,
    overall: s.overall,
    ...(s.perQuestionType ? { perQuestionType: s.perQuestionType } : {}),
    perAnswerType: s.perAnswerType,
    ...(files.partial ? { missing: missing.length, extra: extra.length + unknownIds } : {}),
  };
}

/** Scores an answer file for one benchmark. `warn` receives non-fatal notes (a torn last line). */
export function scoreTask(task: TaskName, files: TaskFiles, warn: (msg: string) => void = () => undefined): TaskResult {
  const answers = readAnswers(files.answers, warn);
  if (answers.length === 0) throw new EvalInputError(`answer file ${files.answers}: no answers`);
  const partial = files.partial ?? false;
  switch (task) {
    case 'vqav2':
    case 'vizwiz':
      return scoreVqa(task, files, answers);
    case 'textvqa': {
      const f = need(files, 'annotations', task, 'annotations');
      return scoreTextVqa(readJson(f, 'TextVQA annotations'), answers, { partial, file: f });
    }
    case 'gqa': {
      const f = need(files, 'questions', task, 'questions');
      return scoreGqa(readJson(f, 'GQA questions'), answers, { partial, file: f });
    }
    case 'pope':
      return scorePope(need(files, 'annotationsDir', task, 'annotations-dir'), readQuestions(need(files, 'questions', task, 'questions')), answers, { partial });
    case 'scienceqa':
      return scoreScienceQa(
        readJson(need(files, 'problems', task, 'problems'), 'ScienceQA problems'),
        readJson(need(files, 'splits', task, 'splits'), 'ScienceQA pid_splits'),
        answers,
        { partial, ...(files.split ? { split: files.split } : {}) },
      );
    case 'mme':
      return scoreMme(readMmeGroundTruth(need(files, 'annotationsDir', task, 'annotations-dir')), answers, { partial });
  }
}
