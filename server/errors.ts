/**
 * OpenAI-shaped errors: `{error: {message, type, param, code}}`, and the one place that maps library
 * errors to HTTP statuses. Every client mistake is a 4xx; a 500 is reserved for bugs (the caller logs it
 * with the request id and the client gets only the id, never internals).
 */
import { ChatError, ChatInputError } from '../src/chat/index.js';

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'service_unavailable'
  | 'server_error';

export interface OpenAIErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

/** An error with its HTTP status; anything thrown by a handler that is not one of these is a bug (500). */
export class HttpError extends Error {
  override name = 'HttpError';

  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType = status === 401
      ? 'authentication_error'
      : status === 404
        ? 'not_found_error'
        : status === 429
          ? 'rate_limit_error'
          : status === 503
            ? 'service_unavailable'
            : status >= 500
              ? 'server_error'
              : 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** extra response headers (Retry-After, WWW-Authenticate) */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = 'invalid_request'): HttpError =>
  new HttpError(400, message, 'invalid_request_error', param, code);

/** A zod-style path as the OpenAI `param` string: messages[0].content[1].image_url.url */
export function formatPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? String(p) : `.${String(p)}`;
  return s;
}

/** How the library's option names read in the OpenAI request. */
const OPTION_PARAMS: Record<string, string> = {
  maxTokens: 'max_tokens',
  temperature: 'temperature',
  topP: 'top_p',
  topK: 'top_k',
  minP: 'min_p',
  seed: 'seed',
  stop: 'stop',
  jsonSchema: 'response_format.json_schema.schema',
};

export interface ErrorContext {
  /** request path of each image of the conversation, in order (image i → messages[m].content[p].image_url.url) */
  imageParams: readonly string[];
  retryAfterSeconds: number;
}

/** Library error → HttpError, or undefined when the error is not a client mistake (a bug: 500). */
export function mapLibraryError(e: unknown, ctx: ErrorContext): HttpError | undefined {
  if (e instanceof HttpError) return e;
  if (e instanceof ChatInputError) {
    // messages.ts prefixes its messages with the path: "messages[2]: images are only allowed in user messages"
    const m = /^(messages(?:\[\d+\]|\.[A-Za-z_]+)*)[: ]/.exec(e.message);
    return badRequest(e.message, m ? m[1]! : 'messages');
  }
  if (!(e instanceof ChatError)) return undefined;
  switch (e.code) {
    case 'IMAGE': {
      const m = /^image (\d+):/.exec(e.message);
      const param = m ? (ctx.imageParams[Number(m[1])] ?? 'messages') : 'messages';
      return badRequest(e.message, param, 'invalid_image');
    }
    case 'OPTIONS': {
      const m = /^options\.(\w+)((?:\.[\w$]+|\[\d+\])*)/.exec(e.message);
      const base = m ? OPTION_PARAMS[m[1]!] : undefined;
      const rest = m && m[1] === 'jsonSchema' ? m[2]! : '';
      return badRequest(e.message, base ? base + rest : null, 'invalid_value');
    }
    case 'TEMPLATE':
      return badRequest(e.message, 'messages', 'invalid_template_input');
    case 'CONTEXT_FULL':
      return badRequest(e.message, 'messages', 'context_length_exceeded');
    case 'QUEUE_FULL':
      return new HttpError(429, e.message, 'rate_limit_error', null, 'queue_full', { 'Retry-After': String(ctx.retryAfterSeconds) });
    case 'DISPOSED':
      return new HttpError(503, 'the server is shutting down', 'service_unavailable', null, 'shutting_down', { 'Retry-After': String(ctx.retryAfterSeconds) });
    default:
      return undefined; // WIDTH, STATE, OUTPUT: the model or the server is wrong, not the request
  }
}
