/**
 * `llm2clip chat`: one question about zero or more images, answered by tower → projector → LLM, streamed
 * to stdout. Image files named on the command line are read here (the user chose them); the pipeline
 * itself only sees their bytes, under keys no message text can name.
 */
import { readFileSync } from 'node:fs';

import { z } from 'zod';

import { bytesLoader, TEMPLATE_CHOICES, VisionLanguageModel, type ChatMessage, type TemplateChoice } from '../chat/index.js';
import { findDemoModel } from '../demo/model.js';
import { loadImageBytes } from '../image/decode.js';
import { flag, parse, positiveInt, UsageError } from './args.js';

export const CHAT_USAGE =
  'llm2clip chat [--tower DIR --projector DIR --llm FILE.gguf] [--image IMG]... [--system TEXT] "question"\n' +
  '    (without --tower/--projector/--llm: the bundled demo model in models/demo)\n' +
  '    [--template gguf|vicuna_v1|llava_v1|llama3|chatml] [--max-tokens N] [--temperature T] [--top-p P] [--top-k K]\n' +
  '    [--seed N] [--stop TEXT]... [--json-schema FILE] [--context-size N] [--gpu auto|cuda|vulkan|metal|off]\n' +
  '    [--threads N] [--provider cpu|cuda] [--stats]';

const nonEmpty = z.string().min(1);
const number = z.coerce.number().refine(Number.isFinite, 'must be a number');

function readJsonSchema(file: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`--json-schema ${file}: cannot read it as JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UsageError(`--json-schema ${file}: a JSON schema must be an object`);
  return raw as Record<string, unknown>;
}

export async function cmdChat(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    tower: { type: 'string' },
    projector: { type: 'string' },
    llm: { type: 'string' },
    image: { type: 'string', multiple: true },
    system: { type: 'string' },
    template: { type: 'string' },
    'max-tokens': { type: 'string' },
    temperature: { type: 'string' },
    'top-p': { type: 'string' },
    'top-k': { type: 'string' },
    seed: { type: 'string' },
    stop: { type: 'string', multiple: true },
    'json-schema': { type: 'string' },
    'context-size': { type: 'string' },
    gpu: { type: 'string' },
    threads: { type: 'string' },
    provider: { type: 'string' },
    stats: { type: 'boolean' },
  });
  if (positionals.length !== 1) throw new UsageError(`chat takes exactly one question (got ${positionals.length}); quote it\n  ${CHAT_USAGE}`);
  const question = positionals[0]!;
  if (question.trim() === '') throw new UsageError('the question is empty');
  const opt = <T>(name: string, schema: z.ZodType<T>): T | undefined => (values[name] === undefined ? undefined : flag(values, name, schema));

  const imagePaths = (values.image as string[] | undefined) ?? [];
  const images = new Map<string, Uint8Array>();
  for (const [i, p] of imagePaths.entries()) images.set(`cli-image:${i}`, await loadImageBytes(p));
  const gpu = opt('gpu', z.enum(['auto', 'cuda', 'vulkan', 'metal', 'off']).transform((g) => (g === 'off' ? false : g)));
  const threads = opt('threads', positiveInt);
  const provider = opt('provider', z.enum(['cpu', 'cuda']));
  const towerSession = { ...(provider ? { executionProvider: provider } : {}), ...(threads ? { threads } : {}) };
  const template = opt('template', z.enum(TEMPLATE_CHOICES as [TemplateChoice, ...TemplateChoice[]]));
  const chatOptions = {
    maxTokens: opt('max-tokens', positiveInt),
    temperature: opt('temperature', number.pipe(z.number().min(0))),
    topP: opt('top-p', number.pipe(z.number().gt(0).max(1))),
    topK: opt('top-k', z.coerce.number().int().min(0)),
    seed: opt('seed', z.coerce.number().int().min(0).max(0xffffffff)),
    stop: values.stop as string[] | undefined,
    jsonSchema: values['json-schema'] === undefined ? undefined : readJsonSchema(flag(values, 'json-schema', nonEmpty)),
  };

  // No model named at all: the bundled demo model (models/demo); naming some parts requires all three.
  const demo = values.tower === undefined && values.projector === undefined && values.llm === undefined;
  const parts = demo
    ? findDemoModel()
    : { tower: flag(values, 'tower', nonEmpty), projector: flag(values, 'projector', nonEmpty), llm: flag(values, 'llm', nonEmpty) };
  if (!parts) throw new UsageError(`no model given (--tower, --projector, --llm) and the bundled demo model is missing\n  ${CHAT_USAGE}`);
  const vlm = await VisionLanguageModel.load({
    ...parts,
    ...(gpu !== undefined ? { gpu } : {}),
    ...(threads !== undefined ? { maxThreads: threads } : {}),
    towerSession,
    ...(template ? { template } : {}),
    contextSize: opt('context-size', positiveInt),
    imageLoader: bytesLoader(images),
  });
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once('SIGINT', onSigint); // Ctrl-C stops generation and still prints the stats
  try {
    const messages: ChatMessage[] = [];
    if (values.system !== undefined) messages.push({ role: 'system', content: flag(values, 'system', z.string()) });
    // LLaVA's layout: the images first, then the question
    messages.push({ role: 'user', content: [...[...images.keys()].map((url) => ({ type: 'image_url' as const, image_url: { url } })), { type: 'text', text: question }] });
    const defined = Object.fromEntries(Object.entries(chatOptions).filter(([, v]) => v !== undefined));
    const stream = vlm.chat(messages, { ...defined, signal: controller.signal });
    for await (const delta of stream) process.stdout.write(delta);
    const r = await stream.result;
    process.stdout.write('\n');
    if (r.finishReason !== 'stop') process.stderr.write(`[finished: ${r.finishReason}]\n`);
    if (values.stats) process.stderr.write(JSON.stringify({ finishReason: r.finishReason, seed: r.seed, template: r.template, usage: r.usage }) + '\n');
  } finally {
    process.off('SIGINT', onSigint);
    await vlm.dispose();
  }
}
