/**
 * Validation of chat and load options at the API edge (zod), with errors that name the option.
 * Sampling defaults: temperature 0.8, top-k 40, top-p 0.95 (llama.cpp's), min-p 0 (node-llama-cpp's).
 */
import { z } from 'zod';

import { ChatError } from './errors.js';
import { TEMPLATE_CHOICES, type TemplateChoice } from './prompt.js';

const templateSchema = z.enum(TEMPLATE_CHOICES as [TemplateChoice, ...TemplateChoice[]]);

export const chatOptionsSchema = z
  .object({
    /** most tokens to generate; also capped by the free space of the sequence */
    maxTokens: z.number().int().positive().default(512),
    /** 0 = greedy */
    temperature: z.number().min(0).max(100).default(0.8),
    topP: z.number().gt(0).max(1).default(0.95),
    /** 0 = off */
    topK: z.number().int().min(0).default(40),
    minP: z.number().min(0).max(1).default(0),
    /** sampling seed; a random one is drawn (and reported in the result) when absent */
    seed: z.number().int().min(0).max(0xffffffff).optional(),
    /** extra stop strings, on top of the template's */
    stop: z.array(z.string().min(1, 'stop strings must not be empty')).max(16).default([]),
    /** constrain the output to JSON matching this schema (node-llama-cpp's GBNF JSON-schema subset) */
    jsonSchema: z.record(z.string(), z.unknown()).optional(),
    /** overrides the model's default template for this chat */
    template: templateSchema.optional(),
    signal: z.instanceof(AbortSignal).optional(),
  })
  .strict();

export type ChatOptions = z.input<typeof chatOptionsSchema>;
export type ResolvedChatOptions = z.output<typeof chatOptionsSchema>;

export function parseWith<T>(schema: z.ZodType<T>, raw: unknown, what: string): T {
  const r = schema.safeParse(raw ?? {});
  if (r.success) return r.data;
  const i = r.error.issues[0]!;
  const path = i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
  throw new ChatError('OPTIONS', `${what}${path}: ${i.message}`);
}

export function parseChatOptions(raw: unknown): ResolvedChatOptions {
  return parseWith(chatOptionsSchema, raw, 'options');
}

const nonEmpty = z.string().min(1);

export const loadOptionsSchema = z
  .object({
    /** converted tower directory (llm2clip convert) */
    tower: nonEmpty,
    /** projector directory (projector.json + projector.safetensors) */
    projector: nonEmpty,
    /** GGUF file of the LLM */
    llm: nonEmpty,
    /** node-llama-cpp GPU choice; 'auto' uses a GPU build when one is available */
    gpu: z.union([z.enum(['auto', 'cuda', 'vulkan', 'metal']), z.literal(false)]).default('auto'),
    /** llama.cpp threads (0 = node-llama-cpp's default: all cores) */
    maxThreads: z.number().int().min(0).optional(),
    /** positions per sequence; default min(4096, the model's training context) */
    contextSize: z.number().int().min(16).optional(),
    /** sequences of the one context = chats that run at the same time */
    sequences: z.number().int().min(1).max(256).default(1),
    batchSize: z.number().int().min(1).optional(),
    /** default template; 'gguf' (the GGUF's own) when absent */
    template: templateSchema.optional(),
    /** byte budget of the projected-feature cache (default 256 MiB) */
    featureCacheBytes: z.number().int().min(0).default(256 * 2 ** 20),
    /** chats that may wait for a sequence before new ones are refused (default 64) */
    maxQueue: z.number().int().min(0).default(64),
    /** token id recorded at image positions (see placeholder.ts for the automatic choice) */
    placeholderToken: z.number().int().min(0).optional(),
    /** onnxruntime options for the tower and projector */
    towerSession: z
      .object({ executionProvider: z.enum(['cpu', 'cuda', 'tensorrt', 'dml', 'coreml', 'webgpu']).optional(), threads: z.number().int().positive().optional() })
      .strict()
      .optional(),
  })
  .passthrough(); // imageLoader / llama are functions and class instances, checked by hand

export type ResolvedLoadOptions = z.output<typeof loadOptionsSchema>;
