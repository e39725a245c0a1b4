/**
 * VQA accuracy (vqaEval.py master) on hand-worked questions, the aggregation and its rounding, and the
 * vqav2 / vizwiz scorers on the hand-made fixtures in test/fixtures/eval/{vqav2,vizwiz}.
 */
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { scoreTask, type VqaResult } from '../../eval/src/score.js';
import { vqaQuestionAccuracy, vqaScores, type VqaGtAnswer } from '../../eval/src/vqa.js';

const FIX = join(process.cwd(), 'test', 'fixtures', 'eval');

/** VQAv2-style records: answer_id 1..10 makes every record distinct. */
const gt = (...answers: string[]): VqaGtAnswer[] => answers.map((answer, i) => ({ answer, answer_confidence: 'yes', answer_id: i + 1 }));
const times = (a: string, n: number): string[] => Array(n).fill(a);

describe('vqaQuestionAccuracy (master)', () => {
  it('ten identical answers: exact match only, nothing is normalised', () => {
    expect(vqaQuestionAccuracy(gt(...times('yes', 10)), 'yes')).toBe(1);
    expect(vqaQuestionAccuracy(gt(...times('yes', 10)), 'Yes')).toBe(0); // quirk
    expect(vqaQuestionAccuracy(gt(...times('yes', 10)), 'yes.')).toBe(0);
    expect(vqaQuestionAccuracy(gt(...times('yes', 10)), '  yes\n')).toBe(1); // strip + newline → space still apply
  });

  it('disagreeing annotators: min(1, matches/3) over the ten leave-one-out subsets', () => {
    // 2 red, 8 blue; "red": the 2 red subsets hold 1 red (1/3), the 8 blue ones 2 (2/3) → (2/3+16/3)/10 = 0.6
    expect(vqaQuestionAccuracy(gt('red', 'blue', 'blue', 'red', ...times('blue', 6)), 'red')).toBeCloseTo(0.6, 12);
    // 3 red: red subsets hold 2 (2/3), others 3 (1) → (3·2/3 + 7)/10 = 0.9
    expect(vqaQuestionAccuracy(gt(...times('red', 3), ...times('blue', 7)), 'red')).toBeCloseTo(0.9, 12);
    // 1 red: red subset holds 0, others 1 (1/3) → 9·(1/3)/10 = 0.3
    expect(vqaQuestionAccuracy(gt('red', ...times('blue', 9)), 'red')).toBeCloseTo(0.3, 12);
    // 4 or more matches → 1 everywhere
    expect(vqaQuestionAccuracy(gt(...times('red', 4), ...times('blue', 6)), 'red')).toBe(1);
    expect(vqaQuestionAccuracy(gt(...times('red', 4), ...times('blue', 6)), 'green')).toBe(0);
  });

  it('normalises prediction and GT when the answers differ: numbers, articles, contractions, punctuation', () => {
    // "two" → "2": five "2"s and five "3"s after normalisation → every subset holds ≥ 4 "2"s
    expect(vqaQuestionAccuracy(gt('2', 'two', '3', '2', '3', '3', 'two', '2', '3', '3'), 'Two.')).toBe(1);
    // articles: "the dog"/"a dog"/"dog" all become "dog" (7), puppy 3
    expect(vqaQuestionAccuracy(gt('the dog', 'dog', 'puppy', 'the dog', 'a dog', 'puppy', 'dog', 'the dog', 'puppy', 'the dog'), 'A dog.')).toBe(1);
    // contractions: "dont know" → "don't know"; 2 of them + 1 "don't know" = 3 → subsets hold 2 or 3
    expect(vqaQuestionAccuracy(gt('dont know', "don't know", 'dont know', ...times('no', 7)), "Don't know")).toBeCloseTo(0.9, 12);
    // punctuation next to digits: "1,000" → "1000"
    expect(vqaQuestionAccuracy(gt('1000', '1,000', '1000', ...times('100', 7)), '1,000')).toBeCloseTo(0.9, 12);
    // "T-shirt" → "t shirt" (3 of them), "shirt" 4, "tee" 3
    expect(vqaQuestionAccuracy(gt('t-shirt', 'shirt', 'tee', 't-shirt', 'shirt', 'tee', 'shirt', 't-shirt', 'tee', 'shirt'), 'T-shirt')).toBeCloseTo(0.9, 12);
  });

  it('quirk: with identical GT the prediction is not normalised even when it would match', () => {
    expect(vqaQuestionAccuracy(gt(...times('2', 10)), 'two')).toBe(0);
    expect(vqaQuestionAccuracy(gt(...times('2', 9), 'two'), 'two')).toBe(1); // one dissenter switches normalisation on
  });

  it('quirk: leave-one-out drops every record equal to the left-out one (Python dict !=)', () => {
    // No answer_id, same confidence: the 4 "cat" records are one and the same dict to Python.
    // cat subsets lose all 4 cats → 0; dog subsets lose all 6 dogs, keep 4 cats → 1 → 6/10.
    const rec = (answer: string) => ({ answer, answer_confidence: 'yes' });
    const answers = [...times('cat', 4).map(rec), ...times('dog', 6).map(rec)];
    expect(vqaQuestionAccuracy(answers, 'cat')).toBeCloseTo(0.6, 12);
    expect(vqaQuestionAccuracy(answers, 'cat', 'official', 'index')).toBe(1); // positional leave-one-out
    // ten identical records: every subset is empty → even the right answer scores 0
    expect(vqaQuestionAccuracy(times('unanswerable', 10).map(rec), 'unanswerable')).toBe(0);
    // Python equality: True == 1, so the two "a" records are equal: their subsets hold no "a" (0), the
    // 8 "b" subsets hold both (2/3) → 8·(2/3)/10 = 0.5333 (distinct records would give 0.6)
    expect(vqaQuestionAccuracy([{ answer: 'a', x: true }, { answer: 'a', x: 1 }, ...gt(...times('b', 8))], 'a')).toBeCloseTo(16 / 30, 12);
    expect(vqaQuestionAccuracy([{ answer: 'a', x: true }, { answer: 'a', x: 2 }, ...gt(...times('b', 8))], 'a')).toBeCloseTo(0.6, 12);
  });

  it("mode 'always' (lmms-eval): the prediction always goes through EvalAIAnswerProcessor", () => {
    expect(vqaQuestionAccuracy(gt(...times('yes', 10)), 'Yes.', 'always')).toBe(1);
    expect(vqaQuestionAccuracy(gt(...times('yes', 10)), 'Yes.', 'official')).toBe(0);
    // EvalAI's "'s" split: "cat's" (GT) vs "cat 's" (prediction) no longer match
    expect(vqaQuestionAccuracy(gt(...times("cat's", 10)), "cat's", 'always')).toBe(0);
  });

  it("mode 'vizwiz': prediction always normalised, GT never, positional leave-one-out", () => {
    expect(vqaQuestionAccuracy(gt(...times('yes', 10)), 'Yes.', 'vizwiz')).toBe(1);
    expect(vqaQuestionAccuracy(gt(...times('T-shirt', 10)), 'T-shirt', 'vizwiz')).toBe(0); // "t shirt" ≠ raw "T-shirt"
  });
});

describe('vqaScores aggregation', () => {
  it('rounds 100·sum/n with Python 2 round: 2 right of 64 is exactly 3.125 → 3.13', () => {
    const items = Array.from({ length: 64 }, (_, i) => ({ id: String(i), answers: gt(...times('yes', 10)), answerType: 'yes/no', questionType: 'is', prediction: i < 2 ? 'yes' : 'no' }));
    const s = vqaScores(items);
    expect(s.overall).toBe(3.13);
    expect(s.perAnswerType).toEqual({ 'yes/no': 3.13 });
    expect(s.evalQA['0']).toBe(100);
    expect(s.evalQA['5']).toBe(0);
  });
});

describe('eval score --task vqav2 (fixture)', () => {
  const files = { answers: join(FIX, 'vqav2', 'answers.jsonl'), annotations: join(FIX, 'vqav2', 'annotations.json'), questions: join(FIX, 'vqav2', 'questions.json') };

  it('matches the hand-computed metrics', () => {
    // per question (see the fixture): 1 "yes" vs 10×yes → 1; 2 "Yes" vs 10×yes → 0 (not normalised);
    // 3 "Two." → "2" vs 5×"2"/5×"3" → 1; 4 "red" vs 2 red/8 blue → 0.6; 5 "T-shirt" vs 3 t-shirt/4 shirt/3 tee → 0.9;
    // 6 "A dog." → "dog" vs 7 dog/3 puppy → 1.
    // overall = 4.5/6 = 75; yes/no (1,2) 50; number (3) 100; other (4,5,6) 2.5/3 = 83.33;
    // "is the" 50, "how many" 100, "what color is the" 60, "what is the" (5,6) 95.
    const r = scoreTask('vqav2', files) as VqaResult;
    expect(r).toEqual({
      normalize: 'official',
      leave_one_out: 'record',
      questions: 6,
      overall: 75,
      perQuestionType: { 'is the': 50, 'how many': 100, 'what color is the': 60, 'what is the': 95 },
      perAnswerType: { 'yes/no': 50, number: 100, other: 83.33 },
    });
  });

  it('--normalize always scores question 2 ("Yes" → "yes") too', () => {
    const r = scoreTask('vqav2', { ...files, normalize: 'always' }) as VqaResult;
    // 5.5/6 = 91.666… → 91.67; yes/no 100
    expect(r.overall).toBe(91.67);
    expect(r.perAnswerType['yes/no']).toBe(100);
  });

  it('refuses answers that do not cover the annotations, like the official loadRes, unless --partial', () => {
    const partialAnswers = join(FIX, 'vqav2', 'export_answers.jsonl'); // ids 1 and 2 only
    expect(() => scoreTask('vqav2', { ...files, answers: partialAnswers })).toThrow(/4 annotated question\(s\) have no answer.*--partial/);
    const r = scoreTask('vqav2', { ...files, answers: partialAnswers, partial: true }) as VqaResult;
    // id 1 "Yes, it is." vs 10×yes → 0; id 2 "Two dogs" vs 10×yes → 0
    expect(r).toMatchObject({ questions: 2, overall: 0, missing: 4, extra: 0 });
  });
});

describe('eval score --task vizwiz (fixture)', () => {
  it('matches by image through the LLaVA question file, positional leave-one-out', () => {
    // 0 "cat" vs 4 cat/6 dog → 1; 1 "unanswerable" vs 10× → 1; 2 "Coca-Cola." → "coca cola" vs 2 coca cola/8 coke → 0.6
    // overall 2.6/3 = 86.67; other (0, 2) 80; unanswerable 100
    const r = scoreTask('vizwiz', {
      answers: join(FIX, 'vizwiz', 'answers.jsonl'),
      annotations: join(FIX, 'vizwiz', 'val.json'),
      questions: join(FIX, 'vizwiz', 'llava_val.jsonl'),
    }) as VqaResult;
    expect(r).toEqual({ normalize: 'official', leave_one_out: 'index', questions: 3, overall: 86.67, perAnswerType: { other: 80, unanswerable: 100 } });
  });

  it('needs the question file to map ids to images', () => {
    expect(() => scoreTask('vizwiz', { answers: join(FIX, 'vizwiz', 'answers.jsonl'), annotations: join(FIX, 'vizwiz', 'val.json') })).toThrow(/--questions/);
  });
});
