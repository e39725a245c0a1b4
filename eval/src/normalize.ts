/**
 * Answer normalisation of the official VQA evaluation and of LLaVA's EvalAIAnswerProcessor
 * (anchors.md §4.4), quirks included:
 *
 * - `processPunctuation` (vqaEval.py, master a013f00): for each of 21 punctuation characters in order,
 *   if the ORIGINAL text has it next to a space, or the text holds a digit-comma-digit anywhere, every
 *   occurrence is deleted from the running output, otherwise every occurrence becomes a space. Then
 *   every "." not followed by a digit is deleted, at most 32 of them (re.UNICODE lands in `count`).
 *   Master is Python 2 and compiles its patterns without re.UNICODE, so `\d` there is [0-9].
 * - `processDigitArticle`: lower-case, split on whitespace, number words → digits (manualMap, "none"
 *   → "0" included), drop a/an/the, then apostrophe-less contractions → apostrophised ones. The
 *   contraction keys "Im", "Ive", "Id've", "I'dve" can never match a lower-cased word, and
 *   "somebody'd" maps to "somebodyd" (sic): both kept.
 * - `evalAiAnswerProcessor` (LLaVA m4c_evaluator.py, Python 3): lower-case, delete "," and "?",
 *   "'s" → " 's", strip, newline/tab → space, strip, then the same punctuation loop with the comma test
 *   `(?<=\d)(,)+(?=\d)` and Unicode digits, then processDigitArticle.
 *
 * Tables are Maps so words such as "constructor" never hit Object.prototype.
 */
import { py2Lower, py2Split, pySplit, pyStrip } from './py.js';

export const PUNCTUATION: readonly string[] = [';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!'];

export const MANUAL_MAP: ReadonlyMap<string, string> = new Map([
  ['none', '0'],
  ['zero', '0'],
  ['one', '1'],
  ['two', '2'],
  ['three', '3'],
  ['four', '4'],
  ['five', '5'],
  ['six', '6'],
  ['seven', '7'],
  ['eight', '8'],
  ['nine', '9'],
  ['ten', '10'],
]);

export const ARTICLES: ReadonlySet<string> = new Set(['a', 'an', 'the']);

// The official table (master, straight apostrophes), entry for entry.
export const CONTRACTIONS: ReadonlyMap<string, string> = new Map([
  ['aint', "ain't"], ['arent', "aren't"], ['cant', "can't"], ['couldve', "could've"], ['couldnt', "couldn't"],
  ["couldn'tve", "couldn't've"], ["couldnt've", "couldn't've"], ['didnt', "didn't"], ['doesnt', "doesn't"], ['dont', "don't"],
  ['hadnt', "hadn't"], ["hadnt've", "hadn't've"], ["hadn'tve", "hadn't've"], ['hasnt', "hasn't"], ['havent', "haven't"],
  ['hed', "he'd"], ["hed've", "he'd've"], ["he'dve", "he'd've"], ['hes', "he's"], ['howd', "how'd"], ['howll', "how'll"],
  ['hows', "how's"], ["Id've", "I'd've"], ["I'dve", "I'd've"], ['Im', "I'm"], ['Ive', "I've"], ['isnt', "isn't"],
  ['itd', "it'd"], ["itd've", "it'd've"], ["it'dve", "it'd've"], ['itll', "it'll"], ["let's", "let's"], ['maam', "ma'am"],
  ['mightnt', "mightn't"], ["mightnt've", "mightn't've"], ["mightn'tve", "mightn't've"], ['mightve', "might've"],
  ['mustnt', "mustn't"], ['mustve', "must've"], ['neednt', "needn't"], ['notve', "not've"], ['oclock', "o'clock"],
  ['oughtnt', "oughtn't"], ["ow's'at", "'ow's'at"], ["'ows'at", "'ow's'at"], ["'ow'sat", "'ow's'at"], ['shant', "shan't"],
  ["shed've", "she'd've"], ["she'dve", "she'd've"], ["she's", "she's"], ['shouldve', "should've"], ['shouldnt', "shouldn't"],
  ["shouldnt've", "shouldn't've"], ["shouldn'tve", "shouldn't've"], ["somebody'd", 'somebodyd'], ["somebodyd've", "somebody'd've"],
  ["somebody'dve", "somebody'd've"], ['somebodyll', "somebody'll"], ['somebodys', "somebody's"], ['someoned', "someone'd"],
  ["someoned've", "someone'd've"], ["someone'dve", "someone'd've"], ['someonell', "someone'll"], ['someones', "someone's"],
  ['somethingd', "something'd"], ["somethingd've", "something'd've"], ["something'dve", "something'd've"],
  ['somethingll', "something'll"], ['thats', "that's"], ['thered', "there'd"], ["thered've", "there'd've"],
  ["there'dve", "there'd've"], ['therere', "there're"], ['theres', "there's"], ['theyd', "they'd"], ["theyd've", "they'd've"],
  ["they'dve", "they'd've"], ['theyll', "they'll"], ['theyre', "they're"], ['theyve', "they've"], ['twas', "'twas"],
  ['wasnt', "wasn't"], ["wed've", "we'd've"], ["we'dve", "we'd've"], ['weve', "we've"], ['werent', "weren't"],
  ['whatll', "what'll"], ['whatre', "what're"], ['whats', "what's"], ['whatve', "what've"], ['whens', "when's"],
  ['whered', "where'd"], ['wheres', "where's"], ['whereve', "where've"], ['whod', "who'd"], ["whod've", "who'd've"],
  ["who'dve", "who'd've"], ['wholl', "who'll"], ['whos', "who's"], ['whove', "who've"], ['whyll', "why'll"],
  ['whyre', "why're"], ['whys', "why's"], ['wont', "won't"], ['wouldve', "would've"], ['wouldnt', "wouldn't"],
  ["wouldnt've", "wouldn't've"], ["wouldn'tve", "wouldn't've"], ['yall', "y'all"], ["yall'll", "y'all'll"],
  ["y'allll", "y'all'll"], ["yall'd've", "y'all'd've"], ["y'alld've", "y'all'd've"], ["y'all'dve", "y'all'd've"],
  ['youd', "you'd"], ["youd've", "you'd've"], ["you'dve", "you'd've"], ['youll', "you'll"], ['youre', "you're"],
  ['youve', "you've"],
]);

/** Python's default `re.sub` count is "all"; vqaEval passes re.UNICODE (= 32) as the count. */
const PERIOD_STRIP_COUNT = 32;

type DigitTest = (rest: string) => boolean;
const asciiDigitAhead: DigitTest = (rest) => rest.length > 0 && rest.charCodeAt(0) >= 48 && rest.charCodeAt(0) <= 57;
const unicodeDigitAhead: DigitTest = (rest) => /^\p{Nd}/u.test(rest);

/**
 * `periodStrip.sub("", text, 32)` for `(?!<=\d)(\.)(?!\d)`: the look-behind is botched into a look-ahead
 * for "<=digit" that can never hold where a "." is, so: delete "." not followed by a digit, scanning the
 * original text left to right, at most 32 times.
 */
function periodStrip(text: string, digitAhead: DigitTest): string {
  let out = '';
  let removed = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '.' && removed < PERIOD_STRIP_COUNT && !digitAhead(text.slice(i + 1, i + 3))) {
      removed++;
      continue;
    }
    out += ch;
  }
  return out;
}

function punctuationLoop(inText: string, commaHit: boolean, digitAhead: DigitTest): string {
  let outText = inText;
  for (const p of PUNCTUATION) {
    const remove = inText.includes(p + ' ') || inText.includes(' ' + p) || commaHit;
    outText = outText.split(p).join(remove ? '' : ' ');
  }
  return periodStrip(outText, digitAhead);
}

/** vqaEval.py master `processPunctuation` (Python 2: `\d` is [0-9]; comma test `(\d)(\,)(\d)`). */
export function processPunctuation(inText: string): string {
  return punctuationLoop(inText, /[0-9],[0-9]/.test(inText), asciiDigitAhead);
}

function digitArticle(words: readonly string[]): string {
  const out: string[] = [];
  for (const w of words) {
    const word = MANUAL_MAP.get(w) ?? w;
    if (!ARTICLES.has(word)) out.push(word);
  }
  return out.map((w) => CONTRACTIONS.get(w) ?? w).join(' ');
}

/** vqaEval.py master `processDigitArticle` (Python 2 unicode: its lower() and split()). */
export function processDigitArticle(inText: string): string {
  return digitArticle(py2Split(py2Lower(inText)));
}

/** The official per-answer normalisation of master: processPunctuation then processDigitArticle. */
export function vqaNormalize(text: string): string {
  return processDigitArticle(processPunctuation(text));
}

/** EvalAIAnswerProcessor.process_punctuation (Python 3: Unicode digits; comma test `(?<=\d)(\,)+(?=\d)`). */
export function evalAiProcessPunctuation(inText: string): string {
  return punctuationLoop(inText, /(?<=\p{Nd}),+(?=\p{Nd})/u.test(inText), unicodeDigitAhead);
}

/** EvalAIAnswerProcessor.process_digit_article (the same code as vqaEval.py's, under Python 3). */
export function evalAiProcessDigitArticle(inText: string): string {
  return digitArticle(pySplit(inText.toLowerCase()));
}

/** EvalAIAnswerProcessor.word_tokenize. */
export function evalAiWordTokenize(word: string): string {
  return pyStrip(word.toLowerCase().split(',').join('').split('?').join('').split("'s").join(" 's"));
}

/** LLaVA's EvalAIAnswerProcessor.__call__ (m4c_evaluator.py). */
export function evalAiAnswerProcessor(item: string): string {
  let s = evalAiWordTokenize(item);
  s = pyStrip(s.split('\n').join(' ').split('\t').join(' '));
  s = evalAiProcessPunctuation(s);
  return evalAiProcessDigitArticle(s);
}
