// Trailing whitespace of grammar output is held back: deltas joined = the trimmed text, for every split.
import { describe, expect, it } from 'vitest';

import { TrailingSpaceHold, withoutTrailingSpace } from '../../src/chat/trailing-space.js';

function run(deltas: string[]): string[] {
  const out: string[] = [];
  const h = new TrailingSpaceHold((d) => out.push(d));
  for (const d of deltas) h.push(d);
  return out;
}

describe('TrailingSpaceHold', () => {
  it('drops only the trailing whitespace, passing inner whitespace on with the text after it', () => {
    expect(run(['{"answer"', ':', ' ', '"top', ' ', 'left"', '}', '\n\n', '\n\n', '\n'])).toEqual(['{"answer"', ':', ' "top', ' left"', '}']);
    expect(run(['\n', '  '])).toEqual([]);
    expect(run([' a ', 'b\t', '\n'])).toEqual([' a', ' b']);
  });

  it('joins to withoutTrailingSpace(text) for every way of cutting a text into deltas', () => {
    const text = ' {\n\t"a": "x y",\n "b": [1, 2] }\n\n\n\n';
    for (let i = 0; i <= text.length; i++) {
      for (let j = i; j <= text.length; j++) {
        const parts = [text.slice(0, i), text.slice(i, j), text.slice(j)];
        const out = run(parts);
        expect(out.join('')).toBe(withoutTrailingSpace(text));
        expect(out.every((d) => d.length > 0)).toBe(true);
      }
    }
  });
});
