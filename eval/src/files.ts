/**
 * Reading the benchmark files: JSON and JSONL with errors that name the file and line, LLaVA question
 * files ({question_id, image, text, category?}) and LLaVA answer files ({question_id, prompt, text,
 * answer_id, model_id, metadata}), validated with zod.
 */
import { readFileSync } from 'node:fs';

import { z } from 'zod';

import { pyStrip } from './py.js';

export class EvalInputError extends Error {
  override name = 'EvalInputError';
}

export const questionIdSchema = z.union([z.string().min(1), z.number().finite()], {
  error: 'question_id must be a non-empty string or a number',
});
export type QuestionId = z.infer<typeof questionIdSchema>;

export const questionSchema = z
  .object({
    question_id: questionIdSchema,
    /** image file name relative to --images; absent for text-only questions (ScienceQA) */
    image: z.string().min(1).optional(),
    text: z.string(),
    category: z.string().optional(),
  })
  .passthrough();
export type Question = z.infer<typeof questionSchema>;

export const answerSchema = z
  .object({
    question_id: questionIdSchema,
    prompt: z.string(),
    text: z.string(),
    answer_id: z.string().optional(),
    model_id: z.string().optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .passthrough();
export type AnswerRecord = z.infer<typeof answerSchema>;

function describeIssue(e: z.ZodError): string {
  const i = e.issues[0]!;
  const path = i.path.map(String).join('.');
  return path ? `${path}: ${i.message}` : i.message;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new EvalInputError(`${what} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

export function readJson(file: string, what: string): unknown {
  const text = readText(file, what);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new EvalInputError(`${what} ${file}: not valid JSON (${(e as Error).message})`);
  }
}

export function parseWith<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new EvalInputError(`${where}: ${describeIssue(r.error)}`);
  return r.data;
}

export interface JsonlLine {
  /** 1-based line number */
  line: number;
  value: unknown;
}

export interface JsonlRead {
  lines: JsonlLine[];
  /** a last line without its newline that does not parse (a run that died mid-write); not in `lines` */
  tornTail?: { line: number; text: string };
}

/**
 * Parses JSONL. Blank lines are skipped. A line that does not parse is an error naming the line, except
 * a last line lacking its newline when `allowTornTail` (then it is reported, not returned).
 */
export function parseJsonl(text: string, file: string, what: string, allowTornTail = false): JsonlRead {
  const raw = text.split('\n');
  const endsWithNewline = text.endsWith('\n');
  if (endsWithNewline) raw.pop();
  const lines: JsonlLine[] = [];
  let tornTail: JsonlRead['tornTail'];
  raw.forEach((l, i) => {
    const s = l.endsWith('\r') ? l.slice(0, -1) : l;
    if (s.trim() === '') return;
    try {
      lines.push({ line: i + 1, value: JSON.parse(s) });
    } catch (e) {
      if (allowTornTail && !endsWithNewline && i === raw.length - 1) {
        tornTail = { line: i + 1, text: l };
        return;
      }
      throw new EvalInputError(`${what} ${file} line ${i + 1}: not valid JSON (${(e as Error).message})`);
    }
  });
  return tornTail ? { lines, tornTail } : { lines };
}

export function readJsonl(file: string, what: string, allowTornTail = false): JsonlRead {
  return parseJsonl(readText(file, what), file, what, allowTornTail);
}

/** LLaVA's ScienceQA question file (llava_test_CQM-A.json): [{id, image?, conversations: [{from, value}]}]. */
const llavaConversationSchema = z
  .object({
    id: questionIdSchema,
    image: z.string().min(1).optional(),
    conversations: z.array(z.object({ from: z.string(), value: z.string() }).passthrough()).min(1),
  })
  .passthrough();

/**
 * Reads a LLaVA question file: JSONL of {question_id, image?, text, category?}, or (detected by a
 * leading "[") LLaVA's conversation-style JSON array, converted as model_vqa_science.py does
 * (text = first turn with "<image>" removed, stripped). Malformed entries name their line / index.
 */
export function readQuestions(file: string): Question[] {
  const text = readText(file, 'question file');
  if (text.trimStart().startsWith('[')) {
    let arr: unknown;
    try {
      arr = JSON.parse(text);
    } catch (e) {
      throw new EvalInputError(`question file ${file}: starts with "[" but is not valid JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(arr)) throw new EvalInputError(`question file ${file}: expected an array`);
    return arr.map((v, i) => {
      const c = parseWith(llavaConversationSchema, v, `question file ${file} entry [${i}]`);
      return {
        question_id: c.id,
        ...(c.image !== undefined ? { image: c.image } : {}),
        text: pyStrip(c.conversations[0]!.value.split('<image>').join('')),
      };
    });
  }
  const { lines } = parseJsonl(text, file, 'question file');
  const out = lines.map(({ line, value }) => parseWith(questionSchema, value, `question file ${file} line ${line}`));
  if (out.length === 0) throw new EvalInputError(`question file ${file}: no questions`);
  return out;
}

/**
 * Reads an answer file for scoring. A torn last line (a run still writing, or one that died) is
 * skipped with a warning; any other bad line is an error naming it.
 */
export function readAnswers(file: string, warn: (msg: string) => void = () => undefined): AnswerRecord[] {
  const { lines, tornTail } = readJsonl(file, 'answer file', true);
  if (tornTail) warn(`answer file ${file} line ${tornTail.line}: incomplete last line ignored`);
  return lines.map(({ line, value }) => parseWith(answerSchema, value, `answer file ${file} line ${line}`));
}

/** The key answers and annotations are matched on: the id as text (so 7 and "7" meet). */
export const idKey = (id: QuestionId): string => String(id);

/** answers by id, the last record of an id winning (as the official tools' dict building does). */
export function answersById(answers: readonly AnswerRecord[]): Map<string, AnswerRecord> {
  const m = new Map<string, AnswerRecord>();
  for (const a of answers) m.set(idKey(a.question_id), a);
  return m;
}
