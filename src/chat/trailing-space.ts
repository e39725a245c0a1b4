/**
 * Holds back trailing whitespace of a stream of deltas. node-llama-cpp's JSON grammars end the document
 * with forced newlines (so the model can stop), which an OpenAI client would not expect in `content`:
 * grammar-constrained output is delivered without them, streamed and whole alike. Whitespace that is
 * followed by more text (inside a JSON string, between tokens) is passed on with that text.
 */
export class TrailingSpaceHold {
  private pending = '';

  constructor(private readonly emit: (delta: string) => void) {}

  push(delta: string): void {
    const all = this.pending + delta;
    const end = all.trimEnd().length;
    if (end > 0) this.emit(all.slice(0, end));
    this.pending = all.slice(end);
  }
}

/** The text a TrailingSpaceHold lets through in total. */
export const withoutTrailingSpace = (text: string): string => text.trimEnd();
