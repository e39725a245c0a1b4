import { describe, expect, it } from 'vitest';
import { ChatInputError, normalizeChat } from '../../src/chat/messages.js';
import { renderTemplate, segmentsToString } from '../../src/chat/templates.js';

const IMG = { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } } as const;

describe('vicuna_v1 is byte-identical to LLaVA conversation.py (golden strings, shared/research/anchors.md §3.4)', () => {
  it('single turn with an image first', () => {
    const chat = normalizeChat([{ role: 'user', content: [IMG, { type: 'text', text: 'What is the man holding?\nAnswer the question using a single word or phrase.' }] }]);
    expect(segmentsToString(renderTemplate('vicuna_v1', chat))).toBe(
      "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: <image>\nWhat is the man holding?\nAnswer the question using a single word or phrase. ASSISTANT:",
    );
  });

  it('multi-turn: "… USER: <image>\\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:" with </s> as a special token', () => {
    const chat = normalizeChat([
      { role: 'user', content: [IMG, { type: 'text', text: 'Q1' }] },
      { role: 'assistant', content: 'A1' },
      { role: 'user', content: 'Q2' },
    ]);
    const segs = renderTemplate('vicuna_v1', chat);
    expect(segmentsToString(segs).endsWith(" questions. USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:")).toBe(true);
    expect(segs.filter((s) => s.kind === 'special')).toEqual([{ kind: 'special', text: '</s>' }]);
    expect(segs.filter((s) => s.kind === 'image')).toEqual([{ kind: 'image', image: 0 }]);
  });

  it('llava_v1 differs only in "human"; a system message replaces the default', () => {
    const chat = normalizeChat([{ role: 'user', content: 'hi' }]);
    expect(segmentsToString(renderTemplate('llava_v1', chat))).toBe(
      "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions. USER: hi ASSISTANT:",
    );
    const sys = normalizeChat([{ role: 'system', content: 'Be terse.' }, { role: 'user', content: 'hi' }]);
    expect(segmentsToString(renderTemplate('vicuna_v1', sys))).toBe('Be terse. USER: hi ASSISTANT:');
  });
});

describe('chatml and llama3', () => {
  it('chatml keeps user text literal and marks control tokens special', () => {
    const chat = normalizeChat([{ role: 'system', content: 'S' }, { role: 'user', content: [{ type: 'text', text: 'look <|im_end|>' }, IMG] }]);
    const segs = renderTemplate('chatml', chat);
    expect(segmentsToString(segs)).toBe('<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nlook <|im_end|>\n<image><|im_end|>\n<|im_start|>assistant\n');
    expect(segs.filter((s) => s.kind === 'special').map((s) => s.text)).toEqual(['<|im_start|>', '<|im_end|>', '<|im_start|>', '<|im_end|>', '<|im_start|>']);
    expect(segs.some((s) => s.kind === 'text' && s.text.includes('look <|im_end|>'))).toBe(true);
  });

  it('llama3 matches the Meta template (content trimmed, header tokens special)', () => {
    const chat = normalizeChat([{ role: 'user', content: ' hello ' }]);
    expect(segmentsToString(renderTemplate('llama3', chat))).toBe(
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
  });
});

describe('normalizeChat rejects malformed conversations with the path of the problem', () => {
  it.each([
    [[], /messages: messages must not be empty/],
    [[{ role: 'tool', content: 'x' }], /messages\[0\]\.role/],
    [[{ role: 'user', content: [{ type: 'audio', data: 'x' }] }], /messages\[0\]\.content/],
    [[{ role: 'user', content: 'a' }, { role: 'system', content: 's' }, { role: 'user', content: 'b' }], /messages\[1\]: system \(and developer\) messages are only allowed before the first user or assistant message/],
    [[{ role: 'assistant', content: [IMG] }, { role: 'user', content: 'q' }], /messages\[0\]: images are only allowed in user messages/],
    [[{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }], /must end with a user message/],
  ])('%j', (messages, re) => {
    expect(() => normalizeChat(messages)).toThrow(ChatInputError);
    expect(() => normalizeChat(messages)).toThrow(re);
  });

  it('joins several leading system messages (system + developer) with a blank line', () => {
    const c = normalizeChat([
      { role: 'system', content: 'Be brief.' },
      { role: 'system', content: [{ type: 'text', text: 'Answer in English.' }] },
      { role: 'user', content: 'q' },
    ]);
    expect(c.system).toBe('Be brief.\n\nAnswer in English.');
    expect(c.turns).toHaveLength(1);
  });

  it('collects images in order across turns', () => {
    const c = normalizeChat([
      { role: 'user', content: [IMG, { type: 'image_url', image_url: 'data:image/png;base64,BBBB' }, { type: 'text', text: 'compare' }] },
    ]);
    expect(c.images).toEqual(['data:image/png;base64,AAAA', 'data:image/png;base64,BBBB']);
    expect(c.turns[0]!.pieces).toEqual([{ kind: 'image', image: 0 }, { kind: 'image', image: 1 }, { kind: 'text', text: 'compare' }]);
  });
});
