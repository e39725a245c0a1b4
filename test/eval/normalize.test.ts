/**
 * Golden tests of the answer normalisation: the table of anchors.md §4.4 (LLaVA's EvalAIAnswerProcessor
 * and the official master processPunctuation + processDigitArticle), then hand-worked cases for each
 * rule and each quirk of vqaEval.py master.
 */
import { describe, expect, it } from 'vitest';

import { CONTRACTIONS, evalAiAnswerProcessor, processDigitArticle, processPunctuation, vqaNormalize } from '../../eval/src/normalize.js';
import { py2Lower, py2Split, py2Strip, py3Round, pyRound, pySplit, pyStrip } from '../../eval/src/py.js';
import { vqaQuestionAccuracy } from '../../eval/src/vqa.js';

// [input, LLaVA EvalAIAnswerProcessor, official master] — anchors.md §4.4
const ANCHOR_TABLE: [string, string, string][] = [
  ['Two.', '2', '2'],
  ['A dog', 'dog', 'dog'],
  ['Yes, it is.', 'yes it is', 'yes it is'],
  ['1,000', '1000', '1000'],
  ['3.5', '3.5', '3.5'],
  ['dont', "don't", "don't"],
  ["The cat's toy", "cat 's toy", "cat's toy"],
  ['T-shirt', 't shirt', 't shirt'],
  ['Hello!', 'hello', 'hello'],
  ['10:30', '10:30', '10:30'],
  ["It's 5 o'clock", "it 's 5 o'clock", "it's 5 o'clock"],
  ['(left)', 'left', 'left'],
  ['two dogs, one cat', '2 dogs 1 cat', '2 dogs 1 cat'],
];

describe('anchors.md §4.4 golden table', () => {
  it.each(ANCHOR_TABLE)('%j → LLaVA %j, master %j', (input, llava, master) => {
    expect(evalAiAnswerProcessor(input)).toBe(llava);
    expect(vqaNormalize(input)).toBe(master);
  });
});

describe('processPunctuation (master)', () => {
  it.each([
    // next to a space → deleted; elsewhere → a space
    ['yes , it is', 'yes  it is'],
    ['yes,it', 'yes it'],
    ['T-shirt', 'T shirt'],
    ['(left)', ' left '],
    ['q? a!', 'q a '], // "? " is next to a space (deleted); "!" is not (space)
    // punctuation next to digits
    ['5-6', '5 6'],
    ['1, 2', '1 2'],
    ['3,5', '35'],
    ['$5.00', '$5.00'], // "$" is not in the list; "." before a digit stays
    ['5.', '5'],
    ['2.5.', '2.5'],
    ['10:30', '10:30'], // ":" is not in the list
    ['..5', '.5'], // each "." is judged on the original text: the first is followed by ".", the second by "5"
    // quirk: one digit,digit anywhere makes EVERY punctuation mark vanish instead of becoming a space
    ['1,000 t-shirts', '1000 tshirts'],
    ['4,5,6 and 7-8', '456 and 78'],
    ['1,,2 yes!', '1  2 yes '], // "1,,2" is not digit-comma-digit
    // "'" and ":" are not punctuation to it
    ["it's", "it's"],
  ])('%j → %j', (input, out) => {
    expect(processPunctuation(input)).toBe(out);
  });

  it('removes at most 32 periods (re.UNICODE passed as the count)', () => {
    expect(processPunctuation('.'.repeat(40) + 'x')).toBe('........x');
    expect(processPunctuation('a.'.repeat(33))).toBe('a'.repeat(32) + 'a.');
  });

  it('treats only ASCII digits as digits (Python 2 patterns without re.UNICODE)', () => {
    // Arabic-Indic 1,2: not a digit-comma-digit for master, so the comma becomes a space
    expect(processPunctuation('\u0661,\u0662')).toBe('\u0661 \u0662');
    // …but LLaVA's Python 3 processor sees Unicode digits (and its word_tokenize drops the comma anyway)
    expect(evalAiAnswerProcessor('\u0661,\u0662')).toBe('\u0661\u0662');
  });
});

describe('processDigitArticle (master)', () => {
  it.each([
    ['Two Dogs', '2 dogs'],
    ['none', '0'], // manualMap has "none" → "0"
    ['zero ten eleven', '0 10 eleven'],
    ['the the cat', 'cat'],
    ['an apple', 'apple'],
    ['A', ''],
    ['a/b', 'a/b'], // no punctuation handling here…
    ['dont know', "don't know"],
    ['whats that', "what's that"],
    ['oclock', "o'clock"],
    ['Im here', 'im here'], // quirk: the key is "Im", words are lower-cased first, so it never applies
    ['Ive been', 'ive been'],
    ["somebody'd", 'somebodyd'], // quirk: maps the apostrophised form to the bare one
    ['twas', "'twas"],
    ["y'allll", "y'all'll"],
    ['  spaced\tout\n', 'spaced out'],
    ['constructor toString __proto__', 'constructor tostring __proto__'], // never an Object.prototype hit
  ])('%j → %j', (input, out) => {
    expect(processDigitArticle(input)).toBe(out);
  });

  it('…so "a/b" loses "a" only after punctuation made it a word', () => {
    expect(vqaNormalize('a/b')).toBe('b');
  });

  it('has the official 120-entry contraction table', () => {
    expect(CONTRACTIONS.size).toBe(120);
    expect(CONTRACTIONS.get('yall')).toBe("y'all");
    expect(CONTRACTIONS.get('Im')).toBe("I'm");
  });
});

describe('EvalAIAnswerProcessor (LLaVA)', () => {
  it.each([
    ['What?', 'what'],
    ["Let's go", "let 's go"], // "'s" → " 's" before anything else
    ['one,two', 'onetwo'], // commas are deleted by word_tokenize, not spaced
    ['4,5,6 and 7-8', '456 and 7 8'], // …so no digit-comma-digit is left to trigger the delete-all rule
    [' Yes.\n', 'yes'],
    ['\tHello World!\t', 'hello world'],
  ])('%j → %j', (input, out) => {
    expect(evalAiAnswerProcessor(input)).toBe(out);
  });
});

describe('Python semantics', () => {
  it('strip/split use Python whitespace', () => {
    expect(pyStrip('\x1c a \x85')).toBe('a');
    expect(pyStrip('\ufeffa')).toBe('\ufeffa'); // not whitespace to Python
    expect(pySplit(' a\u3000b\x1fc ')).toEqual(['a', 'b', 'c']);
  });

  it('round is Python 2.7 round: exact binary value, halves away from zero', () => {
    expect(pyRound(3.125, 2)).toBe(3.13); // an exact half (Python 3 would give 3.12)
    expect(pyRound(2.675, 2)).toBe(2.67); // 2.675 is 2.67499999… in binary
    expect(pyRound(66.66666666666667, 2)).toBe(66.67);
    expect(pyRound(0.5, 0)).toBe(1);
  });
});

describe('Python 2 (vqaEval.py master) vs Python 3 (LLaVA scripts) details', () => {
  it('rounds exact halves away from zero in Python 2 and to even in Python 3, on the exact binary value', () => {
    // 1 of 32 right: 3.125 exactly. vqaEval.py (Py2 round) prints 3.13; LLaVA's "{:.2f}" prints 3.12.
    expect(pyRound(100 / 32)).toBe(3.13);
    expect(py3Round(100 / 32)).toBe(3.12);
    expect(py3Round(100 * (3 / 32))).toBe(9.38); // 9.375 → 9.38 (8 is even)
    expect(py3Round(3.135)).toBe(3.13); // stored as 3.13499999999999978684…: not a tie (Python 3 agrees)
    expect(py3Round(2.675)).toBe(2.67); // stored as 2.67499999999999982236…
    expect([0.5, 1.5, 2.5, -2.5].map((x) => py3Round(x, 0))).toEqual([0, 2, 2, -2]);
    expect(py3Round(97.97979797)).toBe(97.98);
  });

  it('lowercases and splits as Python 2 unicode does', () => {
    expect(py2Lower('\u0130STANBUL')).toBe('istanbul'); // JS: "i̇stanbul" (two code points)
    expect(py2Lower('\u039f\u0394\u039f\u03a3')).toBe('\u03bf\u03b4\u03bf\u03c3'); // no final sigma
    expect(py2Split('red\u180ecar')).toEqual(['red', 'car']); // U+180E is whitespace in Unicode 5.2
    expect(pySplit('red\u180ecar')).toEqual(['red\u180ecar']); // but not in Python 3
    expect(py2Strip('\u180e yes \u180e')).toBe('yes');
  });

  it('scores those answers as vqaEval.py master does when the annotators disagree', () => {
    const gts = (a: string, b: string) => Array.from({ length: 10 }, (_, i) => ({ answer: i < 5 ? a : b, answer_id: i + 1 }));
    expect(vqaQuestionAccuracy(gts('istanbul', 'paris'), '\u0130stanbul')).toBe(1);
    expect(vqaQuestionAccuracy(gts('\u03bf\u03b4\u03bf\u03c3', 'street'), '\u039f\u0394\u039f\u03a3')).toBe(1);
    expect(vqaQuestionAccuracy(gts('red car', 'blue car'), 'red\u180ecar')).toBe(1);
  });
});
