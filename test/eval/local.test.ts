/**
 * `eval run` in local mode (tower → projector → LLM, src/chat) on the tiny synthetic models of the chat
 * tests: the answers must equal what the library gives for the same greedy chat (image first, as a data
 * URL), and a resumed run must not load anything when all is answered.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runEval } from '../../eval/src/run.js';
import { VisionLanguageModel } from '../../src/chat/index.js';
import { dataUrl, pngBytes, prepareChatFixture, type ChatFixture } from '../chat/fixtures.js';

let f: ChatFixture;
beforeAll(async () => {
  f = await prepareChatFixture();
});
afterAll(async () => {
  await f?.cleanup();
});

describe('eval run --tower/--projector/--llm', () => {
  it('answers greedily with the local pipeline, like the library', async () => {
    const images = join(f.dir, 'eval-images');
    mkdirSync(images);
    const pngs = [await pngBytes(200, 30, 30), await pngBytes(30, 200, 30)];
    pngs.forEach((p, i) => writeFileSync(join(images, `i${i}.png`), p));
    const questions = join(f.dir, 'q.jsonl');
    writeFileSync(questions, [0, 1].map((i) => JSON.stringify({ question_id: i, image: `i${i}.png`, text: `What colour? ${i}` })).join('\n') + '\n');
    const out = join(f.dir, 'answers.jsonl');
    const backend = { kind: 'local' as const, tower: f.tower, projector: f.projector, llm: f.llm.path, llama: f.llama, contextSize: 512 };
    const s = await runEval({ questions, images, out, backend, maxTokens: 4, progress: false, log: () => undefined });
    expect(s).toMatchObject({ answered: 2, failed: 0, model_id: 'tiny' });

    const vlm = await VisionLanguageModel.load({ tower: f.tower, projector: f.projector, llm: f.llm.path, llama: f.llama, contextSize: 512 });
    try {
      const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { question_id: number; text: string; prompt: string });
      for (const l of lines) {
        const r = await vlm.chat(
          [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(pngs[l.question_id]!) } }, { type: 'text', text: l.prompt }] }],
          { maxTokens: 4, temperature: 0 },
        ).result;
        expect(l.text).toBe(r.text.trim());
      }
    } finally {
      await vlm.dispose();
    }
    // everything answered: a rerun loads no model at all (a bogus --llm would fail otherwise)
    const again = await runEval({ questions, images, out, backend: { ...backend, llm: join(f.dir, 'missing.gguf') }, progress: false, log: () => undefined });
    expect(again).toMatchObject({ already_answered: 2, answered: 0 });
  });
});
