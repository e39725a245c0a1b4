/**
 * A Hugging Face `tokenizer.json` (+ `tokenizer_config.json`, optional `chat_template.jinja`) turned into
 * llama.cpp's tokenizer metadata. Two kinds of BPE are accepted:
 *
 * - SentencePiece-style BPE (`byte_fallback: true`, "▁" for spaces, `<0xNN>` byte tokens; Llama 2,
 *   TinyLlama, Mistral): written as llama.cpp's "llama" (SPM) tokenizer. That tokenizer merges the
 *   adjacent pair whose concatenation has the highest score, so each token's score is minus the rank of
 *   the first merge that produces it: the merge order of the BPE is preserved. (The one divergence, shared
 *   with SentencePiece itself, is that llama.cpp merges any two pieces whose concatenation is a token,
 *   even by a split the merges list does not name; vocabularies trained by BPE never rely on that.)
 * - Byte-level BPE (GPT-2 alphabet, e.g. Llama 3, Qwen2, SmolLM): written as "gpt2" with the merges and
 *   the name of the pre-tokenizer, recognised from the tokenizer.json pre-tokenizer itself, since its
 *   regex decides how text is split before BPE. An unknown pre-tokenizer is refused rather than guessed.
 *
 * Added tokens marked `special` become CONTROL tokens (matched in text only when special tokens are
 * parsed); other added tokens become USER_DEFINED (always matched).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { GgufError, TokenType } from './types.js';
import type { TokenizerMeta } from './llama-meta.js';

const addedToken = z.looseObject({ id: z.number().int().nonnegative(), content: z.string(), special: z.boolean().optional() });
const tokenizerSchema = z.looseObject({
  model: z.looseObject({
    type: z.string(),
    vocab: z.record(z.string(), z.number().int().nonnegative()).optional(),
    merges: z.array(z.union([z.string(), z.tuple([z.string(), z.string()])])).optional(),
    byte_fallback: z.boolean().optional(),
    unk_token: z.string().nullish(),
    dropout: z.number().nullish(),
    continuing_subword_prefix: z.string().nullish(),
    end_of_word_suffix: z.string().nullish(),
  }),
  added_tokens: z.array(addedToken).optional(),
  normalizer: z.unknown().optional(),
  pre_tokenizer: z.unknown().optional(),
  post_processor: z.unknown().optional(),
});
const tokenRef = z.union([z.string(), z.looseObject({ content: z.string() })]).nullish();
const tokenizerConfigSchema = z.looseObject({
  bos_token: tokenRef,
  eos_token: tokenRef,
  unk_token: tokenRef,
  pad_token: tokenRef,
  add_bos_token: z.boolean().nullish(),
  add_eos_token: z.boolean().nullish(),
  chat_template: z.union([z.string(), z.array(z.looseObject({ name: z.string(), template: z.string() }))]).nullish(),
});

type Json = Record<string, unknown>;
export type HfIds = { bos?: number | number[] | null; eos?: number | number[] | null };

function readJson(file: string, required: boolean): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !required) return undefined;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new GgufError(`${file}: no such file`);
    throw new GgufError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

function parse<T>(schema: z.ZodType<T>, value: unknown, file: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new GgufError(`${file}: ${i.path.join('.') || 'top level'}: ${i.message}`);
  }
  return r.data;
}

/** Flattens a Sequence of normalizers / pre-tokenizers / processors into its parts. */
function parts(v: unknown): Json[] {
  if (v === null || typeof v !== 'object') return [];
  const o = v as Json;
  for (const key of ['normalizers', 'pretokenizers', 'processors', 'decoders']) {
    if (o.type === 'Sequence' && Array.isArray(o[key])) return (o[key] as unknown[]).flatMap(parts);
  }
  return [o];
}

function splitRegex(p: Json): string | undefined {
  const pat = p.pattern as Json | undefined;
  return p.type === 'Split' && pat && typeof pat.Regex === 'string' ? pat.Regex : undefined;
}

// The regexes as they appear in tokenizer.json, and the names llama.cpp gives their pre-tokenizers.
const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** llama.cpp's name for a byte-level pre-tokenizer, or a message saying why it is not recognised. */
export function detectBytePre(preTokenizer: unknown): { pre: string } | { problem: string } {
  const ps = parts(preTokenizer);
  const types = ps.map((p) => p.type);
  const byteLevel = ps.find((p) => p.type === 'ByteLevel');
  if (!byteLevel) return { problem: 'no ByteLevel pre-tokenizer' };
  if (byteLevel.add_prefix_space === true) return { problem: 'ByteLevel add_prefix_space is true (llama.cpp cannot prepend a space for byte-level BPE)' };
  const useRegex = byteLevel.use_regex !== false;
  if (ps.length === 1 && useRegex) return { pre: 'gpt-2' };
  if (ps.length === 2 && types[0] === 'Digits' && ps[0]!.individual_digits === true && types[1] === 'ByteLevel' && useRegex) return { pre: 'smollm' };
  if (ps.length === 2 && types[1] === 'ByteLevel' && !useRegex) {
    const re = splitRegex(ps[0]!);
    if (re === LLAMA3_REGEX) return { pre: 'llama-bpe' };
    if (re === QWEN2_REGEX) return { pre: 'qwen2' };
    if (re !== undefined) return { problem: `split regex ${JSON.stringify(re)} is not one convert-llm knows` };
  }
  return { problem: `pre-tokenizer sequence [${types.join(', ')}] is not one convert-llm knows` };
}

function refContent(r: z.infer<typeof tokenRef>): string | undefined {
  return r == null ? undefined : typeof r === 'string' ? r : r.content;
}

function readChatTemplate(dir: string, cfg: z.infer<typeof tokenizerConfigSchema> | undefined): string | undefined {
  const jinja = path.join(dir, 'chat_template.jinja');
  if (fs.existsSync(jinja)) return fs.readFileSync(jinja, 'utf8');
  const t = cfg?.chat_template;
  if (t == null) return undefined;
  if (typeof t === 'string') return t;
  // Several named templates: llama.cpp's tokenizer.chat_template is the default one.
  return (t.find((x) => x.name === 'default') ?? t[0])?.template;
}

/** Whether the post-processor (TemplateProcessing) puts `token` at the start of a single sequence. */
function postProcessorAdds(post: unknown, token: string | undefined): boolean | undefined {
  if (token === undefined) return undefined;
  const tp = parts(post).find((p) => p.type === 'TemplateProcessing');
  if (!tp || !Array.isArray(tp.single)) return undefined;
  return tp.single.some((x) => (x as Json)?.SpecialToken !== undefined && ((x as Json).SpecialToken as Json).id === token);
}

/**
 * Reads the tokenizer of an HF model directory. `vocabSize` is config.json's (the embedding rows): ids
 * the tokenizer does not define become unused `[PADn]` tokens, as llama.cpp's converter writes them.
 */
export function readHfTokenizer(dir: string, vocabSize: number, configIds: HfIds = {}): TokenizerMeta {
  const file = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(file)) {
    const spm = fs.existsSync(path.join(dir, 'tokenizer.model'));
    throw new GgufError(`${file}: no such file${spm ? ' (only tokenizer.model is present: convert-llm reads tokenizer.json, which transformers writes with save_pretrained)' : ''}`);
  }
  const tj = parse(tokenizerSchema, readJson(file, true), file);
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  const cfgJson = readJson(cfgFile, false);
  const cfg = cfgJson === undefined ? undefined : parse(tokenizerConfigSchema, cfgJson, cfgFile);
  const m = tj.model;
  if (m.type !== 'BPE') throw new GgufError(`${file}: tokenizer model ${m.type} is not supported (convert-llm takes BPE tokenizers)`);
  if (!m.vocab || !m.merges) throw new GgufError(`${file}: BPE model without vocab or merges`);
  if (m.dropout != null && m.dropout !== 0) throw new GgufError(`${file}: BPE dropout is not supported`);
  if (m.continuing_subword_prefix || m.end_of_word_suffix) throw new GgufError(`${file}: BPE subword prefixes/suffixes are not supported by llama.cpp`);
  const spm = m.byte_fallback === true;

  const tokens: (string | undefined)[] = new Array(vocabSize);
  const types: number[] = new Array(vocabSize).fill(TokenType.NORMAL);
  for (const [text, id] of Object.entries(m.vocab)) {
    if (id >= vocabSize) throw new GgufError(`${file}: token ${JSON.stringify(text)} has id ${id}, beyond config.json's vocab_size ${vocabSize}`);
    tokens[id] = text;
  }
  for (const t of tj.added_tokens ?? []) {
    if (t.id >= vocabSize) throw new GgufError(`${file}: added token ${JSON.stringify(t.content)} has id ${t.id}, beyond config.json's vocab_size ${vocabSize}`);
    const looksSpecial = t.content.startsWith('<|') && t.content.endsWith('|>');
    const control = t.special === true || looksSpecial;
    // llama.cpp expects user-defined tokens pre-normalised (spaces, not "▁"), as its converter writes them.
    tokens[t.id] = control || !spm ? t.content : t.content.replaceAll('▁', ' ');
    types[t.id] = control ? TokenType.CONTROL : TokenType.USER_DEFINED;
  }
  for (let i = 0; i < vocabSize; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TokenType.UNUSED;
    }
  }
  const list = tokens as string[];
  const idOf = new Map<string, number>();
  list.forEach((t, i) => {
    if (idOf.has(t)) throw new GgufError(`${file}: token ${JSON.stringify(t)} has two ids (${idOf.get(t)} and ${i})`);
    idOf.set(t, i);
  });
  const merges = m.merges.map((x) => (typeof x === 'string' ? x : `${x[0]} ${x[1]}`));

  const resolve = (label: string, name: string | undefined, fallback: number | number[] | null | undefined): number | undefined => {
    if (name !== undefined) {
      const id = idOf.get(name);
      if (id === undefined) throw new GgufError(`${cfgFile}: ${label} ${JSON.stringify(name)} is not in the vocabulary`);
      return id;
    }
    const f = Array.isArray(fallback) ? fallback[0] : fallback;
    if (f == null) return undefined;
    if (f < 0 || f >= vocabSize) throw new GgufError(`${path.join(dir, 'config.json')}: ${label} id ${f} is outside the ${vocabSize}-token vocabulary`);
    return f;
  };
  const bosName = refContent(cfg?.bos_token);
  const eosName = refContent(cfg?.eos_token);
  const bos = resolve('bos_token', bosName, configIds.bos);
  const eos = resolve('eos_token', eosName, configIds.eos);
  const padName = refContent(cfg?.pad_token);
  // A pad token that names no vocabulary entry is common and harmless (llama.cpp never pads): leave it out.
  const pad = padName !== undefined ? idOf.get(padName) : undefined;
  const chatTemplate = readChatTemplate(dir, cfg);
  const bosText = bos === undefined ? undefined : list[bos];

  if (spm) {
    const unkName = m.unk_token ?? refContent(cfg?.unk_token);
    const unk = unkName == null ? undefined : idOf.get(unkName);
    if (unk !== undefined) types[unk] = TokenType.UNKNOWN;
    const scores: number[] = new Array(vocabSize).fill(-1e9);
    for (let i = 0; i < vocabSize; i++) {
      if (/^<0x[0-9A-F]{2}>$/.test(list[i]!) && types[i] === TokenType.NORMAL) types[i] = TokenType.BYTE;
    }
    merges.forEach((mg, rank) => {
      const sp = mg.indexOf(' ', 1);
      const id = idOf.get(mg.slice(0, sp) + mg.slice(sp + 1));
      if (sp > 0 && id !== undefined && scores[id] === -1e9) scores[id] = -rank;
    });
    const ps = [...parts(tj.normalizer), ...parts(tj.pre_tokenizer)];
    const metaspace = ps.find((p) => p.type === 'Metaspace');
    const replacesSpace = ps.some((p) => p.type === 'Replace' && (p.content === '▁' || p.content === '\u2581')) || metaspace !== undefined;
    if (!replacesSpace) throw new GgufError(`${file}: a byte-fallback BPE tokenizer must map spaces to "▁" (Replace or Metaspace), as SentencePiece does`);
    const prepends =
      ps.some((p) => p.type === 'Prepend' && p.prepend === '▁') ||
      (metaspace !== undefined && (metaspace.prepend_scheme === 'first' || metaspace.prepend_scheme === 'always' || (metaspace.prepend_scheme === undefined && metaspace.add_prefix_space !== false)));
    return {
      model: 'llama',
      pre: 'default',
      tokens: list,
      types,
      scores,
      bos,
      eos,
      unk,
      pad,
      addBos: cfg?.add_bos_token ?? postProcessorAdds(tj.post_processor, bosText) ?? true,
      addEos: cfg?.add_eos_token ?? false,
      addSpacePrefix: prepends,
      chatTemplate,
    };
  }

  const pre = detectBytePre(tj.pre_tokenizer);
  if ('problem' in pre) {
    throw new GgufError(`${file}: unsupported pre-tokenizer: ${pre.problem} (convert-llm recognises gpt-2, llama-bpe (Llama 3), qwen2 and smollm pre-tokenizers)`);
  }
  for (const n of parts(tj.normalizer)) {
    if (n.type !== 'NFC') throw new GgufError(`${file}: normalizer ${String(n.type)} is not supported for byte-level BPE (llama.cpp applies none)`);
  }
  return {
    model: 'gpt2',
    pre: pre.pre,
    tokens: list,
    types,
    merges,
    bos,
    eos,
    pad,
    addBos: cfg?.add_bos_token ?? postProcessorAdds(tj.post_processor, bosText) ?? false,
    addEos: cfg?.add_eos_token ?? false,
    chatTemplate,
  };
}
