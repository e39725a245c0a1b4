/**
 * TextVQA as LLaVA scores it (llava/eval/eval_textvqa.py + m4c_evaluator.TextVQAAccuracyEvaluator):
 * each answer record is matched to the annotation keyed (image_id, question.lower()) — LLaVA's TextVQA
 * question files carry the image id in question_id — with the question recovered from the record's
 * prompt (prompt_processor); the prediction and all 10 GT answers go through EvalAIAnswerProcessor;
 * a prediction scores the mean over the 10 leave-one-out subsets of min(1, matches/3) (0 if no GT
 * answer equals it); accuracy = mean over answer records (every record, in file order).
 */
import { z } from 'zod';

import { EvalInputError, idKey, parseWith, type AnswerRecord } from '../files.js';
import { evalAiAnswerProcessor } from '../normalize.js';
import { py3Round, pySum } from '../py.js';

export const textVqaAnnotationsSchema = z.object({
  data: z.array(
    z
      .object({
        question_id: z.union([z.number(), z.string()]).optional(),
        question: z.string(),
        image_id: z.union([z.string(), z.number()]),
        answers: z.array(z.string()),
      })
      .passthrough(),
  ),
});

/**
 * eval_textvqa.prompt_processor: the question inside a LLaVA TextVQA prompt, lower-cased.
 * LLaVA asserts on any other layout; a one-line prompt (no suffix, no OCR tokens) is accepted here as
 * the question itself.
 */
export function textVqaQuestionFromPrompt(prompt: string): string {
  let question: string;
  const lines = prompt.split('\n');
  if (prompt.startsWith('OCR tokens: ')) {
    const m = /Question: ([\s\S]*?) Short answer:/.exec(prompt);
    if (!m) throw new EvalInputError('an "OCR tokens:" prompt without "Question: ... Short answer:"');
    question = m[1]!;
  } else if (prompt.includes('Reference OCR token: ') && lines.length === 3) {
    question = prompt.startsWith('Reference OCR token:') ? lines[1]! : lines[0]!;
  } else if (lines.length === 2 || lines.length === 1) {
    question = lines[0]!;
  } else {
    throw new EvalInputError(`a prompt of ${lines.length} lines that is not one of LLaVA's TextVQA layouts`);
  }
  return question.toLowerCase();
}

/** TextVQAAccuracyEvaluator._compute_answer_scores: score of each distinct processed GT answer. */
export function textVqaAnswerScores(rawAnswers: readonly string[]): Map<string, number> {
  const answers = rawAnswers.map(evalAiAnswerProcessor);
  if (answers.length !== 10) throw new EvalInputError(`TextVQA needs 10 ground-truth answers per question, got ${answers.length}`);
  const scores = new Map<string, number>();
  for (const u of new Set(answers)) {
    const accs = answers.map((_, i) => Math.min(1, answers.filter((a, j) => j !== i && a === u).length / 3));
    scores.set(u, pySum(accs) / accs.length);
  }
  return scores;
}

export interface TextVqaResult {
  samples: number;
  accuracy: number;
  /** answer records with no matching annotation (only with partial) */
  unmatched?: number;
}

export function scoreTextVqa(annotationsJson: unknown, answers: readonly AnswerRecord[], opts: { partial?: boolean; file?: string } = {}): TextVqaResult {
  const ann = parseWith(textVqaAnnotationsSchema, annotationsJson, `TextVQA annotations ${opts.file ?? ''}`.trim());
  const byKey = new Map<string, readonly string[]>();
  for (const a of ann.data) byKey.set(`${idKey(a.image_id)}\u0000${a.question.toLowerCase()}`, a.answers);
  const scores: number[] = [];
  let unmatched = 0;
  for (const r of answers) {
    let key: string;
    try {
      key = `${idKey(r.question_id)}\u0000${textVqaQuestionFromPrompt(r.prompt)}`;
    } catch (e) {
      if (opts.partial) {
        unmatched++;
        continue;
      }
      throw new EvalInputError(`answer for question_id ${JSON.stringify(r.question_id)}: ${(e as Error).message}`);
    }
    const gt = byKey.get(key);
    if (!gt) {
      if (opts.partial) {
        unmatched++;
        continue;
      }
      throw new EvalInputError(
        `answer for question_id ${JSON.stringify(r.question_id)} (question ${JSON.stringify(key.split('\u0000')[1])}) matches no annotation ` +
          '(TextVQA answers are matched on image_id = question_id and the question in the prompt); use --partial to skip such answers',
      );
    }
    scores.push(textVqaAnswerScores(gt).get(evalAiAnswerProcessor(r.text)) ?? 0);
  }
  if (scores.length === 0) throw new EvalInputError('no TextVQA answers to score');
  return { samples: scores.length, accuracy: py3Round(100 * (pySum(scores) / scores.length), 2), ...(opts.partial ? { unmatched } : {}) };
}
