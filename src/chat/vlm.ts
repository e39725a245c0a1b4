/**
 * VisionLanguageModel: tower → projector → llama.cpp LLM behind one object.
 *
 *   const vlm = await VisionLanguageModel.load({ tower, projector, llm, sequences: 2 });
 *   const stream = vlm.chat(messages, { maxTokens: 128 });
 *   for await (const delta of stream) process.stdout.write(delta);
 *   const { text, finishReason, usage } = await stream.result;
 *   await vlm.dispose();
 *
 * One LlamaContext with `sequences` sequences serves all chats (pool.ts); each chat renders its prompt
 * (prompt.ts), reuses the longest prefix its sequence already holds (kv-state.ts), encodes only images
 * that are neither cached nor in that prefix, injects them, and generates (generate.ts).
 */
import { randomInt } from 'node:crypto';

import {
  LlamaGrammarEvaluationState,
  type Llama,
  type LlamaContext,
  type LlamaGrammar,
  type LlamaModel,
} from 'node-llama-cpp';

import { ImageError } from '../image/errors.js';
import { injectionInfo } from '../llm/index.js';
import { openLlama } from '../llm/llama.js';
import { TowerProjectorEmbedder, type ImageEmbedder } from './embedder.js';
import { abortReason, ChatError } from './errors.js';
import type { FeatureCacheStats } from './feature-cache.js';
import { ImageFeatures } from './features.js';
import { generate, prefillPrompt } from './generate.js';
import { dataUrlLoader, loadImages, type ImageLoader } from './images.js';
import { confirmedPrefix, reusableLength, truncateSequence } from './kv-state.js';
import { checkJsonSchema } from './json-schema.js';
import { normalizeChat, type ChatMessage } from './messages.js';
import { loadOptionsSchema, parseChatOptions, parseWith, type ChatOptions, type ResolvedChatOptions } from './options.js';
import { choosePlaceholder, type Placeholder } from './placeholder.js';
import { SequencePool, type PoolStats, type SequenceSlot } from './pool.js';
import { planPrompt, renderPrompt, type PromptPlan, type TemplateChoice } from './prompt.js';
import { ChatStream } from './stream.js';
import { TrailingSpaceHold, withoutTrailingSpace } from './trailing-space.js';

export interface LoadOptions {
  tower: string;
  projector: string;
  llm: string;
  gpu?: 'auto' | 'cuda' | 'vulkan' | 'metal' | false;
  maxThreads?: number;
  contextSize?: number;
  sequences?: number;
  batchSize?: number;
  template?: TemplateChoice;
  featureCacheBytes?: number;
  maxQueue?: number;
  placeholderToken?: number;
  towerSession?: { executionProvider?: 'cpu' | 'cuda' | 'tensorrt' | 'dml' | 'coreml' | 'webgpu'; threads?: number };
  /** where image URLs in messages may be read from; default: data: URLs only */
  imageLoader?: ImageLoader;
  /** an existing node-llama-cpp instance (then `gpu`/`maxThreads` do not apply and it is not disposed) */
  llama?: Llama;
}

/** Assembling from already-loaded parts (tests, benchmarks, other embedders). */
export interface VlmParts extends Omit<LoadOptions, 'tower' | 'projector' | 'llm' | 'gpu' | 'maxThreads' | 'towerSession' | 'llama'> {
  model: LlamaModel;
  embedder: ImageEmbedder;
  /** parts disposed by dispose(); the context is always ours */
  owns?: { llama?: boolean; model?: boolean; embedder?: boolean };
}

export interface ChatUsage {
  /** prompt positions, image rows included */
  promptTokens: number;
  imageTokens: number;
  /** prompt positions reused from the sequence's KV (not evaluated again) */
  cachedTokens: number;
  /** prompt positions evaluated for this chat: promptTokens - cachedTokens */
  evaluatedTokens: number;
  completionTokens: number;
  /** images run through tower + projector (feature-cache misses outside the reused prefix) */
  imagesEncoded: number;
  queueMs: number;
  imageEncodeMs: number;
  /** from the first prompt evaluation to the first sampled token */
  prefillMs: number;
  /** queue + image encode + prefill */
  timeToFirstTokenMs: number;
  decodeMs: number;
  /** (completionTokens - 1) / decode seconds; null with fewer than two tokens */
  decodeTokensPerSecond: number | null;
}

export interface ChatResult {
  text: string;
  finishReason: 'stop' | 'length' | 'abort';
  /** the stop string that ended the text (absent when an end-of-generation token did, or not 'stop') */
  stopString?: string;
  /** the parsed output when `jsonSchema` was given and generation stopped on its own */
  json?: unknown;
  /**
   * Set when grammar-constrained output parses as JSON but node-llama-cpp's validator rejects it: its
   * grammar is slightly looser than its validator (e.g. exponents in integers, maxLength counting), so
   * this is a known limitation of the constraint, reported rather than thrown.
   */
  schemaMismatch?: string;
  seed: number;
  template: TemplateChoice;
  usage: ChatUsage;
}

export interface VlmStats {
  pool: PoolStats;
  featureCache: FeatureCacheStats;
  /** images run through the embedder since load */
  imageEncodes: number;
  /** node-llama-cpp's own view of each sequence: next position and token meter */
  sequences: { nextTokenIndex: number; inputTokens: number; outputTokens: number }[];
}

/** A JSON-schema grammar, typed for a schema known only at run time. */
type JsonGrammar = LlamaGrammar & { parse(json: string): unknown };

const ms = (t0: number): number => performance.now() - t0;

export class VisionLanguageModel {
  private readonly features: ImageFeatures;
  private readonly active = new Set<Promise<unknown>>();
  private readonly disposing = new AbortController();
  private disposed = false;

  private constructor(
    readonly model: LlamaModel,
    readonly context: LlamaContext,
    readonly embedder: ImageEmbedder,
    private readonly pool: SequencePool,
    readonly placeholder: Placeholder,
    /** positions one sequence can hold (node-llama-cpp keeps the last one free) */
    readonly sequenceCapacity: number,
    readonly defaultTemplate: TemplateChoice,
    private readonly imageLoader: ImageLoader,
    featureCacheBytes: number,
    private readonly owned: { llama?: Llama; model?: LlamaModel; embedder?: ImageEmbedder },
  ) {
    this.features = new ImageFeatures(embedder, featureCacheBytes);
  }

  /** Loads tower, projector and GGUF, and creates the context. Everything loaded is owned. */
  static async load(options: LoadOptions): Promise<VisionLanguageModel> {
    const o = parseWith(loadOptionsSchema, options, 'load options');
    const imageLoader = checkLoader(options.imageLoader);
    if (options.llama !== undefined && (options.gpu !== undefined || options.maxThreads !== undefined)) {
      throw new ChatError('OPTIONS', 'load options: gpu and maxThreads configure a new node-llama-cpp instance; they cannot apply to the one passed as llama');
    }
    const llama = options.llama ?? (await openLlama({ gpu: o.gpu, maxThreads: o.maxThreads }));
    let model: LlamaModel | undefined;
    let embedder: ImageEmbedder | undefined;
    try {
      embedder = await TowerProjectorEmbedder.load(o.tower, o.projector, o.towerSession ?? {});
      model = await llama.loadModel({ modelPath: o.llm });
      return await VisionLanguageModel.create({
        ...o,
        ...(imageLoader ? { imageLoader } : {}),
        model,
        embedder,
        owns: { llama: options.llama === undefined, model: true, embedder: true },
      });
    } catch (e) {
      await model?.dispose();
      await embedder?.dispose();
      if (options.llama === undefined) await llama.dispose();
      throw e;
    }
  }

  static async create(parts: VlmParts): Promise<VisionLanguageModel> {
    const { model, embedder } = parts;
    const o = parseWith(loadOptionsSchema.omit({ tower: true, projector: true, llm: true }), parts, 'options');
    const imageLoader = checkLoader(parts.imageLoader) ?? dataUrlLoader();
    if (embedder.outputDim !== model.embeddingVectorSize) {
      throw new ChatError(
        'WIDTH',
        `the projector produces ${embedder.outputDim}-wide rows but the LLM's embeddings are ${model.embeddingVectorSize} wide (n_embd); ` +
          'use a projector made for this LLM',
      );
    }
    const template = o.template ?? 'gguf';
    // Render a minimal chat now so that a template the model cannot use fails at load, not at the first chat.
    renderPrompt(model, normalizeChat([{ role: 'user', content: 'hi' }]), template);
    const placeholder = choosePlaceholder(model, o.placeholderToken);
    const contextSize = o.contextSize ?? Math.min(4096, model.trainContextSize);
    const context = await model.createContext({ contextSize, sequences: o.sequences, ...(o.batchSize ? { batchSize: o.batchSize } : {}) });
    try {
      const sequences = Array.from({ length: o.sequences }, () => context.getSequence());
      const info = injectionInfo(sequences[0]!);
      if (info.nEmbdInp !== embedder.outputDim) {
        throw new ChatError('WIDTH', `the projector produces ${embedder.outputDim}-wide rows but the LLM takes ${info.nEmbdInp}-wide input embeddings`);
      }
      const capacity = Math.min(context.contextSize, info.nCtxSeq) - 1;
      const owned = {
        ...(parts.owns?.llama ? { llama: model.llama } : {}),
        ...(parts.owns?.model ? { model } : {}),
        ...(parts.owns?.embedder ? { embedder } : {}),
      };
      const pool = new SequencePool(sequences, o.maxQueue);
      return new VisionLanguageModel(model, context, embedder, pool, placeholder, capacity, template, imageLoader, o.featureCacheBytes, owned);
    } catch (e) {
      await context.dispose();
      throw e;
    }
  }

  /**
   * Starts a chat. The returned stream yields text deltas; `stream.result` resolves with the final text
   * and usage (finishReason 'abort' when options.signal fired — abort never rejects), or rejects on
   * invalid input (ChatInputError, ChatError) and runtime failures.
   */
  chat(messages: readonly ChatMessage[], options: ChatOptions = {}): ChatStream<ChatResult> {
    return new ChatStream<ChatResult>((emit) => {
      const run = this.run(messages, options, emit);
      this.active.add(run);
      void run.finally(() => this.active.delete(run)).catch(() => undefined);
      return run;
    });
  }

  stats(): VlmStats {
    return {
      pool: this.pool.stats(),
      featureCache: this.features.stats(),
      imageEncodes: this.features.encodes,
      sequences: this.pool.slotsView().map((s) => ({
        nextTokenIndex: s.sequence.nextTokenIndex,
        inputTokens: s.sequence.tokenMeter.usedInputTokens,
        outputTokens: s.sequence.tokenMeter.usedOutputTokens,
      })),
    };
  }

  /** Aborts running chats (they finish with 'abort'), rejects queued ones, then frees everything owned. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.pool.close(new ChatError('DISPOSED', 'the vision-language model was disposed'));
    this.disposing.abort(new ChatError('DISPOSED', 'the vision-language model was disposed'));
    await Promise.allSettled([...this.active]);
    await this.context.dispose();
    await this.owned.model?.dispose();
    await this.owned.embedder?.dispose();
    await this.owned.llama?.dispose();
  }

  private async run(messages: readonly ChatMessage[], options: ChatOptions, emit: (delta: string) => void): Promise<ChatResult> {
    if (this.disposed) throw new ChatError('DISPOSED', 'the vision-language model was disposed');
    const tStart = performance.now();
    const chat = normalizeChat(messages);
    const o = parseChatOptions(options);
    const signal = o.signal ? AbortSignal.any([o.signal, this.disposing.signal]) : this.disposing.signal;
    const template = o.template ?? this.defaultTemplate;
    const rendered = renderPrompt(this.model, chat, template);
    // The prompt's length does not depend on the pictures: refuse an over-long one before any image is
    // loaded (and, in the server, prefetched into the tower).
    const draft = planPrompt(rendered, chat.images.map((_, i) => `draft-${i}`), this.embedder.tokensPerImage, this.placeholder.token);
    const n = draft.tokens.length;
    if (n > this.sequenceCapacity) {
      throw new ChatError(
        'CONTEXT_FULL',
        `the prompt needs ${n} positions (${draft.spans.length} image(s) × ${this.embedder.tokensPerImage} rows + ${n - draft.imageTokens} text tokens), ` +
          `but a sequence holds ${this.sequenceCapacity} (contextSize ${this.context.contextSize} minus one)`,
      );
    }
    const images = await loadImages(chat.images, this.imageLoader);
    const keys = images.map((im) => this.features.keyFor(im.sha256));
    const plan = planPrompt(rendered, keys, this.embedder.tokensPerImage, this.placeholder.token);
    const grammar = o.jsonSchema ? await this.grammarFor(o.jsonSchema) : undefined;
    const seed = o.seed ?? randomInt(0, 2 ** 32 - 1);
    const usage: ChatUsage = {
      promptTokens: n, imageTokens: plan.imageTokens, cachedTokens: 0, evaluatedTokens: 0, completionTokens: 0, imagesEncoded: 0,
      queueMs: 0, imageEncodeMs: 0, prefillMs: 0, timeToFirstTokenMs: 0, decodeMs: 0, decodeTokensPerSecond: null,
    };
    const aborted = (): ChatResult => ({ text: '', finishReason: 'abort', seed, template, usage });

    const tQueue = performance.now();
    let slot: SequenceSlot;
    try {
      slot = await this.pool.acquire(plan.keys, signal);
    } catch (e) {
      if (signal.aborted && !(e instanceof ChatError)) return aborted();
      throw e;
    }
    usage.queueMs = ms(tQueue);
    try {
      return await this.runOnSlot(slot, plan, o, { grammar, seed, signal, emit, usage, template, images: images.map((i) => i.bytes), tStart });
    } catch (e) {
      if (signal.aborted && !(e instanceof ChatError && e.code !== 'DISPOSED')) return { ...aborted(), usage };
      throw e;
    } finally {
      this.reconcile(slot, plan);
      this.pool.release(slot);
    }
  }

  private async runOnSlot(
    slot: SequenceSlot,
    plan: PromptPlan,
    o: ResolvedChatOptions,
    c: {
      grammar: JsonGrammar | undefined;
      seed: number;
      signal: AbortSignal;
      emit: (d: string) => void;
      usage: ChatUsage;
      template: TemplateChoice;
      images: Uint8Array[];
      tStart: number;
    },
  ): Promise<ChatResult> {
    const { usage, signal } = c;
    const seq = slot.sequence;
    slot.record.length = confirmedPrefix(slot.record, seq, this.placeholder.token);
    const keep = reusableLength(slot.record, plan);
    await truncateSequence(seq, keep);
    slot.record.length = keep;
    usage.cachedTokens = keep;
    usage.evaluatedTokens = plan.tokens.length - keep;

    // Only images after the reused prefix are needed; the cache usually has them anyway.
    const tEncode = performance.now();
    const rows = new Map<number, Float32Array>();
    for (const [i, span] of plan.spans.entries()) {
      if (span.start < keep) continue;
      if (signal.aborted) throw abortReason(signal);
      const r = await this.features.get(span.key, c.images[span.image]!).catch((e: unknown) => {
        // the tower numbers images within its own batch; name the conversation's image instead
        if (!(e instanceof ImageError)) throw e;
        const inner = e.cause instanceof ImageError ? e.cause : e;
        throw new ChatError('IMAGE', `image ${span.image}: ${inner.message}`, { cause: e });
      });
      if (r.encoded) usage.imagesEncoded++;
      rows.set(i, r.rows);
    }
    usage.imageEncodeMs = ms(tEncode);

    const tPrefill = performance.now();
    const finalRun = await prefillPrompt(seq, plan, keep, (i) => rows.get(i)!, this.placeholder.token, signal);
    const prefillPart = ms(tPrefill);
    const limit = Math.min(o.maxTokens, this.sequenceCapacity + 1 - plan.tokens.length);
    const hold = c.grammar ? new TrailingSpaceHold(c.emit) : undefined;
    const out = await generate(seq, finalRun, {
      sampling: { temperature: o.temperature, topP: o.topP, topK: o.topK, minP: o.minP, seed: c.seed },
      limit,
      stops: [...plan.stops, ...o.stop],
      ...(c.grammar ? { grammar: new LlamaGrammarEvaluationState({ model: this.model, grammar: c.grammar }) } : {}),
      signal,
      onDelta: c.grammar ? (d) => hold!.push(d) : c.emit,
    });
    usage.prefillMs = prefillPart + out.firstTokenMs;
    // everything before the first token: loading and hashing images, rendering, queueing, encoding, prefill
    usage.timeToFirstTokenMs = tPrefill - c.tStart + usage.prefillMs;
    usage.completionTokens = out.completionTokens;
    usage.decodeMs = out.decodeMs;
    usage.decodeTokensPerSecond = out.completionTokens >= 2 && out.decodeMs > 0 ? ((out.completionTokens - 1) * 1000) / out.decodeMs : null;

    const result: ChatResult = {
      text: c.grammar ? withoutTrailingSpace(out.text) : out.text,
      finishReason: out.finishReason,
      ...(out.stopString !== undefined ? { stopString: out.stopString } : {}),
      seed: c.seed,
      template: c.template,
      usage,
    };
    if (c.grammar && out.finishReason === 'stop' && out.stopString === undefined) {
      try {
        result.json = c.grammar.parse(result.text);
      } catch (e) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(result.text);
        } catch {
          // The grammar guarantees JSON syntax; output that does not even parse is a bug, not input.
          throw new ChatError('OUTPUT', `grammar-constrained output is not JSON: ${(e as Error).message}`, { cause: e });
        }
        result.json = parsed;
        result.schemaMismatch = (e as Error).message;
      }
    }
    return result;
  }

  /** After a chat (finished, aborted or failed): record what the sequence provably holds. */
  private reconcile(slot: SequenceSlot, plan: PromptPlan): void {
    const seq = slot.sequence;
    if (seq.disposed) {
      slot.record = [];
      return;
    }
    const confirmed = confirmedPrefix(plan.keys, seq, this.placeholder.token);
    slot.record =
      confirmed === plan.keys.length ? [...plan.keys, ...seq.contextTokens.slice(plan.keys.length, seq.nextTokenIndex)] : plan.keys.slice(0, confirmed);
  }

  private async grammarFor(schema: Record<string, unknown>): Promise<JsonGrammar> {
    checkJsonSchema(schema);
    try {
      // The schema is runtime data; node-llama-cpp validates it while building the grammar.
      return (await this.model.llama.createGrammarForJsonSchema(schema as never)) as JsonGrammar;
    } catch (e) {
      throw new ChatError('OPTIONS', `options.jsonSchema: node-llama-cpp cannot turn this schema into a grammar: ${(e as Error).message}`, { cause: e });
    }
  }
}

function checkLoader(loader: unknown): ImageLoader | undefined {
  if (loader === undefined) return undefined;
  if (typeof loader !== 'function') throw new ChatError('OPTIONS', 'imageLoader must be a function (url, index) => bytes');
  return loader as ImageLoader;
}
