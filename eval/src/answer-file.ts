/**
 * The answer file of a run: resumable and crash-safe. Each answer is appended as one whole line and
 * fdatasync'ed before the next, so a killed run leaves at most a torn last line, which the next run cuts
 * off (or completes, if the line is whole and only its newline is missing). Questions are matched to
 * stored answers by (question_id, prompt) — LLaVA's TextVQA files reuse one question_id (the image id)
 * for several questions — counting repeats, so every question line is answered exactly once.
 */
import { closeSync, existsSync, fdatasyncSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';

import { answerSchema, EvalInputError, parseWith, type AnswerRecord, type QuestionId } from './files.js';

export const answerKey = (questionId: QuestionId, prompt: string): string => `${JSON.stringify(questionId)}\u0000${prompt}`;

export interface StoredAnswers {
  records: AnswerRecord[];
  /** answer key → how many stored records have it */
  counts: Map<string, number>;
  /** what was done to a torn last line, if there was one */
  repaired?: { line: number; action: 'removed' | 'completed'; bytes: number };
}

/** Reads (and repairs) an existing answer file; an absent file is an empty one. */
export function loadStoredAnswers(file: string): StoredAnswers {
  if (!existsSync(file)) return { records: [], counts: new Map() };
  let buf = readFileSync(file);
  let repaired: StoredAnswers['repaired'];
  if (buf.length > 0 && buf[buf.length - 1] !== 0x0a) {
    const cut = buf.lastIndexOf(0x0a) + 1;
    const tail = buf.subarray(cut).toString('utf8');
    const line = buf.subarray(0, cut).toString('utf8').split('\n').length;
    let whole = false;
    try {
      whole = answerSchema.safeParse(JSON.parse(tail)).success;
    } catch {
      whole = false;
    }
    const fd = openSync(file, 'r+');
    try {
      if (whole) {
        writeSync(fd, '\n', buf.length);
        repaired = { line, action: 'completed', bytes: 1 };
        buf = Buffer.concat([buf, Buffer.from('\n')]);
      } else {
        ftruncateSync(fd, cut);
        repaired = { line, action: 'removed', bytes: buf.length - cut };
        buf = buf.subarray(0, cut);
      }
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  const records: AnswerRecord[] = [];
  const counts = new Map<string, number>();
  buf
    .toString('utf8')
    .split('\n')
    .forEach((l, i) => {
      if (l.trim() === '') return;
      let v: unknown;
      try {
        v = JSON.parse(l);
      } catch (e) {
        throw new EvalInputError(
          `answer file ${file} line ${i + 1}: not valid JSON (${(e as Error).message}); only a torn LAST line is repaired automatically — fix or remove this line`,
        );
      }
      const r = parseWith(answerSchema, v, `answer file ${file} line ${i + 1}`);
      records.push(r);
      const k = answerKey(r.question_id, r.prompt);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    });
  return { records, counts, ...(repaired ? { repaired } : {}) };
}

/** Appends JSON lines, each written whole and flushed to disk (fdatasync) before returning. */
export class JsonlAppender {
  private fd: number | undefined;
  private closed = false;

  constructor(readonly file: string) {}

  append(value: unknown): void {
    if (this.closed) throw new Error(`${this.file}: written to after close`);
    this.fd ??= openSync(this.file, 'a');
    const buf = Buffer.from(JSON.stringify(value) + '\n', 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
    fdatasyncSync(this.fd);
  }

  get opened(): boolean {
    return this.fd !== undefined;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.closed = true;
  }
}
