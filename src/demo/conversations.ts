/**
 * Conversation formats of the demo world, beyond one question about one picture — what chat clients send:
 *   single  one picture, one question (the base skill, kept in the mix so it is not forgotten)
 *   multi   one picture, 2–3 questions in turns (the picture only in the first turn, LLaVA style)
 *   two     two pictures in one message, 1–2 questions about objects that are unambiguous across both
 *           (the colour of the only star in either picture, whether a red circle is in either, …)
 *   json    one picture, a question asking for JSON: the answer is {"answer": "<the plain answer>"}, the
 *           shape a `response_format` json_schema with an `answer` property constrains it to.
 * Used to fine-tune the demo model for chat use and, on a held-out stream, to check it.
 */
import {
  askQuestion, askQuestions, randomScene, splitRng,
  type QuestionType, type Rng, type Scene, type SceneObject, type WorldOptions,
} from './world.js';

export const CHAT_KINDS = ['single', 'multi', 'two', 'json'] as const;
export type ChatKind = (typeof CHAT_KINDS)[number];

export interface ChatTurn {
  question: string;
  answer: string;
  type: QuestionType;
}

export interface ChatSample {
  id: string;
  kind: ChatKind;
  /** image file names, in the order the pictures appear in the first message */
  images: string[];
  turns: ChatTurn[];
}

/** What a held-out conversation sends (OpenAI-shaped messages): gold answers in the history. */
export const JSON_REQUESTS = ['Answer in JSON.', 'Reply with JSON.', 'Respond in JSON.'] as const;
export const jsonAnswer = (answer: string): string => JSON.stringify({ answer }).replace('":"', '": "');

/** Types that stay well defined when the question is about two pictures at once. */
const TWO_PICTURE_TYPES: readonly QuestionType[] = ['colour', 'shape', 'where', 'exists'];

export interface ChatMix {
  single: number;
  multi: number;
  two: number;
  json: number;
}

export const DEFAULT_MIX: ChatMix = { single: 0.3, multi: 0.4, two: 0.17, json: 0.13 };

export interface ChatSplitOptions extends WorldOptions {
  mix?: ChatMix;
  /** objects per picture in two-picture samples (default 1–2: at most four objects in all) */
  twoMaxObjects?: number;
}

function kindOf(r: Rng, mix: ChatMix): ChatKind {
  const total = mix.single + mix.multi + mix.two + mix.json;
  let x = r() * total;
  for (const k of CHAT_KINDS) {
    x -= mix[k];
    if (x < 0) return k;
  }
  return 'single';
}

/**
 * Questions about two pictures at once, asked of the union of their objects. `where` answers the position
 * inside the picture that holds the object (cells are per picture).
 */
function askAboutTwo(r: Rng, a: Scene, b: Scene, n: number): ChatTurn[] {
  const union: Scene = { background: a.background, objects: [...a.objects, ...b.objects] as SceneObject[] };
  const out: ChatTurn[] = [];
  const seen = new Set<string>();
  for (let tries = 0; out.length < n && tries < 16; tries++) {
    const type = TWO_PICTURE_TYPES[Math.floor(r() * TWO_PICTURE_TYPES.length)]!;
    const q = askQuestion(r, union, type);
    if (!q || seen.has(q.question)) continue;
    seen.add(q.question);
    out.push({ question: q.question, answer: q.answer, type });
  }
  return out;
}

/** n conversations of one split, deterministic by seed; the stream is disjoint from the QA and tower sets. */
export function chatSplit(split: 'train' | 'heldout', n: number, seed: number, o: ChatSplitOptions = {}): { scenes: Map<string, Scene>; samples: ChatSample[] } {
  const r = splitRng(seed ^ 0x3c3c3c3c, split);
  const mix = o.mix ?? DEFAULT_MIX;
  const scenes = new Map<string, Scene>();
  const samples: ChatSample[] = [];
  let pictures = 0;
  const picture = (scene: Scene): string => {
    const name = `chat-${split}-${String(pictures++).padStart(6, '0')}.png`;
    scenes.set(name, scene);
    return name;
  };
  while (samples.length < n) {
    const kind = kindOf(r, mix);
    const id = `chat-${split}-${samples.length}`;
    if (kind === 'two') {
      const w = { minObjects: 1, maxObjects: o.twoMaxObjects ?? 2 };
      const a = randomScene(r, w);
      const b = randomScene(r, w);
      const turns = askAboutTwo(r, a, b, r() < 0.5 ? 1 : 2);
      if (turns.length === 0) continue;
      samples.push({ id, kind, images: [picture(a), picture(b)], turns });
      continue;
    }
    const scene = randomScene(r, o);
    const k = kind === 'multi' ? (r() < 0.5 ? 2 : 3) : 1;
    const qs = askQuestions(r, scene, k, o.types);
    if (qs.length < k) continue;
    const turns = qs.map((q) => ({ question: q.question, answer: q.answer, type: q.type }));
    if (kind === 'json') {
      const t = turns[0]!;
      turns[0] = { ...t, question: `${t.question} ${JSON_REQUESTS[Math.floor(r() * JSON_REQUESTS.length)]!}`, answer: jsonAnswer(t.answer) };
    }
    samples.push({ id, kind, images: [picture(scene)], turns });
  }
  return { scenes, samples };
}

export interface LlavaChatEntry {
  id: string;
  image: string | string[];
  conversations: { from: 'human' | 'gpt'; value: string }[];
}

/** LLaVA format: pictures as `<image>` markers at the start of the first message (a list when two). */
export function chatToLlava(s: ChatSample): LlavaChatEntry {
  const conversations = s.turns.flatMap((t, i) => [
    { from: 'human' as const, value: i === 0 ? `${s.images.map(() => '<image>\n').join('')}${t.question}` : t.question },
    { from: 'gpt' as const, value: t.answer },
  ]);
  return { id: s.id, image: s.images.length === 1 ? s.images[0]! : s.images, conversations };
}
