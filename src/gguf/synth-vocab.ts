/**
 * The vocabulary of synthesised LLMs: a SentencePiece-style ("llama" / SPM) vocabulary that llama.cpp
 * tokenizes itself, chosen over GPT-2 BPE because it needs no merges list and byte fallback makes every
 * string encodable.
 *
 * How llama.cpp's SPM tokenizer uses it: text gets a leading space, spaces become "▁", the text is split
 * into characters, and adjacent pieces are merged greedily, highest-scoring merged piece first, as long as
 * the concatenation is a vocabulary entry; a leftover piece that is not in the vocabulary is emitted as its
 * UTF-8 bytes (`<0xNN>` tokens). So every prefix of "▁word" is an entry, and entries score by length plus a
 * bonus for word pieces: growing the word from the left always beats the filler pieces, and whole words
 * come out as one token ("hello world, the cat sat on the mat" → 9 tokens).
 *
 * Layout: 0 `<unk>`, 1 `<s>` (BOS), 2 `</s>` (EOS), 3..258 the 256 byte tokens, then `<|im_start|>`,
 * `<|im_end|>` (ChatML role delimiters) and `<image>` (the image placeholder), all CONTROL: llama.cpp
 * matches CONTROL tokens only when asked to parse special tokens, so user text that happens to contain
 * "<image>" cannot forge an image placeholder.
 */
import { TokenType } from './types.js';

export const SPECIAL = { unk: '<unk>', bos: '<s>', eos: '</s>', imStart: '<|im_start|>', imEnd: '<|im_end|>', image: '<image>' } as const;

/** Words that tokenize whole (every "▁"-prefix is in the vocabulary): test sentences and the demo world's words. */
export const WORDS = [
  'hello', 'world', 'the', 'cat', 'sat', 'on', 'mat', 'and', 'dog', 'a', 'an', 'is', 'in', 'of', 'to', 'it', 'this', 'that',
  'what', 'picture', 'image', 'red', 'green', 'blue', 'yellow', 'circle', 'square', 'triangle', 'left', 'right', 'top',
  'bottom', 'how', 'many', 'yes', 'no', 'one', 'two', 'three', 'color', 'shape', 'there', 'are', 'user', 'assistant', 'system',
];

const PUNCT = [...',.?!:;\'"-()[]{}/*+=<>@#$%&_|~`^\\'];
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

export interface SpmVocab {
  tokens: string[];
  scores: number[];
  types: number[];
  ids: { unk: number; bos: number; eos: number; imStart: number; imEnd: number; image: number };
}

/**
 * Builds the vocabulary. `size` undefined gives the core vocabulary only (a few hundred tokens); a larger
 * size is filled with lower-scoring letter pieces ("▁ab", "ab", "▁abc", "abc", …) up to exactly `size`.
 */
export function buildSynthVocab(size?: number): SpmVocab {
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const seen = new Set<string>();
  const add = (text: string, score: number, type: number): void => {
    if (seen.has(text)) return;
    seen.add(text);
    tokens.push(text);
    scores.push(score);
    types.push(type);
  };
  add(SPECIAL.unk, 0, TokenType.UNKNOWN);
  add(SPECIAL.bos, 0, TokenType.CONTROL);
  add(SPECIAL.eos, 0, TokenType.CONTROL);
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0, TokenType.BYTE);
  for (const s of [SPECIAL.imStart, SPECIAL.imEnd, SPECIAL.image]) add(s, 0, TokenType.CONTROL);
  // Single characters are never the result of a merge, so their score does not matter; they are entries so
  // that they come out as one token instead of byte tokens.
  for (const ch of ['▁', ...LETTERS, ...LETTERS.toUpperCase(), ...'0123456789', ...PUNCT]) add(ch, -1, TokenType.NORMAL);
  for (const w of WORDS) {
    const piece = `▁${w}`;
    for (let n = 2; n <= piece.length; n++) add(piece.slice(0, n), n + 0.5, TokenType.NORMAL);
  }
  if (size !== undefined) {
    if (!Number.isInteger(size) || size < tokens.length) throw new RangeError(`vocabulary size ${size} is below the ${tokens.length} core tokens`);
    const fill = function* (): Generator<string> {
      for (const a of LETTERS) yield `▁${a}`;
      for (const a of LETTERS) for (const b of LETTERS) yield `▁${a}${b}`;
      for (const a of LETTERS) for (const b of LETTERS) yield `${a}${b}`;
      for (const a of LETTERS) for (const b of LETTERS) for (const c of LETTERS) yield `▁${a}${b}${c}`;
      for (const a of LETTERS) for (const b of LETTERS) for (const c of LETTERS) yield `${a}${b}${c}`;
    };
    for (const piece of fill()) {
      if (tokens.length >= size) break;
      add(piece, [...piece].length, TokenType.NORMAL);
    }
    if (tokens.length < size) throw new RangeError(`vocabulary size ${size} exceeds the ${tokens.length} pieces this generator makes`);
  }
  const id = (t: string): number => tokens.indexOf(t);
  return {
    tokens,
    scores,
    types,
    ids: { unk: id(SPECIAL.unk), bos: id(SPECIAL.bos), eos: id(SPECIAL.eos), imStart: id(SPECIAL.imStart), imEnd: id(SPECIAL.imEnd), image: id(SPECIAL.image) },
  };
}

/**
 * ChatML, as Qwen2 and many small models ship it; a system message is optional. node-llama-cpp's chat
 * wrappers recognise this template.
 */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
