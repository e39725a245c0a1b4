/**
 * The TypeScript steps of the demo recipe (models/demo/recipe/), run as `node dist/src/demo/run.js STEP`:
 *
 *   tokens --llm FILE.gguf --dataset FILE.json --out FILE.jsonl [--template gguf] [--image-tokens N]
 *       Tokenizes LLaVA-format conversations exactly as serving does (renderPrompt + planPrompt with the
 *       GGUF's tokenizer and chat template), so the LLM is pretrained on the very token layout it is
 *       served with. One JSON line per entry: {id, image, tokens (placeholder ids at image rows),
 *       image_start, image_len, answer (answer tokens + end-of-turn token)}.
 *
 *   eval --model DIR | (--tower DIR --projector DIR --llm FILE.gguf) (--questions FILE.json | --chats FILE.json) --images DIR [--out FILE.json] [--limit N]
 *       Held-out accuracy through the real runtime (VisionLanguageModel, greedy): single questions, or
 *       conversations (several turns, two pictures, JSON answers; conversations.ts) turn by turn.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { getLlama } from 'node-llama-cpp';
import { z } from 'zod';

import { flag, parse, positiveInt, UsageError } from '../cli/args.js';
import { normalizeChat } from '../chat/messages.js';
import { choosePlaceholder } from '../chat/placeholder.js';
import { planPrompt, renderPrompt, TEMPLATE_CHOICES, type TemplateChoice } from '../chat/prompt.js';
import type { ChatSample } from './conversations.js';
import type { LlavaEntry } from './dataset.js';
import { evaluateChats, evaluateDemo, imageDirSource, loadDemoModel, readQuestions } from './evaluate.js';

const nonEmpty = z.string().min(1);

export async function cmdDemoTokens(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    llm: { type: 'string' },
    dataset: { type: 'string' },
    out: { type: 'string' },
    template: { type: 'string' },
    'image-tokens': { type: 'string' },
  });
  const template = (values.template === undefined ? 'gguf' : flag(values, 'template', z.enum(TEMPLATE_CHOICES as [TemplateChoice, ...TemplateChoice[]]))) as TemplateChoice;
  const imageTokens = values['image-tokens'] === undefined ? 9 : flag(values, 'image-tokens', positiveInt);
  const entries = JSON.parse(readFileSync(flag(values, 'dataset', nonEmpty), 'utf8')) as LlavaEntry[];
  const llama = await getLlama({ gpu: false, build: 'never' });
  const model = await llama.loadModel({ modelPath: flag(values, 'llm', nonEmpty) });
  try {
    const placeholder = choosePlaceholder(model).token;
    const eot = model.tokens.eos;
    if (eot === null) throw new UsageError('the GGUF has no end-of-sequence token');
    const lines: string[] = [];
    for (const e of entries) {
      const human = e.conversations[0]?.value ?? '';
      const answer = e.conversations[1]?.value ?? '';
      if (!human.startsWith('<image>\n')) throw new UsageError(`${e.id}: expected "<image>\\n" before the question`);
      const chat = normalizeChat([{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:,' } }, { type: 'text', text: human.slice('<image>\n'.length) }] }]);
      const plan = planPrompt(renderPrompt(model, chat, template), ['image'], imageTokens, placeholder);
      const span = plan.spans[0]!;
      lines.push(JSON.stringify({ id: e.id, image: e.image, tokens: plan.tokens, image_start: span.start, image_len: span.length, answer: [...model.tokenize(answer, false), eot] }));
    }
    writeFileSync(flag(values, 'out', nonEmpty), lines.join('\n') + '\n');
    process.stderr.write(`tokenized ${lines.length} conversations (template ${template}, placeholder ${placeholder}, end ${eot})\n`);
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

export async function cmdDemoEval(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    model: { type: 'string' },
    tower: { type: 'string' },
    projector: { type: 'string' },
    llm: { type: 'string' },
    questions: { type: 'string' },
    chats: { type: 'string' },
    images: { type: 'string' },
    out: { type: 'string' },
    limit: { type: 'string' },
    threads: { type: 'string' },
  });
  if ((values.questions === undefined) === (values.chats === undefined)) throw new UsageError('give --questions FILE (single questions) or --chats FILE (held-out conversations)');
  const dir = values.model === undefined ? undefined : flag(values, 'model', nonEmpty);
  const paths = dir
    ? { tower: join(dir, 'tower'), projector: join(dir, 'projector'), llm: join(dir, 'llm.gguf') }
    : { tower: flag(values, 'tower', nonEmpty), projector: flag(values, 'projector', nonEmpty), llm: flag(values, 'llm', nonEmpty) };
  const limit = values.limit === undefined ? Infinity : flag(values, 'limit', positiveInt);
  const images = imageDirSource(flag(values, 'images', nonEmpty));
  const vlm = await loadDemoModel(paths, values.threads === undefined ? 2 : flag(values, 'threads', positiveInt));
  try {
    const t0 = performance.now();
    const report =
      values.chats !== undefined
        ? await evaluateChats(vlm, (JSON.parse(readFileSync(flag(values, 'chats', nonEmpty), 'utf8')) as ChatSample[]).slice(0, limit), images)
        : await evaluateDemo(vlm, readQuestions(flag(values, 'questions', nonEmpty)).slice(0, limit), images);
    const out = { ...report, seconds: (performance.now() - t0) / 1000 };
    const text = JSON.stringify({ ...out, mistakes: out.mistakes.slice(0, 40) }, null, 2);
    if (values.out !== undefined) writeFileSync(flag(values, 'out', nonEmpty), text + '\n');
    process.stdout.write(text + '\n');
  } finally {
    await vlm.dispose();
  }
}
