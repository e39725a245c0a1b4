// Tiny synthetic models for the chat pipeline tests: an OpenAI-arch tiny tower (32 px, 16 patches,
// width 64) converted to ONNX, a random mlp2x_gelu projector 64 → 64, and synth-llm's tiny Llama
// (n_embd 64, SPM vocabulary with <image>, ChatML template). llama.cpp runs on the CPU with one thread:
// ggml's spinning workers on a 2-core CI box make each tiny decode ~300× slower otherwise.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { getLlama, type Llama } from 'node-llama-cpp';
import sharp from 'sharp';

import { synthProjector } from '../../projector/synth.js';
import { synthLlm, type SynthLlmResult } from '../../src/gguf/synth.js';
import { convertCheckpoint } from '../../src/vision/convert.js';
import { synthCheckpoint } from '../../src/vision/synth.js';

export interface ChatFixture {
  dir: string;
  tower: string;
  projector: string;
  llm: SynthLlmResult;
  llama: Llama;
  /** a projector whose output width (32) does not match the LLM (64) */
  narrowProjector: string;
  cleanup(): Promise<void>;
}

let llamaPromise: Promise<Llama> | undefined;

export function testLlama(): Promise<Llama> {
  llamaPromise ??= getLlama({ gpu: false, build: 'never', progressLogs: false, maxThreads: 1 });
  return llamaPromise;
}

export async function prepareChatFixture(): Promise<ChatFixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm2clip-chat-'));
  const ck = await synthCheckpoint({ arch: 'openai', preset: 'tiny', outDir: path.join(dir, 'ckpt'), seed: 1 });
  const tower = path.join(dir, 'tower');
  const m = await convertCheckpoint(ck.checkpoint, { outDir: tower, onWarning: () => undefined });
  const llm = await synthLlm({ preset: 'tiny', out: path.join(dir, 'tiny.gguf'), seed: 7 });
  const projector = path.join(dir, 'projector');
  synthProjector({ outDir: projector, inputDim: m.width, outputDim: llm.hparams.nEmbd, seed: 2 });
  const narrowProjector = path.join(dir, 'projector-narrow');
  synthProjector({ outDir: narrowProjector, inputDim: m.width, outputDim: 32, seed: 3 });
  return {
    dir,
    tower,
    projector,
    llm,
    llama: await testLlama(),
    narrowProjector,
    cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** A small PNG: a coloured square with a differently coloured quarter, so images differ in content. */
export async function pngBytes(r: number, g: number, b: number, size = 40): Promise<Buffer> {
  const quarter = await sharp({ create: { width: size / 2, height: size / 2, channels: 3, background: { r: 255 - r, g: 255 - g, b: 255 - b } } })
    .png()
    .toBuffer();
  return sharp({ create: { width: size, height: size, channels: 3, background: { r, g, b } } })
    .composite([{ input: quarter, left: 0, top: 0 }])
    .png()
    .toBuffer();
}

export function dataUrl(png: Buffer): string {
  return `data:image/png;base64,${png.toString('base64')}`;
}

export function imagePart(url: string) {
  return { type: 'image_url' as const, image_url: { url } };
}

/**
 * A copy of the synth GGUF whose chat template starts with {{ bos_token }}. The template string is
 * rewritten in place with the same byte length (spaces inside the Jinja expressions make room), so the
 * GGUF's length-prefixed metadata stays valid without a GGUF writer.
 */
export function ggufWithBosTemplate(src: string, out: string): string {
  const buf = fs.readFileSync(src);
  const at = buf.indexOf(Buffer.from(CHATML));
  if (at < 0 || buf.indexOf(Buffer.from(CHATML), at + 1) >= 0) throw new Error('expected the ChatML template exactly once in the GGUF');
  let t = '{{bos_token}}' + CHATML.replaceAll(' + ', '+').replaceAll('{{ ', '{{').replaceAll(' }}', '}}');
  if (t.length > CHATML.length) throw new Error('no room for bos_token in the template');
  t = t.replace('{% endfor %}', `{% endfor %}${' '.repeat(CHATML.length - t.length)}`);
  Buffer.from(t).copy(buf, at);
  fs.writeFileSync(out, buf);
  return out;
}

const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
