/**
 * POST /v1/chat/completions: a JSON answer, or SSE `chat.completion.chunk`s ending in `data: [DONE]`.
 * Streamed responses send their headers only once the first text (or the result) exists, so that every
 * error found before generation (bad image, prompt too long, queue full) is still a proper HTTP error;
 * an error after that point is sent as a final `data: {"error": ...}` event. A client that disconnects
 * aborts its generation, which frees the sequence.
 */
import { randomUUID } from 'node:crypto';

import type { Request, Response } from 'express';

import type { ChatResult } from '../src/chat/index.js';
import { RETRY_AFTER_SECONDS, type InFlight, type ServerContext } from './context.js';
import { HttpError, mapLibraryError } from './errors.js';
import { prepareChat } from './request.js';

const round = (x: number): number => Math.round(x * 100) / 100;

function usageOf(r: ChatResult) {
  const u = r.usage;
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens },
  };
}

/** llm2clip's extension: where the time went (llama-server has a similar `timings` object). */
function timingsOf(r: ChatResult) {
  const u = r.usage;
  return {
    queue_ms: round(u.queueMs),
    image_encode_ms: round(u.imageEncodeMs),
    prefill_ms: round(u.prefillMs),
    time_to_first_token_ms: round(u.timeToFirstTokenMs),
    decode_ms: round(u.decodeMs),
    decode_tokens_per_second: u.decodeTokensPerSecond === null ? null : round(u.decodeTokensPerSecond),
    image_tokens: u.imageTokens,
    images_encoded: u.imagesEncoded,
    seed: r.seed,
  };
}

/** A service-unavailable error for requests cut off by shutdown. */
const shuttingDown = (): HttpError =>
  new HttpError(503, 'the server is shutting down; retry on another instance or later', 'service_unavailable', null, 'shutting_down', {
    'Retry-After': String(RETRY_AFTER_SECONDS),
  });

export async function chatCompletions(ctx: ServerContext, req: Request, res: Response): Promise<void> {
  const model = ctx.model;
  if (ctx.phase === 'draining') throw shuttingDown();
  if (ctx.phase !== 'ready' || !model) {
    throw new HttpError(503, ctx.phase === 'failed' ? 'the model failed to load; see the server log' : 'the model is still loading', 'service_unavailable', null, 'model_loading', {
      'Retry-After': String(RETRY_AFTER_SECONDS),
    });
  }
  const c = ctx.config;
  const chat = prepareChat(req.body, { maxImages: c.maxImages, maxPromptChars: c.maxPromptChars });
  if (chat.model !== undefined && chat.model !== c.modelName) {
    throw new HttpError(404, `The model '${chat.model}' does not exist; this server serves '${c.modelName}'`, 'not_found_error', 'model', 'model_not_found');
  }
  const errorContext = { imageParams: chat.imageParams, retryAfterSeconds: RETRY_AFTER_SECONDS };

  const controller = new AbortController();
  let clientGone = false;
  res.on('close', () => {
    if (!res.writableFinished) {
      clientGone = true;
      controller.abort(new Error('the client disconnected'));
    }
  });
  let finish!: () => void;
  const entry: InFlight = { controller, done: new Promise<void>((r) => (finish = r)) };
  ctx.inflight.add(entry);
  const t0 = performance.now();
  try {
    const stream = model.vlm.chat(chat.messages, { ...chat.options, signal: controller.signal });
    const id = `chatcmpl-${randomUUID().replaceAll('-', '')}`;
    const created = Math.floor(Date.now() / 1000);
    const base = { id, created, model: c.modelName, system_fingerprint: null };
    const account = (r: ChatResult): void => {
      const m = ctx.metrics;
      m.promptTokens.inc({}, r.usage.promptTokens);
      m.cachedTokens.inc({}, r.usage.cachedTokens);
      m.completionTokens.inc({}, r.usage.completionTokens);
      m.chats.inc({ finish_reason: r.finishReason });
      if (r.finishReason !== 'abort') m.chatSeconds.observe((performance.now() - t0) / 1000);
    };

    if (!chat.stream) {
      let r: ChatResult;
      try {
        r = await stream.result;
      } catch (e) {
        throw mapLibraryError(e, errorContext) ?? e;
      }
      account(r);
      if (r.finishReason === 'abort') {
        if (clientGone) return;
        throw shuttingDown();
      }
      res.json({
        ...base,
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: r.text, refusal: null }, logprobs: null, finish_reason: r.finishReason }],
        usage: usageOf(r),
        timings: timingsOf(r),
      });
      return;
    }

    let started = false;
    const send = (data: unknown): void => void res.write(`data: ${JSON.stringify(data)}\n\n`);
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) => ({
      ...base,
      object: 'chat.completion.chunk',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(chat.includeUsage ? { usage: null } : {}),
    });
    const start = (): void => {
      if (started) return;
      started = true;
      res.status(200).set({ 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
      res.flushHeaders();
      send(chunk({ role: 'assistant', content: '' }));
    };
    try {
      for await (const delta of stream) {
        if (clientGone) break;
        start();
        send(chunk({ content: delta }));
      }
      const r = await stream.result;
      account(r);
      if (clientGone) return;
      if (r.finishReason === 'abort') {
        if (!started) throw shuttingDown();
        send(shuttingDown().body());
        res.end();
        return;
      }
      start();
      send(chunk({}, r.finishReason));
      if (chat.includeUsage) send({ ...base, object: 'chat.completion.chunk', choices: [], usage: usageOf(r), timings: timingsOf(r) });
      res.write('data: [DONE]\n\n');
      res.end();
    } catch (e) {
      const mapped = mapLibraryError(e, errorContext);
      if (!started) throw mapped ?? e;
      if (!mapped) ctx.log(`[${String(res.locals.requestId)}] 500 during a stream: ${(e as Error).stack ?? String(e)}`);
      send((mapped ?? new HttpError(500, `internal server error (request id ${String(res.locals.requestId)})`, 'server_error', null, 'internal_error')).body());
      res.end();
    }
  } finally {
    ctx.inflight.delete(entry);
    finish();
  }
}
