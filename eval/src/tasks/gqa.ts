/**
 * GQA as LLaVA scores it: scripts/convert_gqa_for_eval.py turns each answer into
 * `text.rstrip('.').lower()`, then the official GQA eval.py (testdev_balanced) compares it to the gold
 * answer by exact match over the balanced questions. Reported here: accuracy, binary / open (open =
 * structural type "query"), distribution (chi-square of predicted vs gold answer counts per global group,
 * / 100, lower is better) and the per structural type / semantic type / steps / words breakdowns, in
 * percent. Consistency, validity, plausibility and grounding need files LLaVA does not use and are not
 * computed. The official script refuses to score when a balanced question has no prediction.
 */
import { z } from 'zod';

import { EvalInputError, idKey, parseWith, type AnswerRecord } from '../files.js';
import { py3Round, pyRstrip, pySplit, pySum } from '../py.js';

const gqaQuestionSchema = z
  .object({
    question: z.string(),
    answer: z.string(),
    isBalanced: z.boolean(),
    types: z.object({ structural: z.string(), semantic: z.string() }).passthrough(),
    semantic: z.array(z.object({ operation: z.string(), argument: z.string() }).passthrough()).default([]),
    groups: z.object({ global: z.string().nullable().optional() }).passthrough().default({}),
  })
  .passthrough();
export const gqaQuestionsSchema = z.record(z.string(), gqaQuestionSchema);

/** convert_gqa_for_eval.py's rule. */
export const gqaPrediction = (text: string): string => pyRstrip(text, '.').toLowerCase();

const stepsNum = (q: z.infer<typeof gqaQuestionSchema>): number =>
  q.semantic.filter((c) => !['exist', 'query: name', 'choose name'].some((o) => `${c.operation}: ${c.argument}`.includes(o))).length;

export interface GqaBreakdown {
  [type: string]: { accuracy: number; questions: number };
}

export interface GqaResult {
  questions: number;
  accuracy: number;
  binary: number;
  open: number;
  /** chi-square / 100, unrounded (the official script prints it with 2 decimals) */
  distribution: number | null;
  accuracyPerStructuralType: GqaBreakdown;
  accuracyPerSemanticType: GqaBreakdown;
  accuracyPerSteps: GqaBreakdown;
  accuracyPerLength: GqaBreakdown;
  /** balanced questions without an answer (only with partial) */
  missing?: number;
}

function chiSquare(gold: Map<string, Map<string, number>>, predicted: Map<string, Map<string, number>>): number | null {
  let sumScore = 0;
  let sumOverall = 0;
  for (const [group, answers] of gold) {
    let score = 0;
    let overall = 0;
    for (const [ans, e] of answers) {
      const o = predicted.get(group)?.get(ans) ?? 0;
      score += (o - e) ** 2 / e;
      overall += e;
    }
    sumScore += score * overall;
    sumOverall += overall;
  }
  return sumOverall === 0 ? null : sumScore / sumOverall;
}

export function scoreGqa(questionsJson: unknown, answers: readonly AnswerRecord[], opts: { partial?: boolean; file?: string } = {}): GqaResult {
  const questions = parseWith(gqaQuestionsSchema, questionsJson, `GQA questions ${opts.file ?? ''}`.trim());
  const predictions = new Map<string, string>();
  for (const a of answers) predictions.set(idKey(a.question_id), gqaPrediction(a.text));

  const missing = Object.entries(questions).filter(([qid, q]) => q.isBalanced && !predictions.has(qid));
  if (missing.length > 0 && !opts.partial) {
    throw new EvalInputError(
      `no prediction for ${missing.length} balanced question(s) (e.g. ${missing.slice(0, 3).map(([id]) => id).join(', ')}); ` +
        'the official GQA eval.py refuses to score then; use --partial to score the answered ones',
    );
  }
  const scores = { accuracy: [] as number[], binary: [] as number[], open: [] as number[] };
  const per = {
    accuracyPerStructuralType: new Map<string, number[]>(),
    accuracyPerSemanticType: new Map<string, number[]>(),
    accuracyPerSteps: new Map<string, number[]>(),
    accuracyPerLength: new Map<string, number[]>(),
  };
  const dist = { gold: new Map<string, Map<string, number>>(), predicted: new Map<string, Map<string, number>>() };
  const add = (m: Map<string, number[]>, k: string, v: number) => (m.get(k) ?? m.set(k, []).get(k)!).push(v);
  const count = (m: Map<string, Map<string, number>>, g: string, a: string) => {
    const inner = m.get(g) ?? m.set(g, new Map()).get(g)!;
    inner.set(a, (inner.get(a) ?? 0) + 1);
  };
  for (const [qid, q] of Object.entries(questions)) {
    if (!q.isBalanced) continue;
    const predicted = predictions.get(qid);
    if (predicted === undefined) continue; // partial
    const score = predicted === q.answer ? 1 : 0;
    scores.accuracy.push(score);
    add(per.accuracyPerLength, String(pySplit(q.question).length), score);
    add(per.accuracyPerSteps, String(stepsNum(q)), score);
    add(per.accuracyPerStructuralType, q.types.structural, score);
    add(per.accuracyPerSemanticType, q.types.semantic, score);
    (q.types.structural === 'query' ? scores.open : scores.binary).push(score);
    const g = q.groups.global;
    if (g !== null && g !== undefined) {
      count(dist.gold, g, q.answer);
      count(dist.predicted, g, predicted);
    }
  }
  if (scores.accuracy.length === 0) throw new EvalInputError('no balanced GQA question has an answer');
  const avg = (l: number[]) => (l.length === 0 ? 0 : pySum(l) / l.length);
  const pct = (l: number[]) => py3Round(avg(l) * 100, 2);
  const breakdown = (m: Map<string, number[]>): GqaBreakdown =>
    Object.fromEntries([...m.keys()].sort().map((k) => [k, { accuracy: pct(m.get(k)!), questions: m.get(k)!.length }]));
  const chi = chiSquare(dist.gold, dist.predicted);
  return {
    questions: scores.accuracy.length,
    accuracy: pct(scores.accuracy),
    binary: pct(scores.binary),
    open: pct(scores.open),
    distribution: chi === null ? null : chi / 100,
    accuracyPerStructuralType: breakdown(per.accuracyPerStructuralType),
    accuracyPerSemanticType: breakdown(per.accuracyPerSemanticType),
    accuracyPerSteps: breakdown(per.accuracyPerSteps),
    accuracyPerLength: breakdown(per.accuracyPerLength),
    ...(opts.partial ? { missing: missing.length } : {}),
  };
}
