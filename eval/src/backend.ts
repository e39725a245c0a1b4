/**
 * Where answers come from: an OpenAI-compatible chat-completions endpoint (llama-server, Ollama's /v1,
 * vLLM, LM Studio, llm2clip's own server) or the local tower → projector → LLM pipeline. Both get the
 * question as LLaVA lays it out: the image first, then the text (llama-server and llm2clip render that
 * as "<image>\n" + text).
 */
import { basename } from 'node:path';

export interface AnswerRequest {
  text: string;
  /** data:image/...;base64 URL; absent for text-only questions */
  imageUrl?: string;
  maxTokens: number;
  temperature: number;
  signal: AbortSignal;
}

export interface BackendAnswer {
  text: string;
  finishReason?: string;
}

export interface Backend {
  /** written as the answers' model_id */
  readonly modelId: string;
  answer(req: AnswerRequest): Promise<BackendAnswer>;
  close?(): Promise<void>;
}

/** A failed request; `retryable` for 408/429/5xx, network errors and timeouts. */
export class BackendError extends Error {
  override name = 'BackendError';
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export interface EndpointOptions {
  /** base URL (http://host:8080, http://host:8080/v1) or the full .../chat/completions URL */
  endpoint: string;
  model: string;
  apiKey?: string;
  /** per request; default 600 s */
  timeoutMs?: number;
  /** extra fields merged into every request body */
  extraBody?: Record<string, unknown>;
}

/** …/chat/completions for a base URL; a URL already ending so is kept. */
export function chatCompletionsUrl(endpoint: string): string {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new Error(`--endpoint ${JSON.stringify(endpoint)} is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`--endpoint ${JSON.stringify(endpoint)}: only http(s) URLs`);
  const path = u.pathname.replace(/\/+$/, '');
  if (path.endsWith('/chat/completions')) u.pathname = path;
  else if (path.endsWith('/v1')) u.pathname = `${path}/chat/completions`;
  else u.pathname = `${path}/v1/chat/completions`;
  return u.toString();
}

function parseRetryAfter(h: string | null): number | undefined {
  if (h === null) return undefined;
  const s = Number(h);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const t = Date.parse(h);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

const retryableStatus = (s: number): boolean => s === 408 || s === 425 || s === 429 || s >= 500;

function describeFetchError(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const cause = err.cause?.code ?? err.cause?.message;
  return cause ? `${err.message} (${cause})` : err.message;
}

function contentText(content: unknown): string | undefined {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    const parts = content.filter((p): p is { type: string; text: string } => typeof p === 'object' && p !== null && (p as { type?: unknown }).type === 'text');
    return parts.map((p) => p.text).join('');
  }
  return undefined;
}

export function endpointBackend(o: EndpointOptions): Backend {
  const url = chatCompletionsUrl(o.endpoint);
  const timeoutMs = o.timeoutMs ?? 600_000;
  return {
    modelId: o.model,
    async answer(req) {
      const content: unknown[] = [];
      if (req.imageUrl !== undefined) content.push({ type: 'image_url', image_url: { url: req.imageUrl } });
      content.push({ type: 'text', text: req.text });
      const body = {
        model: o.model,
        messages: [{ role: 'user', content }],
        temperature: req.temperature,
        max_tokens: req.maxTokens,
        stream: false,
        ...o.extraBody,
      };
      const timeout = AbortSignal.timeout(timeoutMs);
      let res: Response;
      let raw: string;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {}) },
          body: JSON.stringify(body),
          signal: AbortSignal.any([req.signal, timeout]),
        });
        raw = await res.text();
      } catch (e) {
        if (req.signal.aborted) throw e;
        if (timeout.aborted) throw new BackendError(`no response within ${timeoutMs / 1000} s`, true);
        throw new BackendError(`request failed: ${describeFetchError(e)}`, true);
      }
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch {
        json = undefined;
      }
      if (!res.ok) {
        const err = (json as { error?: { message?: unknown } | string } | undefined)?.error;
        const msg = typeof err === 'string' ? err : typeof err?.message === 'string' ? err.message : raw.slice(0, 200);
        throw new BackendError(`HTTP ${res.status}${msg ? `: ${msg}` : ''}`, retryableStatus(res.status), res.status, parseRetryAfter(res.headers.get('retry-after')));
      }
      const choice = (json as { choices?: { message?: { content?: unknown }; finish_reason?: unknown }[] } | undefined)?.choices?.[0];
      const text = contentText(choice?.message?.content);
      if (text === undefined) throw new BackendError(`HTTP ${res.status} but no choices[0].message.content in the response: ${raw.slice(0, 200)}`, false, res.status);
      return { text, ...(typeof choice?.finish_reason === 'string' ? { finishReason: choice.finish_reason } : {}) };
    },
  };
}

export interface LocalOptions {
  tower: string;
  projector: string;
  llm: string;
  template?: string;
  gpu?: 'auto' | 'cuda' | 'vulkan' | 'metal' | false;
  threads?: number;
  /** onnxruntime intra-op threads of the tower session (default: onnxruntime's own) */
  towerThreads?: number;
  contextSize?: number;
  /** chats run at once (LLM sequences) */
  sequences?: number;
  /** an existing node-llama-cpp Llama instance (tests) */
  llama?: unknown;
  modelId?: string;
}

/** The local pipeline (src/chat), loaded on demand so endpoint runs never load native modules. */
export async function localBackend(o: LocalOptions): Promise<Backend> {
  const chat = await import('../../src/chat/index.js');
  const vlm = await chat.VisionLanguageModel.load({
    tower: o.tower,
    projector: o.projector,
    llm: o.llm,
    sequences: o.sequences ?? 1,
    ...(o.template !== undefined ? { template: o.template as NonNullable<Parameters<typeof chat.VisionLanguageModel.load>[0]['template']> } : {}),
    ...(o.gpu !== undefined ? { gpu: o.gpu } : {}),
    ...(o.threads !== undefined ? { maxThreads: o.threads } : {}),
    ...(o.towerThreads !== undefined ? { towerSession: { threads: o.towerThreads } } : {}),
    ...(o.contextSize !== undefined ? { contextSize: o.contextSize } : {}),
    ...(o.llama !== undefined ? { llama: o.llama as NonNullable<Parameters<typeof chat.VisionLanguageModel.load>[0]['llama']> } : {}),
  });
  return {
    modelId: o.modelId ?? basename(o.llm).replace(/\.gguf$/i, ''),
    async answer(req) {
      const content = req.imageUrl !== undefined ? [{ type: 'image_url' as const, image_url: { url: req.imageUrl } }, { type: 'text' as const, text: req.text }] : req.text;
      try {
        const r = await vlm.chat([{ role: 'user', content }], { maxTokens: req.maxTokens, temperature: req.temperature, signal: req.signal }).result;
        if (r.finishReason === 'abort') throw req.signal.reason ?? new DOMException('aborted', 'AbortError');
        return { text: r.text, finishReason: r.finishReason };
      } catch (e) {
        if (req.signal.aborted) throw e;
        if (e instanceof chat.ChatError) throw new BackendError(`${e.code}: ${e.message}`, e.code === 'QUEUE_FULL');
        if (e instanceof chat.ChatInputError) throw new BackendError(e.message, false);
        throw e;
      }
    },
    close: () => vlm.dispose(),
  };
}
