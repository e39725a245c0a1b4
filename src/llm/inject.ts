// Appends image-embedding rows to a node-llama-cpp context sequence, LLaVA style.
//
// The rows are decoded by the native addon (llama_batch.embd) at the sequence's next
// positions; the sequence's history then holds `placeholderToken` at those positions,
// so node-llama-cpp's later evaluate/completion/chat continue right after the image
// and can reuse the prefix when the caller renders the same placeholder ids there.
// Anything that makes node-llama-cpp re-evaluate those positions (erasing ranges over
// or before them, clearHistory, a context shift over them) feeds the placeholders as
// text and silently loses the image: callers re-inject in that case.
import type { LlamaContext, LlamaContextSequence, Token } from 'node-llama-cpp';

import {
  ContextSpaceError,
  EmbeddingShapeError,
  InjectionError,
  SequenceDisposedError,
  UnsupportedModelError,
  fromNativeError,
} from './errors.js';
import { loadNativeAddon, type AttachInfo, type NativeEmbdAddon } from './native.js';
import { internalsOf, nodeLlamaCppLocks, type Internals } from './nlcInternals.js';

export interface InjectEmbeddingsOptions {
  /** id recorded in the sequence history for each injected row (e.g. the model's `<image>` token) */
  placeholderToken: Token;
  /** return the logits of the last injected row (next-token distribution after the image) */
  wantLogits?: boolean;
  /** aborts while waiting for the locks or between decode chunks; a partial decode is rolled back */
  signal?: AbortSignal;
}

export interface InjectEmbeddingsResult {
  /** length n_vocab; present when `wantLogits` */
  logits?: Float32Array;
  /** position (token index) of the first injected row */
  startPosition: number;
  /** number of rows injected (positions consumed) */
  count: number;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

function ensureAlive(i: Internals): void {
  if (i.seq._disposed) throw new SequenceDisposedError();
  if (i.ctx._disposed) throw new SequenceDisposedError('context of this sequence');
}

function attach(i: Internals): AttachInfo {
  try {
    return loadNativeAddon().attach(i.ctx._ctx, i.model._model);
  } catch (err) {
    throw fromNativeError(err);
  }
}

/** Facts about the injection target: notably `nEmbdInp`, the width every row must have. */
export function injectionInfo(sequence: LlamaContextSequence): AttachInfo {
  const i = internalsOf(sequence);
  ensureAlive(i);
  return attach(i);
}

function validate(sequence: LlamaContextSequence, info: AttachInfo, embeds: Float32Array, opts: InjectEmbeddingsOptions): number {
  if (!(embeds instanceof Float32Array)) throw new InjectionError('ARGUMENT', 'embeds must be a Float32Array [n, n_embd]');
  const width = info.nEmbdInp;
  if (embeds.length === 0 || embeds.length % width !== 0) {
    throw new EmbeddingShapeError(
      `embedding rows must be [n, ${width}] (the model's input width): got ${embeds.length} floats`,
      width,
      embeds.length,
    );
  }
  const t = opts.placeholderToken;
  if (!Number.isInteger(t) || t < 0 || t >= info.nVocab) {
    throw new InjectionError('ARGUMENT', `placeholderToken ${String(t)} is not a token id of this model (0..${info.nVocab - 1})`);
  }
  if (info.mrope) throw new UnsupportedModelError('M-RoPE models (Qwen2-VL family) need several positions per row; not supported');
  // Recurrent/hybrid/SWA-without-full-cache sequences restore from checkpoints, which
  // would replay our placeholder ids as text.
  if (sequence.needsCheckpoints) {
    throw new UnsupportedModelError('sequences that need checkpoints (recurrent, hybrid, or SWA without swaFullCache) are not supported');
  }
  return embeds.length / width;
}

/**
 * Appends `embeds` ([n, n_embd_inp] row-major) at the sequence's next n positions.
 *
 * Runs under node-llama-cpp's own locks (the sequence's "evaluate" lock, then the
 * context's "context" lock, the order loadStateFromFile uses), so it serializes with
 * its batch scheduler and with other sequences of the same context. Decoding is
 * chunked to the context's batch size on a worker thread. Throws a typed
 * InjectionError (or the signal's reason) and leaves the sequence unchanged on failure.
 */
export async function injectEmbeddings(
  sequence: LlamaContextSequence,
  embeds: Float32Array,
  opts: InjectEmbeddingsOptions,
): Promise<InjectEmbeddingsResult> {
  const { signal, wantLogits = false } = opts;
  if (signal?.aborted) throw abortReason(signal);
  const i = internalsOf(sequence);
  ensureAlive(i);
  const addon = loadNativeAddon();
  const count = validate(sequence, attach(i), embeds, opts);
  const locks = await nodeLlamaCppLocks();
  // Vulkan: node-llama-cpp also serializes decodes across contexts with a module-private
  // lock we cannot take; with several Vulkan contexts decoding at once, serialize above us.

  const evaluateLock = await locks.acquireLock([i.seq._lock, 'evaluate'], signal);
  try {
    ensureAlive(i);
    // Speculative predictions sit in the KV after the real tokens; evict them first.
    // It takes the context lock itself (locks are not re-entrant), hence before ours;
    // skipLock=true because we already hold the evaluate lock it would otherwise wait for.
    await i.seq._abortTokenPredictor(false, true);
    const contextLock = await locks.acquireLock([i.ctx, 'context'], signal);
    try {
      ensureAlive(i);
      let preventDisposal;
      try {
        preventDisposal = i.ctx._backendContextDisposeGuard.createPreventDisposalHandle();
      } catch (err) {
        throw Object.assign(new SequenceDisposedError('context of this sequence'), { cause: err });
      }
      try {
        return await decodeLocked(i, addon, embeds, count, opts.placeholderToken, wantLogits, signal);
      } finally {
        preventDisposal.dispose();
      }
    } finally {
      contextLock.dispose();
    }
  } finally {
    evaluateLock.dispose();
  }
}

async function decodeLocked(
  i: Internals,
  addon: NativeEmbdAddon,
  embeds: Float32Array,
  count: number,
  placeholder: Token,
  wantLogits: boolean,
  signal: AbortSignal | undefined,
): Promise<InjectEmbeddingsResult> {
  const { seq, ctx, model } = i;
  if (signal?.aborted) throw abortReason(signal);
  const info = attach(i);
  if (seq._loadedTokenPredictions.length !== 0) {
    throw new InjectionError('POSITION', 'token predictions are still loaded in the sequence after eviction');
  }
  const start = seq._nextTokenIndex;
  // node-llama-cpp keeps one position free (contextSize - 1 - next); so do we, which
  // also guarantees room for the text token that must follow an image.
  const size = Math.min((seq._context as LlamaContext).contextSize, info.nCtxSeq);
  const free = Math.max(0, size - 1 - start);
  if (count > free) throw new ContextSpaceError(count, free);
  const [, posMax] = addon.seqPosRange(ctx._ctx, model._model, seq._sequenceId);
  if (posMax !== start - 1) {
    throw new InjectionError('POSITION', `KV cache ends at ${posMax} but the sequence's next token index is ${start}`);
  }

  const cancel = new Int32Array(1);
  const onAbort = (): void => {
    cancel[0] = 1; // read by the worker between chunks
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let res;
  try {
    res = await addon.decodeEmbeddings(ctx._ctx, model._model, seq._sequenceId, start, embeds, count, wantLogits, cancel);
  } catch (err) {
    if (signal?.aborted) throw abortReason(signal);
    throw fromNativeError(err);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }

  const [, after] = addon.seqPosRange(ctx._ctx, model._model, seq._sequenceId);
  if (after !== start + count - 1) {
    throw new InjectionError('POSITION', `after injecting ${count} rows at ${start} the KV cache ends at ${after}`);
  }
  // Bookkeeping exactly as node-llama-cpp's _decodeTokens does for tokens: the history
  // gets placeholder ids, the next index advances, and the meter counts rows with
  // logits as output like it does for a prompt's last token.
  seq._contextTokens = seq._contextTokens.concat(new Array<Token>(count).fill(placeholder));
  seq._nextTokenIndex = start + count;
  const outputs = wantLogits ? 1 : 0;
  seq._tokenMeter.useTokens(count - outputs, 'input');
  seq._tokenMeter.useTokens(outputs, 'output');
  return { ...(res.logits ? { logits: res.logits } : {}), startPosition: start, count };
}

/**
 * Logits of the last output row of the context's most recent decode (any sequence), or
 * null when that decode produced none. Meant for tests and diagnostics: call it right
 * after an evaluation that requested logits, with nothing else decoding on the context.
 */
export async function readLastLogits(sequence: LlamaContextSequence): Promise<Float32Array | null> {
  const i = internalsOf(sequence);
  ensureAlive(i);
  const addon = loadNativeAddon();
  const locks = await nodeLlamaCppLocks();
  const contextLock = await locks.acquireLock([i.ctx, 'context']);
  try {
    ensureAlive(i);
    return addon.lastLogits(i.ctx._ctx, i.model._model);
  } catch (err) {
    throw fromNativeError(err);
  } finally {
    contextLock.dispose();
  }
}
