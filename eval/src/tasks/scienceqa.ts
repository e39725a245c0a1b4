/**
 * ScienceQA as LLaVA scores it (llava/eval/eval_science_qa.py), over the problems of one split in
 * pid_splits.json order:
 *   no answer → "FAILED"; the text exactly one of A–E → that letter; else "X. ..." with X in A–E →
 *   X; else exactly one match of `The answer is ([A-Z]).` → that letter; else "FAILED";
 *   the letter's index among the first len(choices) options must equal problem.answer.
 * acc = correct / count over the split; img_acc over the multimodal problems. LLaVA decides "multimodal"
 * by "<image>" in the answer's prompt, which its own runs write exactly for problems with an image, and a
 * missing answer (prompt "Unknown") never counts as multimodal; here: an answer exists and (its prompt
 * holds "<image>" or the problem has an image).
 */
import { z } from 'zod';

import { answersById, EvalInputError, parseWith, type AnswerRecord } from '../files.js';
import { py3Round } from '../py.js';

const OPTIONS = ['A', 'B', 'C', 'D', 'E'];

const problemSchema = z.object({ choices: z.array(z.string()), answer: z.number().int(), image: z.string().nullable().optional() }).passthrough();
export const sqaProblemsSchema = z.record(z.string(), problemSchema);
export const sqaSplitsSchema = z.record(z.string(), z.array(z.union([z.string(), z.number()])));

/** eval_science_qa.py's letter rule: 'A'–'E' or 'FAILED'. */
export function sqaParseAnswer(text: string): string {
  if (OPTIONS.includes(text)) return text;
  if (text.length >= 3 && OPTIONS.includes(text[0]!) && text.slice(1, 3) === '. ') return text[0]!;
  // Python's "." does not match "\n" only; JS's would also refuse "\r", U+2028, U+2029.
  const found = [...text.matchAll(/The answer is ([A-Z])[^\n]/g)];
  return found.length === 1 ? found[0]![1]! : 'FAILED';
}

export interface SqaResult {
  split: string;
  count: number;
  correct: number;
  acc: number;
  img_count: number;
  img_correct: number;
  img_acc: number | null;
  /** problems of the split without an answer (scored as FAILED, as LLaVA does) */
  missing: number;
  /** answers whose letter could not be read */
  failed_parse: number;
}

export function scoreScienceQa(
  problemsJson: unknown,
  splitsJson: unknown,
  answers: readonly AnswerRecord[],
  opts: { split?: string; partial?: boolean } = {},
): SqaResult {
  const split = opts.split ?? 'test';
  const problems = parseWith(sqaProblemsSchema, problemsJson, 'ScienceQA problems');
  const splits = parseWith(sqaSplitsSchema, splitsJson, 'ScienceQA pid_splits');
  const ids = splits[split];
  if (!ids) throw new EvalInputError(`pid_splits has no split ${JSON.stringify(split)} (it has ${Object.keys(splits).join(', ')})`);
  const byId = answersById(answers);
  let count = 0;
  let correct = 0;
  let imgCount = 0;
  let imgCorrect = 0;
  let missing = 0;
  let failedParse = 0;
  for (const rawId of ids) {
    const pid = String(rawId);
    const prob = problems[pid];
    if (!prob) throw new EvalInputError(`split ${split} names problem ${pid}, which problems.json does not have`);
    const pred = byId.get(pid);
    if (!pred) {
      missing++;
      if (opts.partial) continue;
    }
    const letter = pred ? sqaParseAnswer(pred.text) : 'FAILED';
    if (pred && letter === 'FAILED') failedParse++;
    const idx = OPTIONS.slice(0, prob.choices.length).indexOf(letter);
    const ok = idx === prob.answer;
    const multimodal = pred !== undefined && (pred.prompt.includes('<image>') || (prob.image !== null && prob.image !== undefined));
    count++;
    if (ok) correct++;
    if (multimodal) {
      imgCount++;
      if (ok) imgCorrect++;
    }
  }
  if (count === 0) throw new EvalInputError(`no ScienceQA problems to score in split ${split}`);
  return {
    split,
    count,
    correct,
    acc: py3Round((correct / count) * 100, 2),
    img_count: imgCount,
    img_correct: imgCorrect,
    img_acc: imgCount === 0 ? null : py3Round((imgCorrect / imgCount) * 100, 2),
    missing,
    failed_parse: failedParse,
  };
}
