// `llm2clip chat`: streams the same answer the library gives for the same seed; flags are validated.
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { cmdChat } from '../../src/cli/chat-command.js';
import { VisionLanguageModel } from '../../src/chat/index.js';
import { dataUrl, imagePart, pngBytes, prepareChatFixture, type ChatFixture } from './fixtures.js';

let f: ChatFixture;
let imageFile: string;
let png: Buffer;

beforeAll(async () => {
  f = await prepareChatFixture();
  png = await pngBytes(30, 160, 90);
  imageFile = path.join(f.dir, 'picture.png');
  fs.writeFileSync(imageFile, png);
});

afterAll(async () => {
  await f?.cleanup();
});

async function runCli(argv: string[]): Promise<{ stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  try {
    await cmdChat(argv);
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
  return { stdout: out.join(''), stderr: err.join('') };
}

describe('llm2clip chat', () => {
  it('streams the answer for an image file, equal to the library with the same seed', async () => {
    const base = ['--tower', f.tower, '--projector', f.projector, '--llm', f.llm.path, '--gpu', 'off', '--threads', '1', '--context-size', '256'];
    const { stdout, stderr } = await runCli([...base, '--image', imageFile, '--max-tokens', '10', '--temperature', '0.7', '--seed', '5', '--stats', 'what is in the picture?']);
    const stats = JSON.parse(stderr.trim().split('\n').pop()!) as { usage: { imageTokens: number; completionTokens: number }; seed: number };
    expect(stats.seed).toBe(5);
    expect(stats.usage.imageTokens).toBe(16);

    const vlm = await VisionLanguageModel.load({ tower: f.tower, projector: f.projector, llm: f.llm.path, llama: f.llama, contextSize: 256 });
    try {
      const r = await vlm.chat([{ role: 'user', content: [imagePart(dataUrl(png)), { type: 'text', text: 'what is in the picture?' }] }], { maxTokens: 10, temperature: 0.7, seed: 5 }).result;
      expect(stdout).toBe(`${r.text}\n`);
      expect(stats.usage.completionTokens).toBe(r.usage.completionTokens);
    } finally {
      await vlm.dispose();
    }
  });

  it('names the flag that is wrong', async () => {
    const base = ['--tower', f.tower, '--projector', f.projector, '--llm', f.llm.path];
    await expect(runCli(['--projector', f.projector, '--llm', f.llm.path, 'q'])).rejects.toThrow(/^--tower is required/);
    await expect(runCli([...base, '--temperature', 'warm', 'q'])).rejects.toThrow(/^--temperature "warm": /);
    await expect(runCli([...base, '--max-tokens', '0', 'q'])).rejects.toThrow(/^--max-tokens "0": /);
    await expect(runCli([...base, '--template', 'alpaca', 'q'])).rejects.toThrow(/^--template "alpaca": /);
    await expect(runCli([...base, '--json-schema', path.join(f.dir, 'missing.json'), 'q'])).rejects.toThrow(/^--json-schema .*missing\.json: cannot read it as JSON/);
    await expect(runCli([...base, '--image', path.join(f.dir, 'missing.png'), 'q'])).rejects.toThrow(/cannot open image file .*missing\.png/);
    await expect(runCli([...base, 'two', 'questions'])).rejects.toThrow(/exactly one question \(got 2\)/);
    await expect(runCli([...base, '--bogus', 'q'])).rejects.toThrow(/Unknown option '--bogus'/);
  });
});
