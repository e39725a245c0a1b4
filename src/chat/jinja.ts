/**
 * The GGUF's own chat template (tokenizer.chat_template), rendered by node-llama-cpp's
 * JinjaTemplateChatWrapper. Images become unique marker strings inside the user text; the wrapper
 * hands user text back as plain strings (template literals come back as special-token text), so we
 * split those strings at the markers and tokenize each chunk the way node-llama-cpp's LlamaText does
 * (chunks after the first with "trimLeadingSpace", as it does after any special token).
 *
 * The markers carry a random per-render nonce, so text in a message cannot forge one, and we insist
 * on finding each marker exactly once, in order, in plain text: a template that drops, duplicates or
 * reorders message content fails loudly instead of silently losing an image.
 */
import { randomBytes } from 'node:crypto';

import {
  JinjaTemplateChatWrapper,
  LlamaText,
  SpecialToken,
  SpecialTokensText,
  type ChatHistoryItem,
  type LlamaModel,
  type LlamaTextValue,
} from 'node-llama-cpp';

import { ChatError } from './errors.js';
import type { NormalizedChat, Piece } from './messages.js';
import type { PromptPart } from './prompt.js';

const wrappers = new WeakMap<LlamaModel, JinjaTemplateChatWrapper>();

function wrapperFor(model: LlamaModel): JinjaTemplateChatWrapper {
  let w = wrappers.get(model);
  if (w) return w;
  const template = model.fileInfo.metadata?.tokenizer?.chat_template;
  if (typeof template !== 'string' || template.length === 0) {
    throw new ChatError('TEMPLATE', "this GGUF has no chat template (tokenizer.chat_template); choose a named template (vicuna_v1, llava_v1, llama3, chatml)");
  }
  try {
    w = new JinjaTemplateChatWrapper({ template, tokenizer: model.tokenizer });
  } catch (e) {
    throw new ChatError('TEMPLATE', `node-llama-cpp cannot use this GGUF's chat template: ${(e as Error).message}`, { cause: e });
  }
  wrappers.set(model, w);
  return w;
}

export function renderGgufPrompt(model: LlamaModel, chat: NormalizedChat): { parts: PromptPart[]; stops: string[] } {
  const wrapper = wrapperFor(model);
  const nonce = randomBytes(8).toString('hex');
  const marker = (i: number): string => `\u27e6llm2clip-image-${nonce}-${i}\u27e7`;
  const markerRe = new RegExp(`\u27e6llm2clip-image-${nonce}-(\\d+)\u27e7`, 'g');
  const text = (pieces: readonly Piece[]): string => pieces.map((p) => (p.kind === 'image' ? marker(p.image) : p.text)).join('\n');

  const history: ChatHistoryItem[] = [];
  if (chat.system !== undefined) history.push({ type: 'system', text: chat.system });
  for (const t of chat.turns) {
    if (t.role === 'user') history.push({ type: 'user', text: text(t.pieces) });
    else history.push({ type: 'model', response: [text(t.pieces)] });
  }
  history.push({ type: 'model', response: [] }); // the turn to generate: renders the generation prompt

  let state;
  try {
    state = wrapper.generateContextState({ chatHistory: history });
  } catch (e) {
    throw new ChatError('TEMPLATE', `rendering this GGUF's chat template failed: ${(e as Error).message}`, { cause: e });
  }

  // Split the rendered text into chunks between image markers.
  const chunks: LlamaTextValue[][] = [[]];
  const order: number[] = [];
  for (const v of state.contextText.values) {
    if (typeof v !== 'string') {
      if (v instanceof SpecialTokensText && markerRe.test(v.value)) {
        throw new ChatError('TEMPLATE', 'the GGUF chat template moved an image marker into special-token text; cannot place the image');
      }
      markerRe.lastIndex = 0;
      chunks[chunks.length - 1]!.push(v);
      continue;
    }
    let last = 0;
    for (const m of v.matchAll(markerRe)) {
      if (m.index > last) chunks[chunks.length - 1]!.push(v.slice(last, m.index));
      order.push(Number(m[1]));
      chunks.push([]);
      last = m.index + m[0].length;
    }
    if (last < v.length) chunks[chunks.length - 1]!.push(v.slice(last));
  }
  if (order.length !== chat.images.length || order.some((img, i) => img !== i)) {
    throw new ChatError(
      'TEMPLATE',
      `the GGUF chat template rendered image markers [${order.join(', ')}] for ${chat.images.length} image(s); ` +
        'it must keep message text intact (each image exactly once, in order)',
    );
  }

  const parts: PromptPart[] = [];
  chunks.forEach((values, i) => {
    if (i > 0) parts.push({ kind: 'image', image: order[i - 1]! });
    const tokens = LlamaText(values).tokenize(model.tokenizer, i === 0 ? undefined : 'trimLeadingSpace');
    if (tokens.length > 0) parts.push({ kind: 'tokens', tokens: [...tokens] });
  });

  const stops = new Set<string>();
  for (const trigger of state.stopGenerationTriggers) {
    const s = trigger.values
      .map((v) => (typeof v === 'string' ? v : v instanceof SpecialToken ? model.detokenize(model.tokenize(v.value, 'builtin'), true) : v.value))
      .join('');
    if (s.length > 0) stops.add(s);
  }
  return { parts, stops: [...stops] };
}
