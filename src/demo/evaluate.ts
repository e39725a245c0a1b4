/**
 * Held-out accuracy of a demo model through the real runtime: tower ONNX → projector → node-llama-cpp with
 * image-embedding injection → greedy answer, compared with the reference answer after trimming and
 * lowercasing (normalizeAnswer). Used by the recipe's eval step and by test/demo/e2e.test.ts.
 */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

import { VisionLanguageModel } from '../chat/vlm.js';
import type { ChatMessage } from '../chat/messages.js';
import type { ChatSample } from './conversations.js';
import type { DemoQuestion } from './dataset.js';
import type { DemoModelPaths } from './model.js';
import { normalizeAnswer } from './world.js';

export interface DemoEvalReport {
  questions: number;
  correct: number;
  accuracy: number;
  byType: Record<string, { questions: number; correct: number; accuracy: number }>;
  byObjects: Record<string, { questions: number; correct: number; accuracy: number }>;
  mistakes: { id: string; question: string; expected: string; got: string }[];
}

export function readQuestions(file: string): DemoQuestion[] {
  return JSON.parse(readFileSync(file, 'utf8')) as DemoQuestion[];
}

/** Loads the three parts on the CPU with settings that keep a CI run small and deterministic. */
export async function loadDemoModel(paths: DemoModelPaths, threads = 2): Promise<VisionLanguageModel> {
  return VisionLanguageModel.load({
    ...paths,
    gpu: false,
    maxThreads: threads,
    towerSession: { threads: 1 },
    contextSize: 256,
  });
}

const tally = (m: DemoEvalReport['byType'], key: string, ok: boolean): void => {
  const t = (m[key] ??= { questions: 0, correct: 0, accuracy: 0 });
  t.questions++;
  if (ok) t.correct++;
  t.accuracy = t.correct / t.questions;
};

/** Image bytes by file name: a directory of PNGs, or anything else that can produce them (the test renders). */
export type ImageSource = (name: string) => Uint8Array | Promise<Uint8Array>;

export function imageDirSource(dir: string): ImageSource {
  return (name) => readFileSync(join(dir, basename(name)));
}

/** Asks every question about its image (greedy, a few tokens) and scores exact matches. */
export async function evaluateDemo(vlm: VisionLanguageModel, questions: readonly DemoQuestion[], images: ImageSource, maxTokens = 8): Promise<DemoEvalReport> {
  const report: DemoEvalReport = { questions: 0, correct: 0, accuracy: 0, byType: {}, byObjects: {}, mistakes: [] };
  const urls = new Map<string, string>();
  for (const q of questions) {
    let url = urls.get(q.image);
    if (url === undefined) {
      url = `data:image/png;base64,${Buffer.from(await images(q.image)).toString('base64')}`;
      urls.set(q.image, url);
    }
    const stream = vlm.chat([{ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: q.question }] }], { maxTokens, temperature: 0, seed: 0 });
    const { text } = await stream.result;
    const ok = normalizeAnswer(text) === normalizeAnswer(q.answer);
    report.questions++;
    if (ok) report.correct++;
    else report.mistakes.push({ id: q.id, question: q.question, expected: q.answer, got: text });
    tally(report.byType, q.type, ok);
    tally(report.byObjects, String(q.objects), ok);
  }
  report.accuracy = report.questions === 0 ? 0 : report.correct / report.questions;
  return report;
}

export interface ChatEvalReport {
  turns: number;
  correct: number;
  accuracy: number;
  byKind: Record<string, { questions: number; correct: number; accuracy: number }>;
  mistakes: { id: string; turn: number; question: string; expected: string; got: string }[];
}

/**
 * Held-out conversations through the runtime, turn by turn: each turn is asked with the gold answers of
 * the earlier turns in the history (as a client replays a conversation), greedy, scored by exact match.
 */
export async function evaluateChats(vlm: VisionLanguageModel, samples: readonly ChatSample[], images: ImageSource, maxTokens = 16): Promise<ChatEvalReport> {
  const report: ChatEvalReport = { turns: 0, correct: 0, accuracy: 0, byKind: {}, mistakes: [] };
  for (const s of samples) {
    const urls = await Promise.all(s.images.map(async (name) => `data:image/png;base64,${Buffer.from(await images(name)).toString('base64')}`));
    const history: ChatMessage[] = [];
    for (const [k, t] of s.turns.entries()) {
      history.push(
        k === 0
          ? { role: 'user', content: [...urls.map((url) => ({ type: 'image_url' as const, image_url: { url } })), { type: 'text', text: t.question }] }
          : { role: 'user', content: t.question },
      );
      const { text } = await vlm.chat(history, { maxTokens, temperature: 0, seed: 0 }).result;
      const ok = normalizeAnswer(text) === normalizeAnswer(t.answer);
      report.turns++;
      if (ok) report.correct++;
      else report.mistakes.push({ id: s.id, turn: k, question: t.question, expected: t.answer, got: text });
      tally(report.byKind, s.kind, ok);
      history.push({ role: 'assistant', content: t.answer });
    }
  }
  report.accuracy = report.turns === 0 ? 0 : report.correct / report.turns;
  return report;
}
