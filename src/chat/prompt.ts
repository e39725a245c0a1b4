/**
 * Chat → the positions of one prompt: token ids, and image spans of `tokensPerImage` rows each.
 *
 * Tokenization follows llama.cpp for named templates: each text segment is tokenized on its own with
 * special-token parsing off (so user text can never forge control tokens), each special segment must
 * be exactly one control token of the vocabulary. That equals llama.cpp tokenizing the whole rendered
 * string with special parsing (its SPM tokenizer re-adds the space prefix after every special token, as
 * we do per segment), and equals LLaVA's tokenizer_image_token, which tokenizes the chunks between
 * `<image>` markers separately. The GGUF's own template goes through node-llama-cpp (jinja.ts) and
 * follows node-llama-cpp's tokenization instead, the one LlamaChat would use for that text.
 *
 * BOS: prepended when the GGUF asks for it (tokenizer.ggml.add_bos_token, node-llama-cpp's
 * shouldPrependBosToken) and the template did not already render it — what llama.cpp's
 * `tokenize(prompt, add_special=true)` does, and what LLaVA's tokenizer does for vicuna prompts.
 */
import type { LlamaModel, Token } from 'node-llama-cpp';

import { ChatError } from './errors.js';
import { renderGgufPrompt } from './jinja.js';
import type { NormalizedChat } from './messages.js';
import { renderTemplate, TEMPLATE_NAMES, templateStops, type Segment, type TemplateName } from './templates.js';

export type TemplateChoice = TemplateName | 'gguf';
export const TEMPLATE_CHOICES: readonly TemplateChoice[] = [...TEMPLATE_NAMES, 'gguf'];

export type PromptPart = { kind: 'tokens'; tokens: Token[] } | { kind: 'image'; image: number };

export interface RenderedPrompt {
  readonly template: TemplateChoice;
  readonly parts: readonly PromptPart[];
  /** strings that end the assistant turn, besides the model's end-of-generation tokens */
  readonly stops: readonly string[];
}

/** One image row in the sequence: which image (content key) and which of its rows. */
export interface ImageSlot {
  readonly image: string;
  readonly offset: number;
}

/** What one sequence position holds: a token id, or a row of an image. */
export type PositionKey = Token | ImageSlot;

export interface ImageSpan {
  /** index into NormalizedChat.images */
  readonly image: number;
  /** content key (feature-cache key) */
  readonly key: string;
  readonly start: number;
  readonly length: number;
}

export interface PromptPlan {
  readonly template: TemplateChoice;
  readonly keys: readonly PositionKey[];
  /** per position: the token id, or the placeholder id at image rows */
  readonly tokens: readonly Token[];
  readonly spans: readonly ImageSpan[];
  readonly imageTokens: number;
  readonly stops: readonly string[];
}

export function keyEquals(a: PositionKey, b: PositionKey): boolean {
  if (typeof a === 'number' || typeof b === 'number') return a === b;
  return a.image === b.image && a.offset === b.offset;
}

function specialToken(model: LlamaModel, text: string, template: string): Token {
  const ids = model.tokenize(text, true);
  if (ids.length !== 1 || model.getTokenAttributes(ids[0]!).normal) {
    throw new ChatError('TEMPLATE', `template ${template} needs the special token ${JSON.stringify(text)}, which this model's vocabulary does not have`);
  }
  return ids[0]!;
}

function tokenizeSegments(model: LlamaModel, segments: readonly Segment[], template: string): PromptPart[] {
  const parts: PromptPart[] = [];
  const push = (tokens: Token[]): void => {
    if (tokens.length === 0) return;
    const last = parts[parts.length - 1];
    if (last?.kind === 'tokens') last.tokens.push(...tokens);
    else parts.push({ kind: 'tokens', tokens: [...tokens] });
  };
  for (const s of segments) {
    if (s.kind === 'image') parts.push({ kind: 'image', image: s.image });
    else if (s.kind === 'special') push([specialToken(model, s.text, template)]);
    else push(model.tokenize(s.text, false));
  }
  return parts;
}

/** Renders and tokenizes a chat with a named template or the GGUF's own ('gguf'). */
export function renderPrompt(model: LlamaModel, chat: NormalizedChat, template: TemplateChoice): RenderedPrompt {
  let parts: PromptPart[];
  let stops: string[];
  if (template === 'gguf') ({ parts, stops } = renderGgufPrompt(model, chat));
  else if ((TEMPLATE_NAMES as readonly string[]).includes(template)) {
    parts = tokenizeSegments(model, renderTemplate(template, chat), template);
    stops = templateStops(template);
  } else {
    throw new ChatError('OPTIONS', `unknown template ${JSON.stringify(template)} (expected one of ${TEMPLATE_CHOICES.join(', ')})`);
  }
  const bos = model.tokens.bos;
  if (model.tokens.shouldPrependBosToken && bos !== null) {
    const first = parts[0];
    if (first?.kind === 'tokens') {
      if (first.tokens[0] !== bos) first.tokens.unshift(bos);
    } else parts.unshift({ kind: 'tokens', tokens: [bos] });
  }
  const last = parts[parts.length - 1];
  // node-llama-cpp samples from the logits of the last evaluated token, and it must be a text token
  // (see the injection notes: an image must be followed by at least one text token).
  if (last?.kind !== 'tokens' || last.tokens.length === 0) {
    throw new ChatError('TEMPLATE', `template ${template} rendered a prompt that ends with an image; at least one text token must follow it`);
  }
  return { template, parts, stops };
}

/** Lays the rendered parts out as positions; `imageKeys[i]` is image i's content key. */
export function planPrompt(rendered: RenderedPrompt, imageKeys: readonly string[], tokensPerImage: number, placeholder: Token): PromptPlan {
  const keys: PositionKey[] = [];
  const tokens: Token[] = [];
  const spans: ImageSpan[] = [];
  for (const p of rendered.parts) {
    if (p.kind === 'tokens') {
      keys.push(...p.tokens);
      tokens.push(...p.tokens);
      continue;
    }
    const key = imageKeys[p.image];
    if (key === undefined) throw new ChatError('STATE', `the prompt refers to image ${p.image}, but only ${imageKeys.length} were loaded`);
    spans.push({ image: p.image, key, start: keys.length, length: tokensPerImage });
    for (let o = 0; o < tokensPerImage; o++) {
      keys.push({ image: key, offset: o });
      tokens.push(placeholder);
    }
  }
  return { template: rendered.template, keys, tokens, spans, imageTokens: spans.length * tokensPerImage, stops: rendered.stops };
}
