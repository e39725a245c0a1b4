/**
 * The other benchmarks' scorers on the hand-made fixtures in test/fixtures/eval, with the expected
 * metrics worked out by hand in the comments; the EvalAI export; `llm2clip eval score` output.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it, vi } from 'vitest';

import { buildExport, writeExport } from '../../eval/src/export.js';
import { readQuestions } from '../../eval/src/files.js';
import { scoreTask } from '../../eval/src/score.js';
import { gqaPrediction } from '../../eval/src/tasks/gqa.js';
import { mmeParse } from '../../eval/src/tasks/mme.js';
import { popeAnswerIsYes, popeMetrics } from '../../eval/src/tasks/pope.js';
import { sqaParseAnswer } from '../../eval/src/tasks/scienceqa.js';
import { textVqaAnswerScores, textVqaQuestionFromPrompt } from '../../eval/src/tasks/textvqa.js';
import { cmdEval } from '../../src/cli/eval-command.js';

const FIX = join(process.cwd(), 'test', 'fixtures', 'eval');
const tmp = mkdtempSync(join(tmpdir(), 'llm2clip-eval-tasks-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('textvqa', () => {
  it('recovers the question from each LLaVA prompt layout', () => {
    expect(textVqaQuestionFromPrompt('What is it?\nReference OCR token: A, B\nAnswer the question using a single word or phrase.')).toBe('what is it?');
    expect(textVqaQuestionFromPrompt('Reference OCR token: A, B\nWhat is it?\nAnswer briefly.')).toBe('what is it?');
    expect(textVqaQuestionFromPrompt('OCR tokens: A B Question: What is\nit? Short answer:')).toBe('what is\nit?');
    expect(textVqaQuestionFromPrompt('What is it?\nAnswer the question using a single word or phrase.')).toBe('what is it?');
    expect(() => textVqaQuestionFromPrompt('a\nb\nc\nd')).toThrow(/4 lines/);
  });

  it('scores each distinct processed GT answer over the 10 leave-one-out subsets', () => {
    // "12", "12." → "12" (3), "13" (7): "12" scores (3·2/3 + 7·1)/10 = 0.9; "13" scores 1
    const s = textVqaAnswerScores(['12', '12.', '13', '13', '12', '13', '13', '13', '13', '13']);
    expect(s.get('12')).toBeCloseTo(0.9, 12);
    expect(s.get('13')).toBe(1);
    // number words stop at "ten": "twelve" stays a word → 2 × "12": (2·1/3 + 8·2/3)/10 = 0.6
    expect(textVqaAnswerScores(['12', 'twelve', '13', '13', '12', '13', '13', '13', '13', '13']).get('12')).toBeCloseTo(0.6, 12);
    expect(() => textVqaAnswerScores(['a'])).toThrow(/10 ground-truth/);
  });

  it('fixture: accuracy over answer records', () => {
    // img_a "What brand is this?": "Nokia." → "nokia" (9 of 10 after processing) → 1
    // img_a "What number is on the screen?": "12" → 0.9 (above); img_b "What does the sign say?": "stop sign" vs 10×stop → 0
    // (1 + 0.9 + 0)/3 = 63.33
    expect(scoreTask('textvqa', { answers: join(FIX, 'textvqa', 'answers.jsonl'), annotations: join(FIX, 'textvqa', 'TextVQA_0.5.1_val.json') })).toEqual({
      samples: 3,
      accuracy: 63.33,
    });
  });
});

describe('gqa', () => {
  it("convert_gqa_for_eval's rule: strip trailing periods, lower-case", () => {
    expect(gqaPrediction('Yes...')).toBe('yes');
    expect(gqaPrediction('U.S.')).toBe('u.s');
  });

  it('fixture: exact match over balanced questions, with the official breakdowns', () => {
    // 201 verify/attr "Yes." ✓ (4 words, 2 steps); 202 query/attr "Red" ✓ (5 words, 2 steps, global color);
    // 203 query/cat "cat." ✗ gold dog (4 words, 1 step: "query: name" is not counted, global animal);
    // 204 logical/obj "no" ✗ gold yes (7 words, 3 steps: the two "exist" are not counted); 205 unbalanced, unanswered.
    // accuracy 2/4 = 50, binary (201, 204) 50, open (202, 203) 50;
    // distribution: color {red: 1 vs 1} → 0, animal {dog: e 1, o 0} → 1; (0·1 + 1·1)/2 = 0.5, /100 = 0.005
    const r = scoreTask('gqa', { answers: join(FIX, 'gqa', 'answers.jsonl'), questions: join(FIX, 'gqa', 'testdev_balanced_questions.json') });
    expect(r).toEqual({
      questions: 4,
      accuracy: 50,
      binary: 50,
      open: 50,
      distribution: 0.005,
      accuracyPerStructuralType: { logical: { accuracy: 0, questions: 1 }, query: { accuracy: 50, questions: 2 }, verify: { accuracy: 100, questions: 1 } },
      accuracyPerSemanticType: { attr: { accuracy: 100, questions: 2 }, cat: { accuracy: 0, questions: 1 }, obj: { accuracy: 0, questions: 1 } },
      accuracyPerSteps: { '1': { accuracy: 0, questions: 1 }, '2': { accuracy: 100, questions: 2 }, '3': { accuracy: 0, questions: 1 } },
      accuracyPerLength: { '4': { accuracy: 50, questions: 2 }, '5': { accuracy: 100, questions: 1 }, '7': { accuracy: 0, questions: 1 } },
    });
  });

  it('refuses a missing balanced prediction unless --partial', () => {
    const answers = join(tmp, 'gqa-partial.jsonl');
    writeFileSync(answers, readFileSync(join(FIX, 'gqa', 'answers.jsonl'), 'utf8').split('\n').slice(1).join('\n'));
    expect(() => scoreTask('gqa', { answers, questions: join(FIX, 'gqa', 'testdev_balanced_questions.json') })).toThrow(/no prediction for 1 balanced/);
    expect(scoreTask('gqa', { answers, questions: join(FIX, 'gqa', 'testdev_balanced_questions.json'), partial: true })).toMatchObject({ questions: 3, missing: 1 });
  });
});

describe('pope', () => {
  it("eval_pope's yes/no rule", () => {
    expect(popeAnswerIsYes('Yes, there is a dog.')).toBe(true);
    expect(popeAnswerIsYes('No.')).toBe(false);
    expect(popeAnswerIsYes('There is no cat.')).toBe(false);
    expect(popeAnswerIsYes('NO')).toBe(true); // quirk: only "No", "not", "no" count
    expect(popeAnswerIsYes('Yes. But not really.')).toBe(true); // only the first sentence
    expect(popeAnswerIsYes('no\nthere is none')).toBe(true); // split on " " only: "no\nthere" is one word
    expect(popeAnswerIsYes('not, really')).toBe(false);
    expect(popeAnswerIsYes('Not really')).toBe(true); // quirk: capitalised "Not" is not in the list
  });

  it('rates in percent; a zero denominator gives null', () => {
    // all predicted no: precision 0/0
    expect(popeMetrics([{ predYes: false, labelYes: true }])).toEqual({ samples: 1, TP: 0, FP: 0, TN: 0, FN: 1, acc: 0, precision: null, recall: 0, f1: null, yes_ratio: 0 });
  });

  it('fixture: per category, aligned by question-file order, answers matched by id', () => {
    // adversarial: 1 yes/yes TP, 2 no/no TN, 3 "There is no cat." no/yes FN, 4 "NO" → yes / no FP → all 50
    // random: 5 TP, 6 TN, 7 "Yes. But not really." → yes / yes TP, 8 "I do not think so" → no / no TN → 100, yes_ratio 50
    // popular: 9 yes/yes TP, 10 yes/no FP → acc 50, precision 50, recall 100, f1 2·.5·1/1.5 = 66.67, yes_ratio 100
    // average: acc 66.67, precision 66.67, recall 83.33, f1 (50+100+66.667)/3 = 72.22, yes_ratio 66.67
    const r = scoreTask('pope', { answers: join(FIX, 'pope', 'answers.jsonl'), annotationsDir: join(FIX, 'pope', 'coco'), questions: join(FIX, 'pope', 'llava_pope_test.jsonl') });
    expect(r).toEqual({
      categories: {
        adversarial: { samples: 4, TP: 1, FP: 1, TN: 1, FN: 1, acc: 50, precision: 50, recall: 50, f1: 50, yes_ratio: 50 },
        popular: { samples: 2, TP: 1, FP: 1, TN: 0, FN: 0, acc: 50, precision: 50, recall: 100, f1: 66.67, yes_ratio: 100 },
        random: { samples: 4, TP: 2, FP: 0, TN: 2, FN: 0, acc: 100, precision: 100, recall: 100, f1: 100, yes_ratio: 50 },
      },
      average: { acc: 66.67, precision: 66.67, recall: 83.33, f1: 72.22, yes_ratio: 66.67 },
    });
  });
});

describe('scienceqa', () => {
  it("eval_science_qa's letter rules", () => {
    expect(sqaParseAnswer('B')).toBe('B');
    expect(sqaParseAnswer('B. a cat')).toBe('B');
    expect(sqaParseAnswer('The answer is C.')).toBe('C');
    expect(sqaParseAnswer('The answer is C')).toBe('FAILED'); // the pattern needs one more character
    expect(sqaParseAnswer('The answer is A. The answer is C.')).toBe('FAILED'); // two matches
    expect(sqaParseAnswer('F')).toBe('FAILED');
    expect(sqaParseAnswer('b')).toBe('FAILED');
  });

  it('fixture: accuracy and IMG-accuracy over the test split', () => {
    // p1 "B" ✓ img; p2 "A. apples" ✓; p3 "The answer is D." ✓ img; p4 "C" (index -1 with 2 choices) ✗ img;
    // p5 two "The answer is" → FAILED ✗; p6 unanswered ✗ and (LLaVA quirk) not counted as IMG; p7 is in val.
    // acc 3/6 = 50; IMG: p1, p3, p4 → 2/3 = 66.67
    expect(
      scoreTask('scienceqa', { answers: join(FIX, 'scienceqa', 'answers.jsonl'), problems: join(FIX, 'scienceqa', 'problems.json'), splits: join(FIX, 'scienceqa', 'pid_splits.json') }),
    ).toEqual({ split: 'test', count: 6, correct: 3, acc: 50, img_count: 3, img_correct: 2, img_acc: 66.67, missing: 1, failed_parse: 1 });
  });
});

describe('mme', () => {
  it("calculation.py's parse", () => {
    expect(mmeParse('Yes')).toBe('yes');
    expect(mmeParse('yes, there is')).toBe('yes');
    expect(mmeParse('Not sure')).toBe('no'); // "not " contains "no"
    expect(mmeParse('There is a cow')).toBe('other');
    expect(mmeParse('I think yes')).toBe('other'); // only the first 4 characters count
  });

  it('fixture: acc, acc+ and score per subtask, Perception/Cognition totals', () => {
    // existence: 6040 Yes✓ No✓ (both); 18150 "yes, there is a bus" ✓, "There is a cow" → other ✗ → acc 3/4 = 75, acc+ 1/2 = 50, score 125
    // celebrity (images/ + questions_answers_YN/, prompt with LLaVA's short-answer suffix): "No" ✗ (gt Yes), "Not sure" → no ✓ → 50, 0, 50
    // code_reasoning: "Yes" ✓, "no" ✓ (its GT has the two-space "  Please answer yes or no.") → 100, 100, 200
    // Perception 125 + 50 = 175, Cognition 200
    const r = scoreTask('mme', { answers: join(FIX, 'mme', 'answers.jsonl'), annotationsDir: join(FIX, 'mme', 'MME_Benchmark_release_version') });
    expect(r).toEqual({
      Perception: {
        total: 175,
        tasks: {
          existence: { images: 2, questions: 4, acc: 75, acc_plus: 50, score: 125, other: 1 },
          celebrity: { images: 1, questions: 2, acc: 50, acc_plus: 0, score: 50, other: 0 },
        },
      },
      Cognition: { total: 200, tasks: { code_reasoning: { images: 1, questions: 2, acc: 100, acc_plus: 100, score: 200, other: 0 } } },
      missing_tasks: ['count', 'position', 'color', 'posters', 'scene', 'landmark', 'artwork', 'OCR', 'commonsense_reasoning', 'numerical_calculation', 'text_translation'],
    });
  });
});

describe('export', () => {
  it('vqav2: every question in order, EvalAIAnswerProcessor, "" when unanswered', () => {
    const r = buildExport('vqav2', join(FIX, 'vqav2', 'export_answers.jsonl'), join(FIX, 'vqav2', 'llava_questions.jsonl'));
    expect(r.entries).toEqual([
      { question_id: 1, answer: 'yes it is' },
      { question_id: 2, answer: '2 dogs' },
      { question_id: 3, answer: '' },
    ]);
    expect(r.missing).toBe(1);
  });

  it('vizwiz: [{image, answer}], and every question must be answered', () => {
    const out = join(tmp, 'vizwiz-upload.json');
    writeExport('vizwiz', join(FIX, 'vizwiz', 'answers.jsonl'), join(FIX, 'vizwiz', 'llava_val.jsonl'), out);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual([
      { image: 'VizWiz_val_00000000.jpg', answer: 'cat' },
      { image: 'VizWiz_val_00000001.jpg', answer: 'unanswerable' },
      { image: 'VizWiz_val_00000002.jpg', answer: 'coca cola' },
    ]);
    expect(() => buildExport('vizwiz', join(FIX, 'vqav2', 'export_answers.jsonl'), join(FIX, 'vqav2', 'llava_questions.jsonl'))).toThrow(/1 question\(s\) have no answer/);
  });
});

describe('input validation', () => {
  it('a malformed question line names its line number', () => {
    const f = join(tmp, 'bad-questions.jsonl');
    writeFileSync(f, '{"question_id": 1, "image": "a.png", "text": "q"}\n\n{"question_id": 2, "image": "b.png"}\n');
    expect(() => readQuestions(f)).toThrow(/line 3: text/);
    writeFileSync(f, '{"question_id": 1, "text": "q"}\n{"question_id": 2, "text": "q"\n');
    expect(() => readQuestions(f)).toThrow(/line 2: not valid JSON/);
    writeFileSync(f, '{"question_id": null, "text": "q"}\n');
    expect(() => readQuestions(f)).toThrow(/line 1: question_id/);
  });

  it("reads LLaVA's ScienceQA conversation JSON as questions", () => {
    const f = join(tmp, 'llava_test_CQM-A.json');
    writeFileSync(f, JSON.stringify([{ id: 'p1', image: 'p1/image.png', conversations: [{ from: 'human', value: '<image>\nWhich is a mammal?\nA. cat' }, { from: 'gpt', value: 'A' }] }, { id: 'p2', conversations: [{ from: 'human', value: 'Q2' }] }]));
    expect(readQuestions(f)).toEqual([
      { question_id: 'p1', image: 'p1/image.png', text: 'Which is a mammal?\nA. cat' },
      { question_id: 'p2', text: 'Q2' },
    ]);
  });
});

describe('llm2clip eval score / export (CLI)', () => {
  async function capture(argv: string[]): Promise<string> {
    const chunks: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
      chunks.push(String(c));
      return true;
    });
    try {
      await cmdEval(argv);
    } finally {
      spy.mockRestore();
    }
    return chunks.join('');
  }

  it('prints the metrics as JSON with the task name', async () => {
    const out = await capture(['score', '--task', 'vqav2', '--answers', join(FIX, 'vqav2', 'answers.jsonl'), '--annotations', join(FIX, 'vqav2', 'annotations.json'), '--questions', join(FIX, 'vqav2', 'questions.json')]);
    expect(JSON.parse(out)).toMatchObject({ task: 'vqav2', overall: 75, perAnswerType: { 'yes/no': 50, number: 100, other: 83.33 } });
  });

  it('names a missing task file and a bad flag value', async () => {
    await expect(cmdEval(['score', '--task', 'textvqa', '--answers', join(FIX, 'textvqa', 'answers.jsonl')])).rejects.toThrow(/--task textvqa needs --annotations/);
    await expect(cmdEval(['score', '--task', 'okvqa', '--answers', 'x'])).rejects.toThrow(/--task "okvqa"/);
    await expect(cmdEval(['score', '--task', 'gqa', '--answers', 'x', '--questions', 'y', '--normalize', 'always'])).rejects.toThrow(/--normalize applies to/);
  });

  it('export writes the upload file', async () => {
    const out = join(tmp, 'vqav2-upload.json');
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await cmdEval(['export', '--task', 'vqav2', '--answers', join(FIX, 'vqav2', 'export_answers.jsonl'), '--questions', join(FIX, 'vqav2', 'llava_questions.jsonl'), '--out', out]);
    } finally {
      spy.mockRestore();
    }
    expect(JSON.parse(readFileSync(out, 'utf8'))).toHaveLength(3);
  });
});
