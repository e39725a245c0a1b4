// Running the server in tests: against the tiny synthetic models of test/chat/fixtures.ts by default, or
// against any model given as paths (the demo model once it exists: `demoModel()`), on 127.0.0.1 and an
// ephemeral port, with the official openai client pointed at it.
import fs from 'node:fs';
import path from 'node:path';

import OpenAI from 'openai';

import { parseServeConfig, DEMO_MODEL_DIR, type ServeConfig } from '../../server/config.js';
import { startServer, type RunningServer, type StartDeps } from '../../server/server.js';
import { prepareChatFixture, testLlama, type ChatFixture } from '../chat/fixtures.js';

export interface ModelPaths {
  tower: string;
  projector: string;
  llm: string;
}

/** The bundled demo model's paths, or undefined while it does not exist. */
export function demoModel(): ModelPaths | undefined {
  const p = { tower: path.join(DEMO_MODEL_DIR, 'tower'), projector: path.join(DEMO_MODEL_DIR, 'projector'), llm: path.join(DEMO_MODEL_DIR, 'llm.gguf') };
  return Object.values(p).every((x) => fs.existsSync(x)) ? p : undefined;
}

/** Tiny synthetic tower (16 patch tokens), projector and Llama (see test/chat/fixtures.ts). */
export async function syntheticModel(): Promise<ModelPaths & { fixture: ChatFixture; cleanup(): Promise<void> }> {
  const f = await prepareChatFixture();
  return { tower: f.tower, projector: f.projector, llm: f.llm.path, fixture: f, cleanup: () => f.cleanup() };
}

export interface TestServer {
  server: RunningServer;
  config: ServeConfig;
  url: string;
  client: OpenAI;
  /** server log lines (errors with request ids land here) */
  logs: string[];
  close(): Promise<void>;
}

/**
 * Starts a server on the model and waits until it is ready (unless `waitReady: false`). Options are the
 * camelCase names of the serve flags. llama.cpp uses one thread and no GPU unless overridden.
 */
export async function startTestServer(
  model: ModelPaths,
  options: Partial<Record<keyof ServeConfig, unknown>> = {},
  deps: StartDeps & { waitReady?: boolean } = {},
): Promise<TestServer> {
  const config = parseServeConfig([], {}, {
    tower: model.tower,
    projector: model.projector,
    llm: model.llm,
    host: '127.0.0.1',
    port: 0,
    quiet: true,
    gpu: 'off',
    towerThreads: 1,
    parallel: 2,
    contextSize: 1024,
    modelName: 'test-model',
    ...options,
  });
  const logs: string[] = [];
  const server = await startServer(config, { llama: await testLlama(), log: (l) => logs.push(l), ...deps });
  if (deps.waitReady !== false) await server.ready;
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: (options.apiKey as string | undefined) ?? 'unused', maxRetries: 0, timeout: 120_000 });
  return { server, config, url: server.url, client, logs, close: async () => void (await server.drain(0)) };
}

/** POSTs a JSON (or raw) body and returns status, headers and the parsed body (or the text). */
export async function post(
  url: string,
  body: unknown,
  init: { headers?: Record<string, string>; raw?: boolean; method?: string } = {},
): Promise<{ status: number; headers: Headers; body: unknown; text: string }> {
  const r = await fetch(url, {
    method: init.method ?? 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: init.raw ? (body as BodyInit) : JSON.stringify(body),
  });
  const text = await r.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: r.status, headers: r.headers, body: parsed, text };
}

/** Asserts the OpenAI error shape; returns the error object. */
export function errorOf(body: unknown): { message: string; type: string; param: string | null; code: string | null } {
  const e = (body as { error?: Record<string, unknown> } | null)?.error;
  if (!e || typeof e.message !== 'string' || typeof e.type !== 'string' || !('param' in e) || !('code' in e)) {
    throw new Error(`not an OpenAI error object: ${JSON.stringify(body).slice(0, 300)}`);
  }
  return e as { message: string; type: string; param: string | null; code: string | null };
}

export async function until(cond: () => boolean | Promise<boolean>, what = 'condition', timeoutMs = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what} not reached in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A JSON schema whose grammar cannot end before about `chars` characters (llama.cpp caps one repetition
 * at 2000, so the string is split over several required properties): keeps a sequence busy until
 * max_tokens or the context runs out (~1700 tokens/s on the tiny model).
 */
export function longOutputFormat(chars: number) {
  const parts = Math.ceil(chars / 1500);
  const properties = Object.fromEntries(Array.from({ length: parts }, (_, i) => [`t${i}`, { type: 'string', minLength: 1500 }]));
  return { type: 'json_schema' as const, json_schema: { name: 'long', schema: { type: 'object', properties, required: Object.keys(properties) } } };
}
