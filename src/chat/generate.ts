/**
 * Evaluating a planned prompt into a sequence and generating from it, through node-llama-cpp only
 * (evaluateWithoutGeneratingNewTokens / evaluate) plus injectEmbeddings for image rows — both take
 * node-llama-cpp's own locks, so several sequences of one context can run this concurrently without
 * racing its batch scheduler.
 */
import type { LlamaContextSequence, LlamaGrammarEvaluationState, Token } from 'node-llama-cpp';

import { injectEmbeddings } from '../llm/index.js';
import { abortReason, ChatError } from './errors.js';
import type { PromptPlan } from './prompt.js';
import { TextAssembler } from './stream.js';

/**
 * Context shifting would erase positions behind our back (possibly an image) and desynchronise our
 * record; generation is capped so that it never needs to shift, and this strategy turns any attempt
 * into an error instead of a silent loss.
 */
const refuseContextShift = {
  strategy: (): never => {
    throw new ChatError('CONTEXT_FULL', 'the sequence is full; context shifting is disabled for multimodal chats');
  },
};

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

/**
 * Evaluates plan positions [from, n) except the last text run, which is returned: the caller hands it
 * to `sequence.evaluate` so that its last token's logits are sampled. `rows(span index)` gives an image
 * span's [length, n_embd] rows. `from` must not fall inside an image span (reusableLength guarantees it).
 */
export async function prefillPrompt(
  sequence: LlamaContextSequence,
  plan: PromptPlan,
  from: number,
  rows: (spanIndex: number) => Float32Array,
  placeholder: Token,
  signal?: AbortSignal,
): Promise<Token[]> {
  const n = plan.tokens.length;
  if (sequence.nextTokenIndex !== from) throw new ChatError('STATE', `prefill from position ${from}, but the sequence is at ${sequence.nextTokenIndex}`);
  let pos = from;
  for (let si = 0; si <= plan.spans.length; si++) {
    const span = plan.spans[si];
    if (span && span.start + span.length <= from) continue;
    if (span && span.start < from) throw new ChatError('STATE', `prefill would start inside image span ${si} (${span.start}..${span.start + span.length})`);
    const textEnd = span ? span.start : n;
    if (!span) return plan.tokens.slice(pos, textEnd) as Token[];
    throwIfAborted(signal);
    if (textEnd > pos) await sequence.evaluateWithoutGeneratingNewTokens(plan.tokens.slice(pos, textEnd) as Token[], { contextShift: refuseContextShift });
    throwIfAborted(signal);
    const r = rows(si);
    await injectEmbeddings(sequence, r, { placeholderToken: placeholder, signal });
    pos = span.start + span.length;
  }
  throw new ChatError('STATE', 'unreachable: prompt plan without a final text run');
}

export interface SamplingOptions {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  seed: number;
}

export interface GenerationOutcome {
  text: string;
  finishReason: 'stop' | 'length' | 'abort';
  /** what ended a 'stop': an end-of-generation token, or one of the stop strings */
  stopString?: string;
  completionTokens: number;
  /** ms from the start of the final prompt run to the first sampled token */
  firstTokenMs: number;
  /** ms from the first to the last sampled token */
  decodeMs: number;
}

/**
 * Evaluates the final prompt run and samples up to `limit` tokens. Aborting stops after the token in
 * flight; the outcome then says 'abort' and keeps the text so far.
 */
export async function generate(
  sequence: LlamaContextSequence,
  finalRun: Token[],
  opts: {
    sampling: SamplingOptions;
    limit: number;
    stops: readonly string[];
    grammar?: LlamaGrammarEvaluationState;
    signal?: AbortSignal;
    onDelta: (delta: string) => void;
  },
): Promise<GenerationOutcome> {
  const { sampling, limit, signal } = opts;
  const model = sequence.model;
  const assembler = new TextAssembler((t) => model.detokenize(t, true), opts.stops);
  const t0 = performance.now();
  let tFirst: number | undefined;
  let tLast = t0;
  let count = 0;
  let finishReason: GenerationOutcome['finishReason'] = 'stop';
  if (signal?.aborted) finishReason = 'abort';
  else {
    const tokens = sequence.evaluate(finalRun, {
      temperature: sampling.temperature,
      topP: sampling.topP,
      topK: sampling.topK,
      minP: sampling.minP,
      seed: sampling.seed,
      ...(opts.grammar ? { grammarEvaluationState: opts.grammar } : {}),
      contextShift: refuseContextShift,
      yieldEogToken: false,
    });
    // for-await's implicit return() on break releases node-llama-cpp's evaluate lock and sampler.
    for await (const token of tokens) {
      tLast = performance.now();
      tFirst ??= tLast;
      count++;
      opts.onDelta(assembler.push(token));
      if (assembler.stopped) break;
      if (signal?.aborted) {
        finishReason = 'abort';
        break;
      }
      if (count >= limit) {
        finishReason = 'length';
        break;
      }
    }
  }
  const tEnd = performance.now();
  opts.onDelta(assembler.flush());
  return {
    text: assembler.text,
    finishReason,
    ...(assembler.stopString !== undefined ? { stopString: assembler.stopString } : {}),
    completionTokens: count,
    firstTokenMs: (tFirst ?? tEnd) - t0,
    decodeMs: tFirst === undefined ? 0 : tLast - tFirst,
  };
}
