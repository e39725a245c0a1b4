/**
 * The official VQA accuracy (GT-Vision-Lab/VQA vqaEval.py, master a013f00; anchors.md §4.4), and
 * lmms-eval's always-normalise variant behind an explicit mode.
 *
 * Per question (mode 'official'):
 *   1. newline/tab → space and strip, for the prediction and every GT answer;
 *   2. only when the GT answers (after step 1) are not all identical, processPunctuation +
 *      processDigitArticle on every GT answer AND on the prediction — with ten identical GT answers the
 *      prediction must match them exactly ("Yes" against ten "yes" scores 0);
 *   3. for each GT answer i, acc_i = min(1, #{other GT answers equal to the prediction} / 3), where
 *      "other" means every answer record not equal to record i as a whole (Python dict !=): records that
 *      are identical in every field (no answer_id, same confidence) all drop out together;
 *   4. the question's accuracy is the mean of the acc_i.
 * overall / perQuestionType / perAnswerType = round(100 * sum / count, 2) with Python 2's round.
 *
 * Mode 'always' (lmms-eval vqav2_process_results, also what LLaVA uploads): the prediction always goes
 * through LLaVA's EvalAIAnswerProcessor first; then the same steps with EvalAI's punctuation/digit
 * functions in step 2.
 *
 * Mode 'vizwiz' (the VizWiz challenge's own evaluation code): the prediction is always cleaned and
 * normalised (step 1 + processPunctuation + processDigitArticle), the GT answers never are, and the
 * leave-one-out is by position.
 *
 * Leave-one-out 'record' (step 3 as written) equals 'index' whenever answer records differ, as in
 * VQAv2's files (answer_id 1–10). VizWiz's answer records have no id, so ten identical
 * {answer, answer_confidence} records would all drop out together and a correct answer would score 0;
 * VizWiz-format annotations are therefore scored with 'index' (what VizWiz's own code does).
 */
import { evalAiAnswerProcessor, evalAiProcessDigitArticle, evalAiProcessPunctuation, vqaNormalize } from './normalize.js';
import { py2Strip, pyRound, pyStrip, pySum } from './py.js';

export type NormalizeMode = 'official' | 'always' | 'vizwiz';
export const NORMALIZE_MODES: readonly NormalizeMode[] = ['official', 'always', 'vizwiz'];
export type LeaveOneOut = 'record' | 'index';

export interface VqaGtAnswer {
  answer: string;
  [field: string]: unknown;
}

/** Python `==` on JSON values (dicts by keys and values, lists in order; True == 1, 1 == 1.0). */
export function pyJsonEqual(a: unknown, b: unknown): boolean {
  const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : typeof v === 'boolean' ? Number(v) : undefined);
  const na = num(a);
  const nb = num(b);
  if (na !== undefined || nb !== undefined) return na !== undefined && nb !== undefined && na === nb;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => pyJsonEqual(x, b[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  const ob = b as Record<string, unknown>;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(ob, k) && pyJsonEqual((a as Record<string, unknown>)[k], ob[k]));
}

/** vqaEval.py's `replace('\n', ' ').replace('\t', ' ').strip()` (Python 2 unicode strip in official mode). */
const cleanWs = (s: string, strip: (x: string) => string = pyStrip): string => strip(s.split('\n').join(' ').split('\t').join(' '));

/** One question's accuracy in [0, 1]. */
export function vqaQuestionAccuracy(
  gtAnswers: readonly VqaGtAnswer[],
  prediction: string,
  mode: NormalizeMode = 'official',
  leaveOneOut: LeaveOneOut = mode === 'vizwiz' ? 'index' : 'record',
): number {
  if (gtAnswers.length === 0) throw new Error('a VQA question needs at least one ground-truth answer');
  let res: string;
  let gts: VqaGtAnswer[];
  if (mode === 'vizwiz') {
    res = vqaNormalize(cleanWs(prediction));
    gts = gtAnswers.map((a) => ({ ...a }));
  } else {
    const strip = mode === 'official' ? py2Strip : pyStrip;
    res = mode === 'always' ? evalAiAnswerProcessor(prediction) : cleanWs(prediction, strip);
    gts = gtAnswers.map((a) => ({ ...a, answer: cleanWs(a.answer, strip) }));
    if (new Set(gts.map((a) => a.answer)).size > 1) {
      const norm = mode === 'always' ? (t: string) => evalAiProcessDigitArticle(evalAiProcessPunctuation(t)) : vqaNormalize;
      gts = gts.map((a) => ({ ...a, answer: norm(a.answer) }));
      res = norm(res);
    }
  }
  const accs = gts.map((gt, i) => {
    const others = leaveOneOut === 'index' ? gts.filter((_, j) => j !== i) : gts.filter((item) => !pyJsonEqual(item, gt));
    return Math.min(1, others.filter((item) => item.answer === res).length / 3);
  });
  return pySum(accs) / accs.length;
}

export interface VqaItem {
  /** the annotation's question id (or, for VizWiz-format annotations, its image name) */
  id: string;
  answers: readonly VqaGtAnswer[];
  answerType: string;
  /** absent for VizWiz, whose annotations have no question types */
  questionType?: string;
  prediction: string;
}

export interface VqaScores {
  overall: number;
  perQuestionType?: Record<string, number>;
  perAnswerType: Record<string, number>;
  /** per-question accuracy in percent, rounded like the official evalQA */
  evalQA: Record<string, number>;
}

/** vqaEval.evaluate + setAccuracy over items in the given order (the annotation file's order). */
export function vqaScores(items: readonly VqaItem[], mode: NormalizeMode = 'official', leaveOneOut?: LeaveOneOut): VqaScores {
  if (items.length === 0) throw new Error('no questions to score');
  const all: number[] = [];
  const byQ = new Map<string, number[]>();
  const byA = new Map<string, number[]>();
  const evalQA: Record<string, number> = {};
  const push = (m: Map<string, number[]>, k: string, v: number) => {
    const l = m.get(k);
    if (l) l.push(v);
    else m.set(k, [v]);
  };
  for (const it of items) {
    const acc = vqaQuestionAccuracy(it.answers, it.prediction, mode, leaveOneOut);
    all.push(acc);
    if (it.questionType !== undefined) push(byQ, it.questionType, acc);
    push(byA, it.answerType, acc);
    evalQA[it.id] = pyRound(100 * acc, 2);
  }
  const pct = (l: number[]) => pyRound((100 * pySum(l)) / l.length, 2);
  const table = (m: Map<string, number[]>) => Object.fromEntries([...m].map(([k, l]) => [k, pct(l)]));
  return {
    overall: pct(all),
    ...(byQ.size > 0 ? { perQuestionType: table(byQ) } : {}),
    perAnswerType: table(byA),
    evalQA,
  };
}
