/**
 * `eval export`: the EvalAI upload JSON, as LLaVA's scripts/convert_vqav2_for_submission.py and
 * convert_vizwiz_for_submission.py write it — every question of the LLaVA question file in its order,
 * the answer text through EvalAIAnswerProcessor.
 *   vqav2: [{question_id, answer}], a question without an answer uploads "" (LLaVA does the same: its
 *          test-dev runs are exported against the full test split);
 *   vizwiz: [{image, answer}], every question must have an answer (LLaVA asserts).
 */
import { writeFileSync } from 'node:fs';

import { answersById, EvalInputError, idKey, readAnswers, readQuestions } from './files.js';
import { evalAiAnswerProcessor } from './normalize.js';

export type ExportTask = 'vqav2' | 'vizwiz';
export const EXPORT_TASKS: readonly ExportTask[] = ['vqav2', 'vizwiz'];

export interface ExportResult {
  entries: (Record<string, unknown> & { answer: string })[];
  questions: number;
  answered: number;
  /** question ids exported with an empty answer (vqav2 only) */
  missing: number;
}

export function buildExport(task: ExportTask, answersFile: string, questionsFile: string, warn: (msg: string) => void = () => undefined): ExportResult {
  const byId = answersById(readAnswers(answersFile, warn));
  const questions = readQuestions(questionsFile);
  const entries: ExportResult['entries'] = [];
  let missing = 0;
  const absent: string[] = [];
  for (const q of questions) {
    const a = byId.get(idKey(q.question_id));
    if (task === 'vqav2') {
      if (!a) missing++;
      entries.push({ question_id: q.question_id, answer: a ? evalAiAnswerProcessor(a.text) : '' });
    } else {
      if (!a) {
        absent.push(idKey(q.question_id));
        continue;
      }
      if (q.image === undefined) throw new EvalInputError(`question ${JSON.stringify(q.question_id)} has no image; VizWiz uploads are keyed by image`);
      entries.push({ image: q.image, answer: evalAiAnswerProcessor(a.text) });
    }
  }
  if (absent.length > 0) {
    throw new EvalInputError(`${absent.length} question(s) have no answer (e.g. ${absent.slice(0, 3).join(', ')}); a VizWiz upload needs every question answered — finish the run first`);
  }
  return { entries, questions: questions.length, answered: questions.length - missing - absent.length, missing };
}

export function writeExport(task: ExportTask, answersFile: string, questionsFile: string, outFile: string, warn?: (msg: string) => void): ExportResult {
  const r = buildExport(task, answersFile, questionsFile, warn);
  writeFileSync(outFile, JSON.stringify(r.entries));
  return r;
}
