// The bundled demo model end to end through the real runtime (tower ONNX → projector → node-llama-cpp with
// image-embedding injection → greedy answer) on the held-out demo questions: accuracy ≥ 95% and within 2
// points of the same model's PyTorch accuracy recorded in models/demo/manifest.json. Also: the manifest's
// checksums hold, and `llm2clip chat` with no model flags answers with the demo model.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { cmdChat } from '../../src/cli/chat-command.js';
import type { VisionLanguageModel } from '../../src/chat/vlm.js';
import { demoSplit } from '../../src/demo/dataset.js';
import { chatSplit } from '../../src/demo/conversations.js';
import { evaluateChats, evaluateDemo, loadDemoModel } from '../../src/demo/evaluate.js';
import { demoModelDir, findDemoModel } from '../../src/demo/model.js';
import { renderScene, type QuestionType, type Scene } from '../../src/demo/world.js';

interface DemoManifest {
  world: {
    seed: number; heldout: number; questionsPerImage: number; minObjects: number; maxObjects: number; types: QuestionType[];
    chat?: { heldout: number; twoMaxObjects: number };
  };
  files: Record<string, { sha256: string; bytes: number }>;
  accuracy: {
    final: {
      pytorch: { accuracy: number; questions: number };
      runtime: { accuracy: number; questions: number };
      chatRuntime?: { accuracy: number; turns: number; byKind: Record<string, { accuracy: number }> };
    };
  };
}

const dir = demoModelDir();
const built = fs.existsSync(path.join(dir, 'manifest.json')) && findDemoModel() !== undefined;
const manifest = (built ? JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) : undefined) as DemoManifest;
// Until the trained demo model is committed (models/demo/recipe/build.sh), say so instead of failing.
const describeBuilt = built ? describe : describe.skip;
const missing = built ? '' : ' (SKIPPED: models/demo is not built yet — npm run build && bash models/demo/recipe/build.sh)';

describeBuilt(`bundled demo model: files${missing}`, () => {
  it('matches the checksums in its manifest and stays within 30 MB', () => {
    let total = 0;
    for (const [file, want] of Object.entries(manifest.files)) {
      const bytes = fs.readFileSync(path.join(dir, file));
      expect(bytes.length, file).toBe(want.bytes);
      expect(createHash('sha256').update(bytes).digest('hex'), file).toBe(want.sha256);
      total += bytes.length;
    }
    expect(Object.keys(manifest.files)).toEqual(expect.arrayContaining(['tower/tower.json', 'tower/tower.onnx', 'projector/projector.json', 'projector/projector.safetensors', 'llm.gguf']));
    expect(total).toBeLessThanOrEqual(30 * 1024 * 1024);
  });
});

describeBuilt(`bundled demo model: held-out accuracy through the real runtime${missing}`, () => {
  let vlm: VisionLanguageModel;
  const w = manifest?.world ?? { seed: 1, heldout: 0, questionsPerImage: 1, minObjects: 1, maxObjects: 1, types: [] };
  const { scenes, questions } = demoSplit('heldout', w.heldout, w.seed, { questionsPerImage: w.questionsPerImage, minObjects: w.minObjects, maxObjects: w.maxObjects, types: w.types });

  beforeAll(async () => {
    if (!built) return;
    const paths = findDemoModel();
    if (!paths) throw new Error(`the demo model is missing under ${dir}`);
    vlm = await loadDemoModel(paths, 2);
  });
  afterAll(async () => {
    await vlm?.dispose();
  });

  it(`answers ≥ 95% of ${w.heldout} held-out questions, within 2 points of PyTorch`, async () => {
    expect(questions.length).toBeGreaterThanOrEqual(200);
    const report = await evaluateDemo(vlm, questions, (name) => renderScene(scenes.get(name) as Scene));
    const pytorch = manifest.accuracy.final.pytorch;
    const summary = { runtime: report.accuracy, pytorch: pytorch.accuracy, byType: report.byType, mistakes: report.mistakes.slice(0, 5) };
    expect(report.questions, JSON.stringify(summary)).toBe(pytorch.questions);
    expect(report.accuracy, JSON.stringify(summary)).toBeGreaterThanOrEqual(0.95);
    expect(Math.abs(report.accuracy - pytorch.accuracy), JSON.stringify(summary)).toBeLessThanOrEqual(0.02);
  }, 600_000);

  // Conversation formats (several turns, two pictures in one message, JSON answers): the shipped model was
  // fine-tuned on them (recipe stage 3); greedy decoding makes the held-out result reproducible exactly.
  const chat = manifest?.world.chat;
  it.skipIf(!chat)('answers held-out conversations turn by turn: ≥ 90% of turns, every kind ≥ 85%, within 2 points of the recorded run', async () => {
    const { scenes, samples } = chatSplit('heldout', chat!.heldout, w.seed, { minObjects: w.minObjects, maxObjects: w.maxObjects, twoMaxObjects: chat!.twoMaxObjects });
    const report = await evaluateChats(vlm, samples, (name) => renderScene(scenes.get(name) as Scene));
    const recorded = manifest.accuracy.final.chatRuntime!;
    const summary = JSON.stringify({ accuracy: report.accuracy, byKind: report.byKind, recorded: recorded.accuracy, mistakes: report.mistakes.slice(0, 5) });
    expect(report.turns, summary).toBe(recorded.turns);
    expect(Math.abs(report.accuracy - recorded.accuracy), summary).toBeLessThanOrEqual(0.02);
    expect(report.accuracy, summary).toBeGreaterThanOrEqual(0.9);
    for (const k of ['single', 'multi', 'two', 'json']) expect(report.byKind[k]?.accuracy ?? 0, `${k}: ${summary}`).toBeGreaterThanOrEqual(0.85);
  }, 600_000);
});

describeBuilt(`llm2clip chat without a model${missing}`, () => {
  it('uses the bundled demo model', async () => {
    const scene: Scene = {
      background: { kind: 'solid', a: [235, 235, 230] },
      objects: [{ colour: 'red', shape: 'circle', cell: 4, dx: 0, dy: 0, size: 12, rgb: [222, 30, 30] }],
    };
    const file = path.join(fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'demo-chat-')), 'red-circle.png');
    fs.writeFileSync(file, await renderScene(scene));
    const out: string[] = [];
    const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
    try {
      await cmdChat(['--image', file, '--temperature', '0', '--max-tokens', '8', '--gpu', 'off', '--threads', '2', 'What colour is the circle?']);
    } finally {
      o.mockRestore();
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
    expect(out.join('').trim().toLowerCase()).toBe('red');
  });
});
