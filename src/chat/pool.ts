/**
 * Hands the sequences of one context to chats. A free sequence whose record shares the longest prefix
 * with the new prompt is preferred (ties: least recently used, so hot prefixes survive longest). When all
 * sequences are busy, chats wait first-in first-out in a bounded queue; a full queue is an error, not an
 * unbounded pile of pending promises.
 */
import type { LlamaContextSequence } from 'node-llama-cpp';

import { abortReason, ChatError } from './errors.js';
import { commonPrefix } from './kv-state.js';
import type { PositionKey } from './prompt.js';

export interface SequenceSlot {
  readonly sequence: LlamaContextSequence;
  /** what each evaluated position of the sequence holds (see kv-state.ts) */
  record: PositionKey[];
  busy: boolean;
  lastUsed: number;
}

interface Waiter {
  resolve(slot: SequenceSlot): void;
  reject(err: unknown): void;
  cleanup(): void;
}

export interface PoolStats {
  sequences: number;
  busy: number;
  queued: number;
  maxQueue: number;
}

export class SequencePool {
  private readonly slots: SequenceSlot[];
  private readonly waiters: Waiter[] = [];
  private clock = 0;
  private closedWith: Error | undefined;

  constructor(
    sequences: readonly LlamaContextSequence[],
    readonly maxQueue: number,
  ) {
    if (sequences.length === 0) throw new RangeError('a sequence pool needs at least one sequence');
    if (!Number.isSafeInteger(maxQueue) || maxQueue < 0) throw new RangeError(`maxQueue must be a non-negative integer, got ${maxQueue}`);
    this.slots = sequences.map((sequence) => ({ sequence, record: [], busy: false, lastUsed: 0 }));
  }

  /** A free slot for a prompt with these position keys, waiting in the queue if none is free. */
  acquire(keys: readonly PositionKey[], signal?: AbortSignal): Promise<SequenceSlot> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    let best: SequenceSlot | undefined;
    let bestLen = -1;
    for (const s of this.slots) {
      if (s.busy) continue;
      const len = commonPrefix(s.record, keys);
      if (len > bestLen || (len === bestLen && s.lastUsed < best!.lastUsed)) [best, bestLen] = [s, len];
    }
    if (best) {
      best.busy = true;
      return Promise.resolve(best);
    }
    if (this.waiters.length >= this.maxQueue) {
      return Promise.reject(
        new ChatError('QUEUE_FULL', `all ${this.slots.length} sequences are busy and ${this.waiters.length} chats are already waiting (maxQueue ${this.maxQueue})`),
      );
    }
    return new Promise<SequenceSlot>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(abortReason(signal!));
      };
      const waiter: Waiter = { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  release(slot: SequenceSlot): void {
    if (!slot.busy) throw new ChatError('STATE', 'releasing a sequence that is not in use');
    slot.lastUsed = ++this.clock;
    const next = this.waiters.shift();
    if (next) {
      next.cleanup();
      next.resolve(slot); // stays busy: handed straight to the next chat
      return;
    }
    slot.busy = false;
  }

  /** Read-only view of the slots (diagnostics). */
  slotsView(): readonly Readonly<SequenceSlot>[] {
    return this.slots;
  }

  stats(): PoolStats {
    return { sequences: this.slots.length, busy: this.slots.filter((s) => s.busy).length, queued: this.waiters.length, maxQueue: this.maxQueue };
  }

  /** Refuses new chats and rejects the waiting ones with `reason`. */
  close(reason: Error): void {
    this.closedWith = reason;
    for (const w of this.waiters.splice(0)) {
      w.cleanup();
      w.reject(reason);
    }
  }
}
