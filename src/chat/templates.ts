/**
 * Named chat templates rendered to segments: plain text (tokenized literally, so user text can never
 * smuggle in control tokens), special tokens (tokenized with special-token parsing) and image slots.
 * This mirrors how Hugging Face tokenizers treat a rendered prompt: split at special tokens, tokenize
 * the text between them. `vicuna_v1` reproduces LLaVA's conversation.py byte for byte.
 */
import type { NormalizedChat, Piece } from './messages.js';

export type Segment = { kind: 'text'; text: string } | { kind: 'special'; text: string } | { kind: 'image'; image: number };

export const TEMPLATE_NAMES = ['vicuna_v1', 'llava_v1', 'llama3', 'chatml'] as const;
export type TemplateName = (typeof TEMPLATE_NAMES)[number];

/** LLaVA's image placeholder as it appears in prompt strings (used for display and golden tests). */
export const IMAGE_MARKER = '<image>';

class SegmentList {
  readonly items: Segment[] = [];
  text(t: string): this {
    if (t.length === 0) return this;
    const last = this.items[this.items.length - 1];
    if (last?.kind === 'text') last.text += t;
    else this.items.push({ kind: 'text', text: t });
    return this;
  }
  special(t: string): this {
    this.items.push({ kind: 'special', text: t });
    return this;
  }
  image(i: number): this {
    this.items.push({ kind: 'image', image: i });
    return this;
  }
  /** LLaVA's convention: parts of one message joined by "\n", so an image first gives "<image>\nquestion". */
  pieces(pieces: readonly Piece[], trim = false): this {
    pieces.forEach((p, i) => {
      if (i > 0) this.text('\n');
      if (p.kind === 'image') this.image(p.image);
      else this.text(trim && pieces.length === 1 ? p.text.trim() : p.text);
    });
    return this;
  }
}

const VICUNA_SYSTEM =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";
const LLAVA_SYSTEM =
  "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.";

/** conversation.py SeparatorStyle.TWO: system + sep, then "ROLE: msg" + [sep, sep2][i % 2], ending "ASSISTANT:". */
function vicuna(chat: NormalizedChat, defaultSystem: string): Segment[] {
  const s = new SegmentList().text((chat.system ?? defaultSystem) + ' ');
  chat.turns.forEach((t, i) => {
    s.text(t.role === 'user' ? 'USER: ' : 'ASSISTANT: ').pieces(t.pieces);
    if (i % 2 === 0) s.text(' ');
    else s.special('</s>');
  });
  return s.text('ASSISTANT:').items;
}

function llama3(chat: NormalizedChat): Segment[] {
  const s = new SegmentList().special('<|begin_of_text|>');
  const header = (role: string) => s.special('<|start_header_id|>').text(role).special('<|end_header_id|>').text('\n\n');
  if (chat.system !== undefined) header('system').text(chat.system.trim()).special('<|eot_id|>');
  for (const t of chat.turns) header(t.role).pieces(t.pieces, true).special('<|eot_id|>');
  header('assistant');
  return s.items;
}

function chatml(chat: NormalizedChat): Segment[] {
  const s = new SegmentList();
  const open = (role: string) => s.special('<|im_start|>').text(`${role}\n`);
  if (chat.system !== undefined) open('system').text(chat.system).special('<|im_end|>').text('\n');
  for (const t of chat.turns) open(t.role).pieces(t.pieces).special('<|im_end|>').text('\n');
  open('assistant');
  return s.items;
}

export function renderTemplate(name: TemplateName, chat: NormalizedChat): Segment[] {
  switch (name) {
    case 'vicuna_v1':
      return vicuna(chat, VICUNA_SYSTEM);
    case 'llava_v1':
      return vicuna(chat, LLAVA_SYSTEM);
    case 'llama3':
      return llama3(chat);
    case 'chatml':
      return chatml(chat);
  }
}

/** The prompt as one string with `<image>` markers, e.g. to compare with LLaVA's conv.get_prompt(). */
export function segmentsToString(segments: readonly Segment[]): string {
  return segments.map((s) => (s.kind === 'image' ? IMAGE_MARKER : s.text)).join('');
}

/** Stop strings a template ends an assistant turn with (used besides the model's EOG tokens). */
export function templateStops(name: TemplateName): string[] {
  switch (name) {
    case 'vicuna_v1':
    case 'llava_v1':
      return ['</s>'];
    case 'llama3':
      return ['<|eot_id|>'];
    case 'chatml':
      return ['<|im_end|>'];
  }
}
