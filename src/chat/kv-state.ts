/**
 * Our record of what each position of a sequence holds, and prefix reuse against it.
 *
 * node-llama-cpp's own history has the same placeholder id at every image row, so it cannot tell two
 * images apart (or an image from its absence after a failed injection). We therefore keep, per
 * sequence, one PositionKey per evaluated position — a token id, or (image content key, row) — and
 * reuse a sequence's KV only for the common prefix of that record and the new prompt. Everything after
 * it is erased through node-llama-cpp (eraseContextTokenRanges, which takes its own locks) and
 * evaluated again.
 */
import type { LlamaContextSequence, Token } from 'node-llama-cpp';

import { ChatError } from './errors.js';
import { keyEquals, type PositionKey, type PromptPlan } from './prompt.js';

export function commonPrefix(a: readonly PositionKey[], b: readonly PositionKey[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && keyEquals(a[i]!, b[i]!)) i++;
  return i;
}

/**
 * How many leading positions of `plan` can stay in the KV. At most n-1: node-llama-cpp samples from
 * the logits of the last prompt token, so that one is always evaluated again. Never in the middle of an
 * image: a partially kept image is re-injected whole (cannot happen with complete records, but cheap to
 * guarantee).
 */
export function reusableLength(record: readonly PositionKey[], plan: PromptPlan): number {
  let k = Math.min(commonPrefix(record, plan.keys), plan.keys.length - 1);
  for (const s of plan.spans) if (s.start < k && k < s.start + s.length) k = s.start;
  return Math.max(0, k);
}

/**
 * The longest prefix of `record` that node-llama-cpp's view of the sequence confirms: same length
 * bound, same token ids, the placeholder at image rows. Anything beyond it is treated as unknown.
 */
export function confirmedPrefix(record: readonly PositionKey[], sequence: LlamaContextSequence, placeholder: Token): number {
  const ctx = sequence.contextTokens;
  const n = Math.min(record.length, ctx.length, sequence.nextTokenIndex);
  let i = 0;
  for (; i < n; i++) {
    const k = record[i]!;
    if ((typeof k === 'number' ? k : placeholder) !== ctx[i]) break;
  }
  return i;
}

/** Erases positions [keep, end) of the sequence so that it holds exactly the first `keep` record entries. */
export async function truncateSequence(sequence: LlamaContextSequence, keep: number): Promise<void> {
  const end = sequence.nextTokenIndex;
  if (keep < end) await sequence.eraseContextTokenRanges([{ start: keep, end }]);
  // eraseContextTokenRanges silently re-evaluates the remaining history as text when it cannot delete
  // KV cells (which would turn images into placeholder tokens); for the sequences we use (no SWA, no
  // context shift) it deletes, and this check proves it did not do anything else.
  if (sequence.nextTokenIndex !== keep || sequence.contextTokens.length !== keep) {
    throw new ChatError('STATE', `erasing positions ${keep}..${end} left the sequence at ${sequence.nextTokenIndex} (${sequence.contextTokens.length} tokens)`);
  }
}
