/**
 * OpenAI-shaped chat messages, validated at the edge: roles system/user/assistant, content as a string
 * or as parts (`text`, `image_url`). Images are kept as the caller's URL strings here; which URLs may be
 * read is the image loader's policy (see images.ts), not the schema's.
 */
import { z } from 'zod';

export const textPartSchema = z.object({ type: z.literal('text'), text: z.string() });
export const imagePartSchema = z.object({
  type: z.literal('image_url'),
  image_url: z.union([
    z.object({ url: z.string().min(1), detail: z.enum(['auto', 'low', 'high']).optional() }),
    // Some clients send the URL as a bare string.
    z.string().min(1).transform((url) => ({ url })),
  ]),
});
export const contentPartSchema = z.discriminatedUnion('type', [textPartSchema, imagePartSchema]);

export const chatMessageSchema = z.object({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.union([z.string(), z.array(contentPartSchema)]),
});

export const chatMessagesSchema = z.array(chatMessageSchema).min(1, 'messages must not be empty');

export type ContentPart = z.infer<typeof contentPartSchema>;
export type ChatMessage = z.input<typeof chatMessageSchema>;
export type ParsedChatMessage = z.infer<typeof chatMessageSchema>;

export class ChatInputError extends Error {
  override name = 'ChatInputError';
}

/** A message's content as ordered parts: text, or a reference to image number `image` of the conversation. */
export type Piece = { kind: 'text'; text: string } | { kind: 'image'; image: number };

export interface NormalizedChat {
  readonly system?: string;
  readonly turns: readonly { role: 'user' | 'assistant'; pieces: readonly Piece[] }[];
  /** Image URLs in order of appearance; Piece.image indexes this list. */
  readonly images: readonly string[];
}

/**
 * Validates and flattens messages. System messages must come first (templates put the system prompt in
 * one place); several leading ones (e.g. a system and a developer message) are joined with a blank line.
 * Images may appear in user messages only; the conversation must end with a user turn.
 */
export function normalizeChat(raw: unknown): NormalizedChat {
  const r = chatMessagesSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new ChatInputError(`messages${i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')}: ${i.message}`);
  }
  const images: string[] = [];
  let system: string | undefined;
  const turns: { role: 'user' | 'assistant'; pieces: Piece[] }[] = [];
  r.data.forEach((m, idx) => {
    const parts = typeof m.content === 'string' ? [{ type: 'text' as const, text: m.content }] : m.content;
    if (m.role === 'system') {
      if (turns.length > 0) throw new ChatInputError(`messages[${idx}]: system (and developer) messages are only allowed before the first user or assistant message`);
      if (parts.some((p) => p.type !== 'text')) throw new ChatInputError(`messages[${idx}]: a system message may only hold text`);
      const text = parts.map((p) => (p.type === 'text' ? p.text : '')).join('\n');
      system = system === undefined ? text : `${system}\n\n${text}`;
      return;
    }
    const pieces: Piece[] = parts.map((p) => {
      if (p.type === 'text') return { kind: 'text', text: p.text };
      if (m.role !== 'user') throw new ChatInputError(`messages[${idx}]: images are only allowed in user messages`);
      images.push(p.image_url.url);
      return { kind: 'image', image: images.length - 1 };
    });
    turns.push({ role: m.role, pieces });
  });
  if (turns.length === 0 || turns[turns.length - 1]!.role !== 'user') {
    throw new ChatInputError('messages: the conversation must end with a user message');
  }
  return { system, turns, images };
}
