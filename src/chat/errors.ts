/**
 * Typed errors of the chat pipeline. Input problems in the messages themselves stay ChatInputError
 * (messages.ts); everything here carries a stable `code` so the CLI and a server can map errors to exit
 * codes / HTTP statuses without parsing messages.
 */

export type ChatErrorCode =
  | 'OPTIONS' // a chat or load option is out of range or of the wrong type
  | 'IMAGE' // an image URL the loader policy refuses, or bytes that cannot be read
  | 'TEMPLATE' // the chat template cannot be rendered for this model
  | 'WIDTH' // tower / projector / LLM widths do not line up
  | 'CONTEXT_FULL' // the prompt does not fit one sequence
  | 'QUEUE_FULL' // more chats waiting than the queue allows
  | 'DISPOSED' // the model was disposed
  | 'OUTPUT' // generated text that does not validate against the requested JSON schema
  | 'STATE'; // node-llama-cpp's sequence state disagrees with our record (a bug or outside interference)

export class ChatError extends Error {
  readonly code: ChatErrorCode;

  constructor(code: ChatErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ChatError';
    this.code = code;
  }
}

/** The abort reason of a signal, or a standard AbortError when it has none. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}
