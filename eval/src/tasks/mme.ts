/**
 * MME as LLaVA scores it: convert_answer_to_mme.py looks each answer up in the benchmark's ground truth
 * (MME_Benchmark_release_version/<category>/[questions_answers_YN/]<image>.txt, lines "question\tanswer")
 * under (category = question_id up to the first "/", file = last path part up to its first "." + ".txt",
 * question = the prompt without "Answer the question using a single word or phrase.", stripped, ending in
 * " Please answer yes or no." — or the two-space variant when only that exists); then the official
 * eval_tool/calculation.py: prediction lower-cased → "yes"/"no" if exactly that, else "yes" if the first
 * 4 characters contain "yes", else "no" if they contain "no", else "other" (always wrong);
 * per subtask acc = correct / questions, acc_plus = images with both questions right / images,
 * score = 100·acc + 100·acc_plus; Perception = sum of its 10 subtasks, Cognition of its 4.
 *
 * calculation.py pairs consecutive lines of each subtask file as one image; here the two questions of an
 * image are grouped by (category, file), which is the same on LLaVA's in-order runs and right on
 * out-of-order (concurrent) ones. Subtasks with no answers are listed in missing_tasks (calculation.py
 * would stop); totals are over the subtasks present.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { EvalInputError, type AnswerRecord } from '../files.js';
import { pyPrefix, py3Round, pyStrip } from '../py.js';

export const MME_EVAL_TYPES = {
  Perception: ['existence', 'count', 'position', 'color', 'posters', 'celebrity', 'scene', 'landmark', 'artwork', 'OCR'],
  Cognition: ['commonsense_reasoning', 'numerical_calculation', 'text_translation', 'code_reasoning'],
} as const;

const SUFFIX_SHORT = 'Answer the question using a single word or phrase.';
const SUFFIX_YN = 'Please answer yes or no.';

/** calculation.py parse_pred_ans on the lower-cased prediction. */
export function mmeParse(pred: string): 'yes' | 'no' | 'other' {
  const p = pred.toLowerCase();
  if (p === 'yes' || p === 'no') return p;
  const prefix = pyPrefix(p, 4);
  if (prefix.includes('yes')) return 'yes';
  if (prefix.includes('no')) return 'no';
  return 'other';
}

/** convert_answer_to_mme.get_gt: (category, file, question) → answer. */
export function readMmeGroundTruth(dir: string): Map<string, string> {
  const gt = new Map<string, string>();
  let categories: string[];
  try {
    categories = readdirSync(dir);
  } catch (e) {
    throw new EvalInputError(`--annotations-dir ${dir}: cannot list it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  for (const category of categories) {
    const cdir = join(dir, category);
    if (!statSync(cdir).isDirectory()) continue;
    const qaDir = existsSync(join(cdir, 'images')) ? join(cdir, 'questions_answers_YN') : cdir;
    if (!existsSync(qaDir)) throw new EvalInputError(`MME ${cdir}: has images/ but no questions_answers_YN/`);
    for (const f of readdirSync(qaDir)) {
      if (!f.endsWith('.txt')) continue;
      const lines = readFileSync(join(qaDir, f), 'utf8').split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      lines.forEach((line, i) => {
        const parts = pyStrip(line).split('\t');
        if (parts.length !== 2) throw new EvalInputError(`MME ${join(qaDir, f)} line ${i + 1}: expected "question<TAB>answer"`);
        gt.set(`${category}\u0000${f}\u0000${parts[0]}`, parts[1]!);
      });
    }
  }
  if (gt.size === 0) throw new EvalInputError(`--annotations-dir ${dir}: no MME ground truth found (expected <category>/*.txt or <category>/questions_answers_YN/*.txt)`);
  return gt;
}

export interface MmeTask {
  images: number;
  questions: number;
  acc: number;
  acc_plus: number;
  score: number;
  /** predictions that were neither yes nor no */
  other: number;
}

export interface MmeResult {
  Perception: { total: number; tasks: Record<string, MmeTask> };
  Cognition: { total: number; tasks: Record<string, MmeTask> };
  missing_tasks: string[];
  /** answers with no ground truth, or images with fewer than two answers (only with partial) */
  skipped?: number;
}

export function scoreMme(groundTruth: ReadonlyMap<string, string>, answers: readonly AnswerRecord[], opts: { partial?: boolean } = {}): MmeResult {
  // category → image file → the image's (gt, pred) pairs
  const byTask = new Map<string, Map<string, { gt: string; pred: string }[]>>();
  let skipped = 0;
  for (const a of answers) {
    const qid = String(a.question_id);
    const category = qid.split('/')[0]!;
    const file = `${qid.split('/').pop()!.split('.')[0]}.txt`;
    let prompt = a.prompt;
    if (prompt.includes(SUFFIX_SHORT)) prompt = pyStrip(prompt.split(SUFFIX_SHORT).join(''));
    if (!prompt.includes(SUFFIX_YN)) {
      prompt = `${prompt} ${SUFFIX_YN}`;
      if (!groundTruth.has(`${category}\u0000${file}\u0000${prompt}`)) prompt = prompt.replace(` ${SUFFIX_YN}`, `  ${SUFFIX_YN}`);
    }
    const gt = groundTruth.get(`${category}\u0000${file}\u0000${prompt}`);
    if (gt === undefined) {
      if (opts.partial) {
        skipped++;
        continue;
      }
      throw new EvalInputError(`answer ${JSON.stringify(a.question_id)}: no MME ground truth for category ${category}, ${file}, question ${JSON.stringify(prompt)}`);
    }
    const images = byTask.get(category) ?? byTask.set(category, new Map()).get(category)!;
    (images.get(file) ?? images.set(file, []).get(file)!).push({ gt: gt.toLowerCase(), pred: a.text });
  }
  const result: MmeResult = { Perception: { total: 0, tasks: {} }, Cognition: { total: 0, tasks: {} }, missing_tasks: [] };
  for (const evalType of ['Perception', 'Cognition'] as const) {
    let total = 0;
    for (const task of MME_EVAL_TYPES[evalType]) {
      const images = byTask.get(task);
      if (!images) {
        result.missing_tasks.push(task);
        continue;
      }
      let questions = 0;
      let correct = 0;
      let plus = 0;
      let imgs = 0;
      let other = 0;
      for (const [file, items] of images) {
        if (items.length !== 2) {
          if (opts.partial) {
            skipped += items.length;
            continue;
          }
          throw new EvalInputError(`MME ${task}/${file}: ${items.length} answer(s); every image has exactly two questions`);
        }
        imgs++;
        let right = 0;
        for (const { gt, pred } of items) {
          if (gt !== 'yes' && gt !== 'no') throw new EvalInputError(`MME ${task}/${file}: ground truth ${JSON.stringify(gt)} is neither yes nor no`);
          const p = mmeParse(pred);
          if (p === 'other') other++;
          questions++;
          if (p === gt) {
            correct++;
            right++;
          }
        }
        if (right === 2) plus++;
      }
      if (imgs === 0) {
        result.missing_tasks.push(task);
        continue;
      }
      const acc = correct / questions;
      const accPlus = plus / imgs;
      const score = 0 + acc * 100 + accPlus * 100;
      total += score;
      result[evalType].tasks[task] = { images: imgs, questions, acc: py3Round(acc * 100, 2), acc_plus: py3Round(accPlus * 100, 2), score: py3Round(score, 2), other };
    }
    result[evalType].total = py3Round(total, 2);
  }
  if (opts.partial) result.skipped = skipped;
  if (byTask.size === 0) throw new EvalInputError('no MME answers to score');
  return result;
}
