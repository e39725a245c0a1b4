/**
 * POPE as LLaVA scores it (llava/eval/eval_pope.py). Per category (the coco_pope_<category>.json files
 * of the annotation directory):
 *   answer → keep the text before the first "." (if any), delete ",", split on single spaces; "no" if one
 *   of the words is exactly "No", "not" or "no", else "yes" (so "NO" or "no\n..." count as yes);
 *   label "no" → negative, anything else → positive;
 *   acc = (TP+TN)/N, precision = TP/(TP+FP), recall = TP/(TP+FN), f1 = 2PR/(P+R),
 *   yes_ratio = share of PREDICTED yes (lmms-eval counts ground-truth yes instead).
 * All rates in percent; a rate whose denominator is 0 (Python would raise) is null.
 *
 * Alignment: eval_pope.py zips the category's answers in answer-file order with the annotation file's
 * lines, which is only right when the answer file is complete and in question-file order. Answers of a
 * concurrent run are written in completion order, so here the k-th question of a category in the
 * question file is paired with the k-th annotation line of that category, and answers are found by
 * question_id — the same pairing LLaVA's gets on an in-order run. The paired lines' images must agree.
 * `average` (not in eval_pope.py) is the unweighted mean over the categories present.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

import { z } from 'zod';

import { answersById, EvalInputError, idKey, parseWith, readJsonl, type AnswerRecord, type Question } from '../files.js';
import { py3Round } from '../py.js';

const popeLabelSchema = z.object({ label: z.string(), image: z.string().optional() }).passthrough();

/** eval_pope.py's yes/no rule. */
export function popeAnswerIsYes(text: string): boolean {
  let t = text;
  if (t.includes('.')) t = t.split('.')[0]!;
  const words = t.split(',').join('').split(' ');
  return !(words.includes('No') || words.includes('not') || words.includes('no'));
}

export interface PopeMetrics {
  samples: number;
  TP: number;
  FP: number;
  TN: number;
  FN: number;
  acc: number | null;
  precision: number | null;
  recall: number | null;
  f1: number | null;
  yes_ratio: number | null;
}

type Rates = { acc: number | null; precision: number | null; recall: number | null; f1: number | null; yes_ratio: number | null };

function popeCounts(pairs: readonly { predYes: boolean; labelYes: boolean }[]): { counts: Omit<PopeMetrics, keyof Rates>; rates: Rates } {
  let TP = 0;
  let FP = 0;
  let TN = 0;
  let FN = 0;
  for (const { predYes, labelYes } of pairs) {
    if (predYes && labelYes) TP++;
    else if (predYes) FP++;
    else if (!labelYes) TN++;
    else FN++;
  }
  const div = (a: number, b: number): number | null => (b === 0 ? null : a / b);
  const precision = div(TP, TP + FP);
  const recall = div(TP, TP + FN);
  const f1 = precision === null || recall === null ? null : div(2 * precision * recall, precision + recall);
  return {
    counts: { samples: pairs.length, TP, FP, TN, FN },
    rates: { acc: div(TP + TN, TP + TN + FP + FN), precision, recall, f1, yes_ratio: div(TP + FP, pairs.length) },
  };
}

const pctRates = (r: Rates): Rates => {
  const pct = (x: number | null) => (x === null ? null : py3Round(x * 100, 2));
  return { acc: pct(r.acc), precision: pct(r.precision), recall: pct(r.recall), f1: pct(r.f1), yes_ratio: pct(r.yes_ratio) };
};

/** Counts and rates (percent) of one category's (prediction, label) pairs. */
export function popeMetrics(pairs: readonly { predYes: boolean; labelYes: boolean }[]): PopeMetrics {
  const { counts, rates } = popeCounts(pairs);
  return { ...counts, ...pctRates(rates) };
}

export interface PopeResult {
  categories: Record<string, PopeMetrics>;
  average: Rates;
  /** questions of a scored category without an answer (only with partial) */
  missing?: number;
}

export function scorePope(annotationsDir: string, questions: readonly Question[], answers: readonly AnswerRecord[], opts: { partial?: boolean } = {}): PopeResult {
  let files: string[];
  try {
    files = readdirSync(annotationsDir).filter((f) => f.startsWith('coco_pope_') && f.endsWith('.json')).sort();
  } catch (e) {
    throw new EvalInputError(`--annotations-dir ${annotationsDir}: cannot list it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (files.length === 0) throw new EvalInputError(`--annotations-dir ${annotationsDir}: no coco_pope_<category>.json files`);
  const byId = answersById(answers);
  const categories: Record<string, PopeMetrics> = {};
  const raw: Rates[] = [];
  let missing = 0;
  for (const f of files) {
    const category = f.slice('coco_pope_'.length, -'.json'.length);
    const labels = readJsonl(join(annotationsDir, f), 'POPE annotations').lines.map(({ line, value }) =>
      parseWith(popeLabelSchema, value, `POPE annotations ${join(annotationsDir, f)} line ${line}`),
    );
    const qs = questions.filter((q) => q.category === category);
    if (qs.length === 0) continue;
    if (qs.length !== labels.length) {
      throw new EvalInputError(`category ${category}: the question file has ${qs.length} questions but ${f} has ${labels.length} labels`);
    }
    const pairs: { predYes: boolean; labelYes: boolean }[] = [];
    qs.forEach((q, k) => {
      const lab = labels[k]!;
      if (lab.image !== undefined && q.image !== undefined && lab.image !== q.image) {
        throw new EvalInputError(
          `category ${category}: question ${k + 1} of the question file (${JSON.stringify(q.question_id)}, ${q.image}) and line ${k + 1} of ${f} (${lab.image}) are not about the same image; the files do not line up`,
        );
      }
      const a = byId.get(idKey(q.question_id));
      if (!a) {
        missing++;
        return;
      }
      pairs.push({ predYes: popeAnswerIsYes(a.text), labelYes: lab.label !== 'no' });
    });
    if (missing > 0 && !opts.partial) {
      throw new EvalInputError(`category ${category}: ${missing} question(s) have no answer; finish the run or use --partial`);
    }
    if (pairs.length > 0) {
      const { counts, rates } = popeCounts(pairs);
      categories[category] = { ...counts, ...pctRates(rates) };
      raw.push(rates);
    }
  }
  if (raw.length === 0) throw new EvalInputError('no POPE answers to score (do the questions carry a category matching coco_pope_<category>.json?)');
  const mean = (k: keyof Rates): number | null => {
    const v = raw.map((c) => c[k]);
    return v.some((x) => x === null) ? null : (v as number[]).reduce((s, x) => s + x, 0) / v.length;
  };
  return {
    categories,
    average: pctRates({ acc: mean('acc'), precision: mean('precision'), recall: mean('recall'), f1: mean('f1'), yes_ratio: mean('yes_ratio') }),
    ...(opts.partial ? { missing } : {}),
  };
}
