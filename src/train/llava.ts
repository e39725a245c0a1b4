/**
 * LLaVA-format training data: `[{id, image, conversations: [{from: "human", value: "<image>\n..."},
 * {from: "gpt", value: "..."}, ...]}, ...]` (a JSON array, or JSON Lines with one sample per line),
 * validated with zod and turned into the chat pipeline's NormalizedChat.
 *
 * Like LLaVA's preprocess_multimodal, the `<image>` marker is taken out of its message and the image is
 * put first in that message ("<image>\n" + the stripped text) — which is also how a chat message with an
 * image part followed by text renders at serving time (templates join a message's parts with "\n").
 * Multi-image samples (LLaVA-OneVision / -Interleave: `image` is a list) keep every marker where it is:
 * the k-th `<image>` of the conversation is `image[k]`, and the text between markers becomes text parts,
 * as a message with interleaved image and text parts renders when served.
 */
import * as fs from 'node:fs';
import { z } from 'zod';

import type { NormalizedChat, Piece } from '../chat/messages.js';
import { IMAGE_MARKER } from '../chat/templates.js';

export class DatasetError extends Error {
  override name = 'DatasetError';
}

const turnSchema = z.object({ from: z.string().min(1), value: z.string() });
export const llavaSampleSchema = z.looseObject({
  id: z.union([z.string().min(1), z.number()]).transform(String),
  image: z.union([z.string().min(1, 'image must be a non-empty path'), z.array(z.string().min(1, 'image must be a non-empty path')).min(1, 'image list is empty')]),
  conversations: z.array(turnSchema).min(2, 'a conversation needs at least a human turn and a gpt answer'),
});
export type LlavaSample = z.infer<typeof llavaSampleSchema>;

/** The sample's image paths in marker order (one for classic LLaVA samples). */
export const sampleImages = (s: LlavaSample): string[] => (typeof s.image === 'string' ? [s.image] : s.image);

const USER = new Set(['human', 'user']);
const ASSISTANT = new Set(['gpt', 'assistant', 'model']);

/** Parses and validates a dataset file; errors name the sample (index and id) and the field. */
export function readLlavaDataset(file: string): { samples: LlavaSample[]; bytes: Buffer } {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new DatasetError(`${file}: cannot read the dataset (${(e as Error).message})`);
  }
  const text = bytes.toString('utf8');
  let raw: unknown[];
  if (/\.jsonl$/i.test(file)) {
    raw = [];
    text.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      try {
        raw.push(JSON.parse(line));
      } catch (e) {
        throw new DatasetError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
      }
    });
  } else {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new DatasetError(`${file}: not valid JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(json)) throw new DatasetError(`${file}: expected a JSON array of LLaVA samples ({id, image, conversations})`);
    raw = json;
  }
  if (raw.length === 0) throw new DatasetError(`${file}: the dataset holds no samples`);
  const seen = new Set<string>();
  const samples = raw.map((s, i) => {
    const r = llavaSampleSchema.safeParse(s);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      const id = typeof s === 'object' && s !== null && 'id' in s ? ` (id ${JSON.stringify((s as { id: unknown }).id)})` : '';
      throw new DatasetError(`${file}: sample ${i}${id}: ${issue.path.join('.') || 'sample'}: ${issue.message}`);
    }
    if (seen.has(r.data.id)) throw new DatasetError(`${file}: sample ${i}: duplicate id ${JSON.stringify(r.data.id)}`);
    seen.add(r.data.id);
    return r.data;
  });
  return { samples, bytes };
}

/**
 * A sample as a NormalizedChat (image 0 = the sample's image). The conversation must alternate human /
 * gpt turns, start with a human turn (after an optional system turn), end with a gpt answer, and hold
 * one `<image>` marker per image, in human turns.
 */
export function sampleToChat(s: LlavaSample): NormalizedChat {
  const where = `sample ${JSON.stringify(s.id)}`;
  let convs = s.conversations;
  let system: string | undefined;
  if (convs[0]!.from === 'system') {
    system = convs[0]!.value;
    convs = convs.slice(1);
  }
  const images = sampleImages(s);
  let markers = 0;
  const turns = convs.map((t, i) => {
    const user = USER.has(t.from);
    if (!user && !ASSISTANT.has(t.from)) throw new DatasetError(`${where}: conversations[${i}].from is ${JSON.stringify(t.from)}; expected "human" or "gpt"`);
    if (user !== (i % 2 === 0)) {
      throw new DatasetError(`${where}: conversations[${i}] is a ${user ? 'human' : 'gpt'} turn; turns must alternate, starting with human`);
    }
    const count = t.value.split(IMAGE_MARKER).length - 1;
    if (count > 0 && !user) throw new DatasetError(`${where}: conversations[${i}]: <image> in a gpt turn`);
    const first = markers;
    markers += count;
    if (count === 0) return { role: user ? ('user' as const) : ('assistant' as const), pieces: [{ kind: 'text', text: t.value }] as Piece[] };
    if (images.length === 1) {
      const text = t.value.replaceAll(IMAGE_MARKER, '').trim();
      const pieces: Piece[] = [{ kind: 'image', image: 0 }];
      if (text.length > 0) pieces.push({ kind: 'text', text });
      return { role: 'user' as const, pieces };
    }
    const pieces: Piece[] = [];
    t.value.split(IMAGE_MARKER).forEach((chunk, k) => {
      if (k > 0) pieces.push({ kind: 'image', image: first + k - 1 });
      const text = chunk.trim();
      if (text.length > 0) pieces.push({ kind: 'text', text });
    });
    return { role: 'user' as const, pieces };
  });
  if (markers === 0) throw new DatasetError(`${where}: no <image> marker in any human turn (each sample must place its image)`);
  if (markers !== images.length) {
    throw new DatasetError(`${where}: ${markers} <image> markers for ${images.length} image${images.length === 1 ? '' : 's'}; each image needs exactly one marker`);
  }
  if (turns.length % 2 !== 0) throw new DatasetError(`${where}: the conversation ends with a human turn that has no gpt answer`);
  return { ...(system !== undefined ? { system } : {}), turns, images };
}
