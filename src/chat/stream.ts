/**
 * Output plumbing: incremental detokenization with stop strings (TextAssembler), and the object a chat
 * returns (ChatStream): an async iterable of text deltas plus a `result` promise.
 */
import type { Token } from 'node-llama-cpp';

/**
 * Turns generated tokens into text deltas. The whole generation is detokenized at every step
 * (node-llama-cpp's detokenizer handles spacing and multi-token UTF-8 sequences only with context), and
 * only stable text is released: trailing U+FFFD (an incomplete UTF-8 sequence whose bytes are still
 * coming) and any suffix that could be the start of a stop string are held back.
 */
export class TextAssembler {
  private readonly tokens: Token[] = [];
  private emitted = 0;
  private full = '';
  private stoppedAt: number | undefined;
  private readonly maxStop: number;

  constructor(
    private readonly detokenize: (tokens: readonly Token[]) => string,
    private readonly stops: readonly string[],
  ) {
    this.maxStop = Math.max(0, ...stops.map((s) => s.length));
  }

  /** The stop string that ended generation, if one did. */
  stopString: string | undefined;

  get stopped(): boolean {
    return this.stoppedAt !== undefined;
  }

  /** Final text: everything generated, cut before the stop string if one matched. */
  get text(): string {
    return this.stoppedAt === undefined ? this.full : this.full.slice(0, this.stoppedAt);
  }

  /** Adds a token; returns the newly releasable text. */
  push(token: Token): string {
    if (this.stopped) throw new Error('TextAssembler: push after a stop string matched');
    this.tokens.push(token);
    this.full = this.detokenize(this.tokens);
    const from = Math.max(0, this.emitted - this.maxStop);
    let at = -1;
    for (const s of this.stops) {
      const i = this.full.indexOf(s, from);
      if (i >= 0 && (at < 0 || i < at)) [at, this.stopString] = [i, s];
    }
    if (at >= 0) {
      this.stoppedAt = Math.max(at, this.emitted); // text already released cannot be taken back
      return this.release(this.stoppedAt);
    }
    let end = this.full.length;
    while (end > this.emitted && this.full.charCodeAt(end - 1) === 0xfffd) end--;
    return this.release(end - this.partialStopLength(end));
  }

  /** Releases whatever is still held back (call once generation is over). */
  flush(): string {
    return this.release(this.stoppedAt ?? this.full.length);
  }

  private partialStopLength(end: number): number {
    for (let len = Math.min(this.maxStop - 1, end - this.emitted); len > 0; len--) {
      const tail = this.full.slice(end - len, end);
      if (this.stops.some((s) => s.startsWith(tail))) return len;
    }
    return 0;
  }

  private release(to: number): string {
    if (to <= this.emitted) return '';
    const delta = this.full.slice(this.emitted, to);
    this.emitted = to;
    return delta;
  }
}

/**
 * What `chat()` returns: iterate it for text deltas as they are generated, await `result` for the final
 * text and usage. Both settle even if only one is consumed; an error rejects `result` and is thrown by
 * the iterator. The iterator may be consumed once. Leaving the iteration early does not stop the
 * generation (the result still completes); pass `signal` in the chat options to stop it.
 */
export class ChatStream<R> implements AsyncIterable<string> {
  readonly result: Promise<R>;
  private readonly buffered: string[] = [];
  private done = false;
  private error: { e: unknown } | undefined;
  private wake: (() => void) | undefined;
  private iterated = false;

  constructor(run: (emit: (delta: string) => void) => Promise<R>) {
    this.result = run((d) => {
      if (d.length === 0) return;
      this.buffered.push(d);
      this.notify();
    }).then(
      (r) => {
        this.done = true;
        this.notify();
        return r;
      },
      (e: unknown) => {
        this.error = { e };
        this.done = true;
        this.notify();
        throw e;
      },
    );
    // A caller that only iterates still sees the error; keep node from reporting it as unhandled.
    this.result.catch(() => undefined);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    if (this.iterated) throw new Error('a chat stream can be iterated only once');
    this.iterated = true;
    for (;;) {
      if (this.buffered.length > 0) {
        yield this.buffered.splice(0).join('');
        continue;
      }
      if (this.error) throw this.error.e;
      if (this.done) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
}
