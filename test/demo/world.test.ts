// The demo world: deterministic by seed, answers consistent with the scene, held-out images never in train,
// PNGs at the tower's resolution, and LLaVA-format output.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { cellLabels, demoSplit, toLlava, writeDemoDataset } from '../../src/demo/dataset.js';
import {
  askQuestion, COLOURS, IMAGE_SIZE, normalizeAnswer, NUMBERS, PLURALS, POSITIONS, QUESTION_TYPES, randomScene, renderScene, renderSceneRaw,
  SHAPES, splitRng, type Scene,
} from '../../src/demo/world.js';
import { mulberry32 } from '../../src/util/random.js';

/** Answers a question by reading the scene directly (an independent oracle for the generator). */
function oracle(scene: Scene, q: string): string | undefined {
  const objs = scene.objects;
  let m: RegExpMatchArray | null;
  if ((m = q.match(/^(?:What colou?r is|Which colour is) the (\w+)\?$/))) return objs.find((o) => o.shape === m![1])?.colour;
  if ((m = q.match(/^(?:What shape is the|What is the shape of the) (\w+) object\?$|^Which shape is (\w+)\?$/))) return objs.find((o) => o.colour === (m![1] ?? m![2]))?.shape;
  if ((m = q.match(/^Where is the (\w+) (\w+)(?: in the picture)?\?$/))) {
    const o = objs.find((x) => x.colour === m![1] && x.shape === m![2]);
    return o && POSITIONS[o.cell];
  }
  if ((m = q.match(/^Is there an? (\w+) (\w+)(?: in the picture)?\?$/))) return objs.some((o) => o.colour === m![1] && o.shape === m![2]) ? 'yes' : 'no';
  if ((m = q.match(/^(?:How many (.+?) are (?:there|in the picture)\?|Count the (.+?)\.)$/))) {
    const what = m[1] ?? m[2]!;
    if (what === 'objects') return NUMBERS[objs.length];
    const colour = what.match(/^(\w+) objects$/)?.[1];
    if (colour) return NUMBERS[objs.filter((o) => o.colour === colour).length];
    const shape = SHAPES.find((s) => PLURALS[s] === what);
    return shape && NUMBERS[objs.filter((o) => o.shape === shape).length];
  }
  if ((m = q.match(/^What is (?:at|in) the (.+)\?$/))) {
    const o = objs.find((x) => POSITIONS[x.cell] === m![1]);
    return o ? `${/^[aeiou]/.test(o.colour) ? 'an' : 'a'} ${o.colour} ${o.shape}` : 'nothing';
  }
  return undefined;
}

describe('demo world', () => {
  it('answers every question the way the scene says', () => {
    const r = mulberry32(7);
    const seen = new Set<string>();
    for (let i = 0; i < 400; i++) {
      const scene = randomScene(r, { minObjects: 1, maxObjects: 4 });
      expect(new Set(scene.objects.map((o) => o.cell)).size).toBe(scene.objects.length);
      for (const type of QUESTION_TYPES) {
        const q = askQuestion(r, scene, type);
        if (!q) continue;
        seen.add(type);
        expect(oracle(scene, q.question), q.question).toBe(q.answer);
        expect(normalizeAnswer(q.answer)).toBe(q.answer);
      }
    }
    expect([...seen].sort()).toEqual([...QUESTION_TYPES].sort());
  });

  it('is deterministic by seed, and held-out images are not training images', async () => {
    const a = demoSplit('heldout', 30, 5);
    const b = demoSplit('heldout', 30, 5);
    expect(a.questions).toEqual(b.questions);
    const train = demoSplit('train', 600, 5);
    const key = (s: Scene) => JSON.stringify(s);
    const trainScenes = new Set([...train.scenes.values()].map(key));
    for (const s of a.scenes.values()) expect(trainScenes.has(key(s))).toBe(false);
    expect(demoSplit('heldout', 30, 6).questions).not.toEqual(a.questions);
    // rendering is deterministic too
    const s = [...a.scenes.values()][0]!;
    expect(Buffer.from(await renderSceneRaw(s)).equals(Buffer.from(await renderSceneRaw(s)))).toBe(true);
  });

  it('renders RGB PNGs at the tower resolution whose pixels equal the raw render', async () => {
    const scene = randomScene(splitRng(3, 'train'));
    const png = await renderScene(scene);
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([IMAGE_SIZE, IMAGE_SIZE, 3]);
    expect(Buffer.from(await renderSceneRaw(scene)).equals(data)).toBe(true);
    // an object's colour is visible at its cell centre
    const o = scene.objects[0]!;
    const cx = (o.cell % 3) * 16 + 8 + o.dx;
    const cy = Math.floor(o.cell / 3) * 16 + 8 + o.dy;
    const px = [...data.subarray((cy * IMAGE_SIZE + cx) * 3, (cy * IMAGE_SIZE + cx) * 3 + 3)];
    expect(Math.max(...px.map((v, i) => Math.abs(v - o.rgb[i]!)))).toBeLessThan(40);
  });

  it('labels cells and writes a LLaVA-format dataset', async () => {
    const { scenes, questions } = demoSplit('train', 12, 2);
    const scene = [...scenes.values()][0]!;
    const labels = cellLabels(scene);
    for (const o of scene.objects) expect(labels[o.cell]).toBe(1 + COLOURS.indexOf(o.colour) * SHAPES.length + SHAPES.indexOf(o.shape));
    expect(labels.filter((l) => l > 0).length).toBe(scene.objects.length);
    const llava = toLlava(questions);
    expect(llava[0]!.conversations[0]!.value.startsWith('<image>\n')).toBe(true);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'demo-world-'));
    try {
      const s = await writeDemoDataset({ outDir: dir, train: 9, heldout: 6, seed: 4 });
      const train = JSON.parse(fs.readFileSync(s.train.file, 'utf8')) as { image: string }[];
      const held = JSON.parse(fs.readFileSync(s.heldout.file, 'utf8')) as { image: string }[];
      expect(train.length).toBe(9);
      expect(held.length).toBe(6);
      for (const e of [...train, ...held]) expect(fs.existsSync(path.join(s.imageDir, e.image))).toBe(true);
      expect(new Set(train.map((e) => e.image)).size + new Set(held.map((e) => e.image)).size).toBe(s.train.images + s.heldout.images);
      const world = JSON.parse(fs.readFileSync(path.join(dir, 'world.json'), 'utf8')) as { colours: string[]; grid: number };
      expect(world.colours).toEqual([...COLOURS]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
