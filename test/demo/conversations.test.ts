// The demo world's conversation formats: every gold answer re-derived from the pictures' objects by an
// independent reading of the question, the JSON answer format, the LLaVA form (markers per picture), and
// determinism by seed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { chatSplit, chatToLlava, jsonAnswer, CHAT_KINDS } from '../../src/demo/conversations.js';
import { POSITIONS, type Scene, type SceneObject } from '../../src/demo/world.js';
import { readLlavaDataset, sampleToChat } from '../../src/train/llava.js';

/** The answer a careful reader gives, from the objects only (null: ambiguous; undefined: a type not read here). */
function readAnswer(question: string, objects: readonly SceneObject[]): string | null | undefined {
  const q = question.replace(/ (Answer in JSON|Reply with JSON|Respond in JSON)\.$/, '');
  let m = /^(?:What colou?r is|Which colour is) the (\w+)\?$/.exec(q);
  if (m) {
    const hits = objects.filter((o) => o.shape === m![1]);
    return hits.length === 1 ? hits[0]!.colour : null;
  }
  m = /^(?:What shape is the (\w+) object|What is the shape of the (\w+) object|Which shape is (\w+))\?$/.exec(q);
  if (m) {
    const c = m[1] ?? m[2] ?? m[3];
    const hits = objects.filter((o) => o.colour === c);
    return hits.length === 1 ? hits[0]!.shape : null;
  }
  m = /^Where is the (\w+) (\w+)(?: in the picture)?\?$/.exec(q);
  if (m) {
    const hits = objects.filter((o) => o.colour === m![1] && o.shape === m![2]);
    return hits.length === 1 ? POSITIONS[hits[0]!.cell]! : null;
  }
  m = /^Is there an? (\w+) (\w+)(?: in the picture)?\?$/.exec(q);
  if (m) return objects.some((o) => o.colour === m![1] && o.shape === m![2]) ? 'yes' : 'no';
  return undefined;
}

describe('conversation formats of the demo world', () => {
  const { scenes, samples } = chatSplit('train', 600, 5, { minObjects: 1, maxObjects: 3 });
  const objectsOf = (names: string[]): SceneObject[] => names.flatMap((n) => (scenes.get(n) as Scene).objects);

  it('draws every kind, deterministically by seed, on pictures no other split uses', () => {
    const kinds = new Set(samples.map((s) => s.kind));
    expect([...kinds].sort()).toEqual([...CHAT_KINDS].sort());
    expect(chatSplit('train', 600, 5, { minObjects: 1, maxObjects: 3 }).samples).toEqual(samples);
    const held = chatSplit('heldout', 50, 5, { minObjects: 1, maxObjects: 3 });
    expect(JSON.stringify([...held.scenes.values()])).not.toContain(JSON.stringify([...scenes.values()][0]));
  });

  it('two-picture questions have one right answer over both pictures, and it is the gold one', () => {
    const two = samples.filter((s) => s.kind === 'two');
    expect(two.length).toBeGreaterThan(60);
    let checked = 0;
    for (const s of two) {
      expect(s.images).toHaveLength(2);
      expect(s.images[0]).not.toBe(s.images[1]);
      for (const t of s.turns) {
        const want = readAnswer(t.question, objectsOf(s.images));
        expect(want, `${s.id}: ${t.question}`).toBeTypeOf('string');
        expect(t.answer, `${s.id}: ${t.question}`).toBe(want);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(two.length);
  });

  it('json answers are {"answer": …} around the plain answer; multi-turn samples ask 2-3 different questions', () => {
    for (const s of samples.filter((x) => x.kind === 'json')) {
      const t = s.turns[0]!;
      expect(t.question).toMatch(/ (Answer in|Reply with|Respond in) JSON\.$/);
      expect(t.answer).toMatch(/^\{"answer": "[a-z ]+"\}$/);
      const plain = (JSON.parse(t.answer) as { answer: string }).answer;
      const read = readAnswer(t.question, objectsOf(s.images));
      if (read !== undefined) expect(plain).toBe(read);
      else expect(plain.length).toBeGreaterThan(0);
    }
    expect(jsonAnswer('top left')).toBe('{"answer": "top left"}');
    for (const s of samples.filter((x) => x.kind === 'multi')) {
      expect(s.turns.length).toBeGreaterThanOrEqual(2);
      expect(s.turns.length).toBeLessThanOrEqual(3);
      expect(new Set(s.turns.map((t) => t.question)).size).toBe(s.turns.length);
    }
  });

  it('LLaVA form: one <image> per picture at the start of the first message; the trainer reads it back', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-llava-'));
    try {
      const entries = samples.slice(0, 80).map(chatToLlava);
      const file = path.join(dir, 'train.json');
      fs.writeFileSync(file, JSON.stringify(entries));
      const { samples: back } = readLlavaDataset(file);
      back.forEach((b, i) => {
        const s = samples[i]!;
        const chat = sampleToChat(b);
        expect(chat.images).toEqual(s.images);
        expect(chat.turns).toHaveLength(2 * s.turns.length);
        const first = chat.turns[0]!.pieces;
        expect(first.slice(0, s.images.length)).toEqual(s.images.map((_, k) => ({ kind: 'image', image: k })));
        expect(first.at(-1)).toEqual({ kind: 'text', text: s.turns[0]!.question });
        expect(chat.turns.slice(1).every((t) => t.pieces.every((p) => p.kind === 'text'))).toBe(true);
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
