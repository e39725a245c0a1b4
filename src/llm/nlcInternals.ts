// Typed, validated access to the node-llama-cpp 3.21.1 internals the injection needs.
// node-llama-cpp has no public embedding input (upstream issue #88), so we reuse its
// private bookkeeping and locks; every field is checked here so that drift in a
// future release fails loudly instead of corrupting a sequence.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

import type { LlamaContext, LlamaContextSequence, LlamaModel, Token, TokenMeter } from 'node-llama-cpp';

import { NativeAddonError } from './errors.js';

export interface LockHandle {
  dispose(): void;
}

/** The part of lifecycle-utils node-llama-cpp locks with. */
export interface NlcLocks {
  acquireLock(scope: readonly unknown[], signal?: AbortSignal): Promise<LockHandle>;
}

export interface SequenceInternals {
  _sequenceId: number;
  _context: LlamaContext;
  _lock: object;
  _contextTokens: Token[];
  _nextTokenIndex: number;
  _loadedTokenPredictions: unknown[];
  _tokenMeter: TokenMeter;
  _disposed: boolean;
  /** evicts speculative predictions from the KV; takes the context lock itself */
  _abortTokenPredictor(skipClearingPredictionsFromState?: boolean, skipLock?: boolean): Promise<void>;
}

export interface ContextInternals {
  _ctx: object;
  _disposed: boolean;
  _backendContextDisposeGuard: { createPreventDisposalHandle(): LockHandle };
  _llama: { _bindings: { AddonContext: abstract new (...args: never[]) => object }; gpu: unknown };
}

export interface ModelInternals {
  _model: object;
}

export interface Internals {
  seq: SequenceInternals;
  ctx: ContextInternals;
  model: ModelInternals;
}

function drift(what: string): never {
  throw new NativeAddonError(
    'INTERNALS',
    `node-llama-cpp internals changed (${what}); the injection bridge supports node-llama-cpp 3.21.1 only`,
  );
}

function expectFields(obj: object, label: string, fields: Record<string, string>): void {
  const rec = obj as Record<string, unknown>;
  for (const [name, type] of Object.entries(fields)) {
    const v = rec[name];
    const ok = type === 'array' ? Array.isArray(v) : type === 'object' ? typeof v === 'object' && v !== null : typeof v === type;
    if (!ok) drift(`${label}.${name} is not a ${type}`);
  }
}

/** Views a sequence through its private fields, after checking they look as in 3.21.1. */
export function internalsOf(sequence: LlamaContextSequence): Internals {
  expectFields(sequence, 'LlamaContextSequence', {
    _sequenceId: 'number',
    _context: 'object',
    _lock: 'object',
    _contextTokens: 'array',
    _nextTokenIndex: 'number',
    _loadedTokenPredictions: 'array',
    _tokenMeter: 'object',
    _disposed: 'boolean',
    _abortTokenPredictor: 'function',
  });
  const seq = sequence as unknown as SequenceInternals;
  const context = seq._context as unknown as object;
  expectFields(context, 'LlamaContext', { _ctx: 'object', _disposed: 'boolean', _backendContextDisposeGuard: 'object', _llama: 'object' });
  const ctx = context as ContextInternals;
  if (typeof ctx._backendContextDisposeGuard.createPreventDisposalHandle !== 'function') drift('no createPreventDisposalHandle');
  const AddonContext = ctx._llama._bindings?.AddonContext;
  // the cheap JS-side type check; the addon then checks the vtable itself
  if (typeof AddonContext !== 'function' || !(ctx._ctx instanceof AddonContext)) drift('LlamaContext._ctx is not an AddonContext');
  const model = (seq._context as LlamaContext).model as LlamaModel;
  expectFields(model, 'LlamaModel', { _model: 'object' });
  return { seq, ctx, model: model as unknown as ModelInternals };
}

let locksPromise: Promise<NlcLocks> | undefined;

/**
 * node-llama-cpp's own lifecycle-utils instance. Locks live in a module-level WeakMap,
 * so a second copy (bundler, version split) would silently stop excluding node-llama-cpp's
 * batch scheduler. We resolve the copy from node-llama-cpp's location and prove it is the
 * same module instance: node-llama-cpp re-exports lifecycle-utils' DisposedError.
 */
export function nodeLlamaCppLocks(): Promise<NlcLocks> {
  locksPromise ??= (async () => {
    const requireHere = createRequire(import.meta.url);
    const nlcEntry = requireHere.resolve('node-llama-cpp');
    const luEntry = createRequire(nlcEntry).resolve('lifecycle-utils');
    const [lu, nlc] = await Promise.all([
      import(pathToFileURL(luEntry).href) as Promise<NlcLocks & { DisposedError?: unknown }>,
      import('node-llama-cpp'),
    ]);
    if (typeof lu.acquireLock !== 'function') drift('lifecycle-utils has no acquireLock');
    if (lu.DisposedError === undefined || lu.DisposedError !== nlc.DisposedError) {
      drift(`lifecycle-utils at ${luEntry} is not the instance node-llama-cpp uses (keep both external and deduped)`);
    }
    return lu;
  })();
  // a failed check stays cached: it cannot change within one process
  return locksPromise;
}
