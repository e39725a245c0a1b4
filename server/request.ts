/**
 * The chat-completions request body, validated whole by zod: every mistake is a 400 whose `param` is the
 * path of the offending field. Fields that would change the meaning of a request we cannot honour (tools,
 * logprobs, n > 1, penalties, audio) are refused by name rather than ignored; fields that change nothing
 * here (user, metadata, store, ...) are accepted; anything else is an unrecognized argument, as OpenAI does.
 */
import { z } from 'zod';

import type { ChatMessage, ChatOptions } from '../src/chat/index.js';
import { badRequest, formatPath, type HttpError } from './errors.js';

const unsupported = (what: string) => `${what} is not supported by this server`;

const textPart = z.object({ type: z.literal('text'), text: z.string() });
const imagePart = z.object({
  type: z.literal('image_url'),
  image_url: z.union(
    [
      z.object({ url: z.string().min(1, 'the image URL is empty'), detail: z.enum(['auto', 'low', 'high']).optional() }),
      // some clients send the URL as a bare string
      z.string().min(1, 'the image URL is empty').transform((url) => ({ url })),
    ],
    { error: 'image_url must be an object {url, detail?}' },
  ),
});
// what an assistant turn said when it refused (OpenAI's assistant content part); replayed as its text
const refusalPart = z.object({ type: z.literal('refusal'), refusal: z.string() });
const part = z.discriminatedUnion('type', [textPart, imagePart, refusalPart], {
  error: (iss) =>
    iss.code === 'invalid_union' && iss.note === 'No matching discriminator'
      ? 'unsupported content part type: this server accepts "text" and "image_url" parts'
      : undefined,
});

const message = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant'], {
      error: (iss) => (iss.input === 'tool' || iss.input === 'function' ? unsupported(`role "${String(iss.input)}" (tool calling)`) : 'role must be one of system, developer, user, assistant'),
    }),
    // null only for an assistant message (OpenAI allows it beside tool_calls, which are refused below)
    content: z.union([z.string(), z.array(part).max(100_000)], { error: 'content must be a string or an array of content parts' }).nullable(),
    name: z.string().max(256).optional(),
    tool_calls: z.array(z.unknown()).max(0, unsupported('tool_calls')).nullish(),
    function_call: z.null({ error: unsupported('function_call') }).optional(),
    refusal: z.string().nullish(),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.content === null && m.role !== 'assistant') ctx.addIssue({ code: 'custom', path: ['content'], message: 'content must be a string or an array of content parts' });
    if (Array.isArray(m.content) && m.role !== 'assistant') {
      const j = m.content.findIndex((p) => p.type === 'refusal');
      if (j >= 0) ctx.addIssue({ code: 'custom', path: ['content', j], message: 'a "refusal" content part is only allowed in assistant messages' });
    }
  });

const neutral = (what: string, zero: unknown) =>
  z.unknown().refine((v) => v === undefined || v === null || v === zero, unsupported(`${what} other than ${JSON.stringify(zero)}`));
const emptyList = (what: string) => z.array(z.unknown()).max(0, unsupported(what)).nullish();

const responseFormat = z.discriminatedUnion(
  'type',
  [
    z.object({ type: z.literal('text') }).strict(),
    z.object({ type: z.literal('json_object') }).strict(),
    z
      .object({
        type: z.literal('json_schema'),
        json_schema: z
          .object({
            name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'name must be 1-64 characters of a-z, A-Z, 0-9, _ and -'),
            description: z.string().optional(),
            schema: z.record(z.string(), z.unknown()).optional(),
            strict: z.boolean().nullish(),
          })
          .strict(),
      })
      .strict(),
  ],
  { error: 'response_format.type must be "text", "json_object" or "json_schema"' },
);

export const MAX_TOKENS_LIMIT = 1 << 20;

export const requestSchema = z
  .object({
    model: z.string().max(256).optional(),
    messages: z.array(message).min(1, 'messages must not be empty').max(10_000),
    stream: z.boolean().nullish(),
    stream_options: z.object({ include_usage: z.boolean().nullish(), include_obfuscation: z.boolean().nullish() }).strict().nullish(),
    max_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).nullish(),
    max_completion_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    top_k: z.number().int().min(0).max(1_000_000).nullish(),
    min_p: z.number().min(0).max(1).nullish(),
    // llama.cpp's convention: -1 = a random seed; other values are taken modulo 2^32 as llama-server does
    seed: z.number().int().nullish(),
    stop: z.union([z.string().min(1).max(1000), z.array(z.string().min(1).max(1000)).max(16)], { error: 'stop must be a non-empty string or a list of at most 16' }).nullish(),
    response_format: responseFormat.nullish(),
    n: z.literal(1, { error: unsupported('n other than 1') }).nullish(),
    frequency_penalty: neutral('frequency_penalty', 0),
    presence_penalty: neutral('presence_penalty', 0),
    logprobs: neutral('logprobs', false),
    top_logprobs: z.null({ error: unsupported('top_logprobs') }).optional(),
    logit_bias: z.record(z.string(), z.unknown()).refine((r) => Object.keys(r).length === 0, unsupported('logit_bias')).nullish(),
    tools: emptyList('tools (tool calling)'),
    functions: emptyList('functions (function calling)'),
    tool_choice: neutral('tool_choice', 'none'),
    function_call: neutral('function_call', 'none'),
    parallel_tool_calls: z.boolean().nullish(),
    modalities: z.array(z.literal('text', { error: unsupported('output modalities other than "text"') })).nullish(),
    audio: z.null({ error: unsupported('audio output') }).optional(),
    prediction: z.null({ error: unsupported('prediction') }).optional(),
    web_search_options: z.null({ error: unsupported('web_search_options') }).optional(),
    // accepted, no effect here
    user: z.string().max(1024).nullish(),
    safety_identifier: z.string().max(1024).nullish(),
    prompt_cache_key: z.string().max(1024).nullish(),
    metadata: z.record(z.string(), z.string()).nullish(),
    store: z.boolean().nullish(),
    service_tier: z.string().max(64).nullish(),
    reasoning_effort: z.string().max(64).nullish(),
    verbosity: z.string().max(64).nullish(),
  })
  .strict();

export type ChatRequest = z.output<typeof requestSchema>;

export interface Limits {
  maxImages: number;
  maxPromptChars: number;
}

export interface PreparedChat {
  model: string | undefined;
  messages: ChatMessage[];
  /** request path of each image, in conversation order */
  imageParams: string[];
  options: Omit<ChatOptions, 'signal'>;
  stream: boolean;
  includeUsage: boolean;
}

type Issue = z.core.$ZodIssue;

/** Inside a union every branch failed: report the branch that got furthest into the input. */
function deepest(issue: Issue): { path: PropertyKey[]; message: string } {
  const own = { path: [...issue.path], message: issue.message };
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return own;
  let best: { path: PropertyKey[]; message: string } | undefined;
  for (const branch of issue.errors) {
    if (!branch[0]) continue;
    const d = deepest(branch[0]);
    const full = { path: [...issue.path, ...d.path], message: d.message };
    if (!best || full.path.length > best.path.length) best = full;
  }
  return best && best.path.length > own.path.length ? best : own;
}

/** The first zod issue as a 400 with its path. */
function zodError(error: z.ZodError): HttpError {
  const first = error.issues[0]!;
  if (first.code === 'unrecognized_keys') {
    const path = formatPath([...first.path, first.keys[0]!]);
    return badRequest(`Unrecognized request argument supplied: ${path}`, path, 'unrecognized_argument');
  }
  const i = deepest(first);
  const path = formatPath(i.path);
  return badRequest(path ? `${path}: ${i.message}` : i.message, path || null, 'invalid_value');
}

/** Validates a parsed JSON body and turns it into the library's messages and options. */
export function prepareChat(body: unknown, limits: Limits): PreparedChat {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw badRequest('the request body must be a JSON object (Content-Type: application/json)', null, 'invalid_body');
  }
  const r = requestSchema.safeParse(body);
  if (!r.success) throw zodError(r.error);
  const b = r.data;

  const imageParams: string[] = [];
  let chars = 0;
  const messages: ChatMessage[] = b.messages.map((m, i) => {
    const role = m.role === 'developer' ? 'system' : m.role;
    if (m.content === null) return { role, content: '' };
    if (typeof m.content === 'string') {
      chars += m.content.length;
      return { role, content: m.content };
    }
    m.content.forEach((p, j) => {
      if (p.type === 'text') chars += p.text.length;
      else if (p.type === 'refusal') chars += p.refusal.length;
      else {
        const param = `messages[${i}].content[${j}].image_url.url`;
        if (imageParams.length >= limits.maxImages) throw badRequest(`too many images: this server accepts at most ${limits.maxImages} per request`, param, 'too_many_images');
        imageParams.push(param);
      }
    });
    return {
      role,
      content: m.content.map((p) =>
        p.type === 'text' ? p : p.type === 'refusal' ? { type: 'text' as const, text: p.refusal } : { type: 'image_url' as const, image_url: { url: p.image_url.url } },
      ),
    };
  });
  if (chars > limits.maxPromptChars) throw badRequest(`the messages hold ${chars} characters of text; this server accepts at most ${limits.maxPromptChars}`, 'messages', 'prompt_too_long');

  const options: Omit<ChatOptions, 'signal'> = {};
  const maxTokens = b.max_completion_tokens ?? b.max_tokens;
  if (maxTokens != null) options.maxTokens = maxTokens;
  if (b.temperature != null) options.temperature = b.temperature;
  if (b.top_p != null) {
    if (b.top_p === 0) options.temperature = 0; // OpenAI's top_p 0 keeps only the most likely token
    else options.topP = b.top_p;
  }
  if (b.top_k != null) options.topK = b.top_k;
  if (b.min_p != null) options.minP = b.min_p;
  if (b.seed != null && b.seed !== -1) options.seed = ((b.seed % 2 ** 32) + 2 ** 32) % 2 ** 32;
  if (b.stop != null) options.stop = typeof b.stop === 'string' ? [b.stop] : b.stop;
  const rf = b.response_format;
  if (rf?.type === 'json_object') options.jsonSchema = { type: 'object', additionalProperties: true };
  if (rf?.type === 'json_schema') {
    const schema = rf.json_schema.schema;
    if (!schema) throw badRequest('response_format.json_schema.schema is required', 'response_format.json_schema.schema', 'invalid_value');
    checkSchemaSize(schema);
    options.jsonSchema = schema;
  }
  return {
    model: b.model,
    messages,
    imageParams,
    options,
    stream: b.stream === true,
    includeUsage: b.stream === true && b.stream_options?.include_usage === true,
  };
}

/** Bounds a client-supplied JSON schema before the recursive checker and the grammar builder see it. */
function checkSchemaSize(schema: unknown): void {
  const param = 'response_format.json_schema.schema';
  let nodes = 0;
  const walk = (v: unknown, depth: number): void => {
    if (++nodes > 10_000) throw badRequest('the JSON schema is too large (over 10000 nodes)', param, 'invalid_value');
    if (depth > 32) throw badRequest('the JSON schema is nested too deeply (over 32 levels)', param, 'invalid_value');
    if (typeof v === 'object' && v !== null) for (const x of Object.values(v)) walk(x, depth + 1);
  };
  walk(schema, 0);
}
