/**
 * The token id node-llama-cpp's history records at image positions.
 *
 * What the id is matters less than one might think: injectEmbeddings decodes the image rows, and the
 * pipeline keeps its own record of which image sits where (a placeholder cannot tell two images apart),
 * so node-llama-cpp never re-evaluates these positions on our behalf. The id is still visible to
 * node-llama-cpp (history, token meter), so we want one that text can never produce and that no
 * node-llama-cpp logic treats specially:
 *   1. an explicit id from the caller (validated);
 *   2. the vocabulary's `<image>` token, when "<image>" parses to exactly one non-normal token (LLaVA
 *      GGUFs and our synth vocabulary have it, as a control/user-defined token);
 *   3. the first token the vocabulary marks `unused`;
 *   4. the unknown token;
 *   5. the first control token that is neither BOS nor end-of-generation (BOS is avoided because
 *      node-llama-cpp's context shift looks for it at index 0; EOG because a placeholder must never be
 *      mistaken for the end of a turn).
 * If none exists the model is refused with a request for an explicit id.
 */
import type { LlamaModel, Token } from 'node-llama-cpp';

import { ChatError } from './errors.js';

export interface Placeholder {
  token: Token;
  /** which rule picked it, for logs and the bench report */
  reason: 'explicit' | '<image>' | 'unused' | 'unknown' | 'control';
}

export function choosePlaceholder(model: LlamaModel, explicit?: number): Placeholder {
  const nVocab = countTokens(model);
  if (explicit !== undefined) {
    if (!Number.isInteger(explicit) || explicit < 0 || explicit >= nVocab) {
      throw new ChatError('OPTIONS', `placeholderToken ${explicit} is not a token id of this model (0..${nVocab - 1})`);
    }
    return { token: explicit as Token, reason: 'explicit' };
  }
  const image = model.tokenize('<image>', true);
  if (image.length === 1 && !model.getTokenAttributes(image[0]!).normal) return { token: image[0]!, reason: '<image>' };
  let unknown: Token | undefined;
  let control: Token | undefined;
  for (const t of model.iterateAllTokens()) {
    const a = model.getTokenAttributes(t);
    if (a.unused) return { token: t, reason: 'unused' };
    if (a.unknown && unknown === undefined) unknown = t;
    if (a.control && control === undefined && t !== model.tokens.bos && !model.isEogToken(t)) control = t;
  }
  if (unknown !== undefined) return { token: unknown, reason: 'unknown' };
  if (control !== undefined) return { token: control, reason: 'control' };
  throw new ChatError(
    'OPTIONS',
    'this vocabulary has no <image>, unused, unknown or spare control token to stand for image positions; pass placeholderToken explicitly',
  );
}

function countTokens(model: LlamaModel): number {
  let n = 0;
  for (const _ of model.iterateAllTokens()) n++;
  if (n === 0) throw new ChatError('OPTIONS', 'this model has no vocabulary; it cannot hold image placeholders');
  return n;
}
