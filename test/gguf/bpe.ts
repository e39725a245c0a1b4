/**
 * Independent reference BPE for the tokenizer tests, written from Hugging Face tokenizers' semantics
 * (not from llama.cpp's): a tiny trainer, so fixtures have realistic, non-chain merges, and an encoder
 * that applies merges by rank (lowest first, leftmost on ties) within each pre-tokenized word.
 *
 * Two flavours:
 * - "spm": SentencePiece-style BPE (Llama 2): spaces → "▁", a "▁" prepended, no pre-tokenizer (the whole
 *   text is one word), characters missing from the vocabulary fall back to <0xNN> byte tokens.
 * - byte-level (GPT-2 alphabet): text split by a pre-tokenizer regex, each piece's UTF-8 bytes mapped to
 *   printable characters, then BPE; optional ignore_merges (Llama 3: a whole word in the vocabulary wins).
 */

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to code points from 256 up. */
export function bytesToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + n++);
  return out;
}

const B2U = bytesToUnicode();
export function byteEncode(s: string): string {
  return [...Buffer.from(s, 'utf8')].map((b) => B2U[b]).join('');
}

/** The pre-tokenizer regexes as llama.cpp runs them (JS has no inline (?i:...), hence the spelled-out cases). */
export const PRE_REGEX = {
  'llama-bpe': /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu,
  qwen2: /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu,
} as const;

/** Applies merges (pair → rank) to a list of symbols, HF-style: lowest rank first, leftmost on ties. */
export function applyMerges(symbols: string[], ranks: ReadonlyMap<string, number>): string[] {
  const s = [...symbols];
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < s.length; i++) {
      const r = ranks.get(`${s[i]} ${s[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) return s;
    s.splice(best, 2, s[best]! + s[best + 1]!);
  }
}

/** Learns `n` merges from words (each a list of symbols), most frequent pair first (ties: first seen). */
export function trainMerges(words: string[][], n: number): [string, string][] {
  const ws = words.map((w) => [...w]);
  const merges: [string, string][] = [];
  for (let k = 0; k < n; k++) {
    const counts = new Map<string, number>();
    for (const w of ws) for (let i = 0; i + 1 < w.length; i++) counts.set(`${w[i]}\u0000${w[i + 1]}`, (counts.get(`${w[i]}\u0000${w[i + 1]}`) ?? 0) + 1);
    let best: string | undefined;
    let bestCount = 1;
    for (const [p, c] of counts) if (c > bestCount) [best, bestCount] = [p, c];
    if (!best) break;
    const [a, b] = best.split('\u0000') as [string, string];
    merges.push([a, b]);
    for (const w of ws) {
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) w.splice(i, 2, a + b);
    }
  }
  return merges;
}

export interface RefTokenizer {
  vocab: Map<string, number>;
  /** Ordered merges "a b". */
  merges: string[];
  encode(text: string): number[];
}

export function spmTokenizer(vocab: Map<string, number>, merges: string[]): RefTokenizer {
  const ranks = new Map(merges.map((m, i) => [m, i]));
  return {
    vocab,
    merges,
    encode(text: string): number[] {
      const norm = `▁${text.replaceAll(' ', '▁')}`;
      const out: number[] = [];
      const syms: string[] = [];
      for (const ch of norm) syms.push(ch);
      for (const piece of applyMerges(syms, ranks)) {
        const id = vocab.get(piece);
        if (id !== undefined) out.push(id);
        else for (const b of Buffer.from(piece, 'utf8')) out.push(vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)!);
      }
      return out;
    },
  };
}

export function byteLevelTokenizer(vocab: Map<string, number>, merges: string[], re: RegExp, ignoreMerges: boolean): RefTokenizer {
  const ranks = new Map(merges.map((m, i) => [m, i]));
  return {
    vocab,
    merges,
    encode(text: string): number[] {
      const out: number[] = [];
      for (const m of text.matchAll(re)) {
        const word = byteEncode(m[0]);
        if (ignoreMerges && vocab.has(word)) {
          out.push(vocab.get(word)!);
          continue;
        }
        for (const piece of applyMerges([...word], ranks)) {
          const id = vocab.get(piece);
          if (id === undefined) throw new Error(`reference tokenizer: piece ${JSON.stringify(piece)} not in vocabulary`);
          out.push(id);
        }
      }
      return out;
    },
  };
}
