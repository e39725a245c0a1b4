// Test fixtures for the injection bridge: the tiny random Llama GGUF from src/gguf's
// synthLlm (F32, so its token_embd rows read back bit-exactly) and helpers around it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { getLlama, type Llama, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp';

import { readTokenEmbeddings, synthLlm } from '../../src/gguf/synth.js';
import { readLastLogits } from '../../src/llm/index.js';

export interface TinyLlm {
  path: string;
  /** the vocabulary's `<image>` placeholder id */
  imageToken: Token;
  /** removes the temporary directory */
  cleanup(): void;
}

/** Writes `synth-llm --preset tiny` into a fresh temporary directory. */
export async function prepareTinyLlm(): Promise<TinyLlm> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm2clip-test-llm-'));
  const r = await synthLlm({ preset: 'tiny', out: path.join(dir, 'tiny.gguf'), seed: 7 });
  return { path: r.path, imageToken: r.tokens.image as Token, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** The model's own input embeddings for `tokens` ([n, n_embd] from token_embd.weight). */
export function tokenEmbeddingRows(ggufPath: string, tokens: readonly Token[]): Float32Array {
  return readTokenEmbeddings(ggufPath, tokens);
}

let llamaPromise: Promise<Llama> | undefined;

/**
 * CPU llama (prebuilt binary, never a source build) so parity is deterministic. One
 * thread: ggml's spinning workers on an oversubscribed CI box make each decode of this
 * 64-wide model take ~300 ms instead of ~1 ms.
 */
export async function loadTinyModel(ggufPath: string): Promise<LlamaModel> {
  llamaPromise ??= getLlama({ gpu: false, build: 'never', progressLogs: false, maxThreads: 1 });
  return (await llamaPromise).loadModel({ modelPath: ggufPath });
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

/** Evaluates tokens through node-llama-cpp, requesting logits for the last one, and returns them. */
export async function evalTokensForLogits(sequence: LlamaContextSequence, tokens: readonly Token[]): Promise<Float32Array> {
  const last = tokens[tokens.length - 1]!;
  await sequence.controlledEvaluate([...tokens.slice(0, -1), [last, { generateNext: { token: true } }]]);
  const logits = await readLastLogits(sequence);
  if (!logits) throw new Error('no logits after evaluation');
  return logits;
}

/** Greedy continuation through node-llama-cpp's own sampler, starting by evaluating `first`. */
export async function greedy(sequence: LlamaContextSequence, first: Token, n: number): Promise<Token[]> {
  const out: Token[] = [];
  for await (const tok of sequence.evaluate([first], { temperature: 0 })) {
    out.push(tok);
    if (out.length >= n) break;
  }
  return out;
}
