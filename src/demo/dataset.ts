/**
 * Writers for the demo world's data:
 * - a LLaVA-format visual-QA dataset (train + held-out JSON files over PNG images, plus scenes.json
 *   with each image's objects, so the recipe knows what is in every picture);
 * - a raw-pixel tower set (uint8 [N, S, S, 3] + per-cell labels) for pretraining the vision tower.
 * Train and held-out images come from different random streams of one seed, so they never coincide.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { chatSplit, chatToLlava, type ChatSplitOptions } from './conversations.js';
import {
  askQuestions, COLOURS, GRID, IMAGE_SIZE, POSITIONS, QUESTION_TYPES, randomScene, renderScene, renderSceneRaw, SHAPES, splitRng,
  type QuestionType, type Scene, type WorldOptions,
} from './world.js';

export interface LlavaEntry {
  id: string;
  image: string;
  conversations: { from: 'human' | 'gpt'; value: string }[];
}

/** A held-out or train question with the metadata the evaluation reports by. */
export interface DemoQuestion {
  id: string;
  image: string;
  type: QuestionType;
  question: string;
  answer: string;
  objects: number;
}

export interface DemoDatasetOptions extends WorldOptions {
  outDir: string;
  /** questions in each split */
  train: number;
  heldout: number;
  seed: number;
  /** questions asked about each image (default 3) */
  questionsPerImage?: number;
  /** a different world for the held-out split (e.g. fewer objects than training saw) */
  heldoutWorld?: WorldOptions;
  onProgress?: (done: number, total: number) => void;
}

export interface DemoDatasetSummary {
  train: { questions: number; images: number; file: string };
  heldout: { questions: number; images: number; file: string };
  scenes: string;
  imageDir: string;
}

/** Per-cell class: 0 = empty, else 1 + colourIndex * SHAPES.length + shapeIndex. */
export function cellLabels(scene: Scene): number[] {
  const labels = new Array<number>(GRID * GRID).fill(0);
  for (const o of scene.objects) labels[o.cell] = 1 + COLOURS.indexOf(o.colour) * SHAPES.length + SHAPES.indexOf(o.shape);
  return labels;
}

export const CELL_CLASSES = 1 + COLOURS.length * SHAPES.length;

/** The world's vocabulary and geometry, for the recipe's Python steps. */
export function worldDescription(): { imageSize: number; grid: number; colours: readonly string[]; shapes: readonly string[]; positions: readonly string[]; cellClasses: string } {
  return { imageSize: IMAGE_SIZE, grid: GRID, colours: COLOURS, shapes: SHAPES, positions: POSITIONS, cellClasses: '0 empty, else 1 + colour * shapes + shape' };
}

/** Scenes + questions of one split, deterministic by seed (no rendering). */
export function demoSplit(split: 'train' | 'heldout', questions: number, seed: number, o: WorldOptions & { questionsPerImage?: number } = {}): { scenes: Map<string, Scene>; questions: DemoQuestion[] } {
  const r = splitRng(seed, split);
  const per = o.questionsPerImage ?? 3;
  const scenes = new Map<string, Scene>();
  const out: DemoQuestion[] = [];
  for (let i = 0; out.length < questions; i++) {
    const scene = randomScene(r, o);
    const image = `${split}-${String(i).padStart(6, '0')}.png`;
    const qs = askQuestions(r, scene, Math.min(per, questions - out.length), o.types ?? QUESTION_TYPES);
    if (qs.length === 0) continue;
    scenes.set(image, scene);
    qs.forEach((q, k) => out.push({ id: `${split}-${i}-${k}`, image, type: q.type, question: q.question, answer: q.answer, objects: scene.objects.length }));
  }
  return { scenes, questions: out };
}

export function toLlava(questions: readonly DemoQuestion[]): LlavaEntry[] {
  return questions.map((q) => ({
    id: q.id,
    image: q.image,
    conversations: [
      { from: 'human', value: `<image>\n${q.question}` },
      { from: 'gpt', value: q.answer },
    ],
  }));
}

/**
 * Writes OUT/images/*.png, OUT/train.json and OUT/heldout.json (LLaVA format), OUT/train-questions.json and
 * OUT/heldout-questions.json (with question types), and OUT/scenes.json.
 */
export async function writeDemoDataset(o: DemoDatasetOptions): Promise<DemoDatasetSummary> {
  const imageDir = join(o.outDir, 'images');
  mkdirSync(imageDir, { recursive: true });
  const summary: Partial<DemoDatasetSummary> = { imageDir, scenes: join(o.outDir, 'scenes.json') };
  const allScenes: Record<string, Scene> = {};
  const splits = [['train', o.train], ['heldout', o.heldout]] as const;
  const total = o.train + o.heldout;
  let done = 0;
  for (const [split, n] of splits) {
    const { scenes, questions } = demoSplit(split, n, o.seed, split === 'heldout' && o.heldoutWorld ? { ...o, ...o.heldoutWorld } : o);
    for (const [image, scene] of scenes) {
      writeFileSync(join(imageDir, image), await renderScene(scene));
      allScenes[image] = scene;
      done += questions.filter((q) => q.image === image).length;
      o.onProgress?.(done, total);
    }
    const file = join(o.outDir, `${split}.json`);
    writeFileSync(file, JSON.stringify(toLlava(questions), null, 1) + '\n');
    writeFileSync(join(o.outDir, `${split}-questions.json`), JSON.stringify(questions, null, 1) + '\n');
    summary[split] = { questions: questions.length, images: scenes.size, file };
  }
  writeFileSync(summary.scenes!, JSON.stringify(allScenes) + '\n');
  writeFileSync(join(o.outDir, 'world.json'), JSON.stringify(worldDescription(), null, 2) + '\n');
  return summary as DemoDatasetSummary;
}

/**
 * The tower's pretraining set: OUT/pixels.u8 (uint8 [n, S, S, 3], exactly the pixels of the PNGs the
 * dataset would hold), OUT/labels.u8 (uint8 [n, 9] cell classes), OUT/meta.json. Drawn from its own
 * stream (seed + 'tower'), disjoint from both QA splits.
 */
export async function writeTowerSet(outDir: string, n: number, seed: number, o: WorldOptions = {}, onProgress?: (done: number, total: number) => void): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  const r = splitRng(seed ^ 0x5a5a5a5a, 'train');
  const S = IMAGE_SIZE;
  const pixels = Buffer.alloc(n * S * S * 3);
  const labels = Buffer.alloc(n * GRID * GRID);
  for (let i = 0; i < n; i++) {
    const scene = randomScene(r, o);
    pixels.set(await renderSceneRaw(scene), i * S * S * 3);
    labels.set(cellLabels(scene), i * GRID * GRID);
    if (onProgress && (i % 500 === 0 || i === n - 1)) onProgress(i + 1, n);
  }
  writeFileSync(join(outDir, 'pixels.u8'), pixels);
  writeFileSync(join(outDir, 'labels.u8'), labels);
  writeFileSync(
    join(outDir, 'meta.json'),
    JSON.stringify({ count: n, imageSize: S, grid: GRID, colours: COLOURS, shapes: SHAPES, classes: 'cell: 0 empty, else 1 + colour * shapes + shape', seed }, null, 2) + '\n',
  );
}

/**
 * The conversation-format set (conversations.ts): OUT/images/*.png, OUT/train.json (LLaVA format, two-picture
 * samples with an image list), OUT/heldout-chats.json (held-out conversations with kinds and gold answers).
 */
export async function writeChatDataset(
  outDir: string,
  train: number,
  heldout: number,
  seed: number,
  o: ChatSplitOptions = {},
  onProgress?: (done: number, total: number) => void,
): Promise<{ train: number; heldout: number; images: number }> {
  const imageDir = join(outDir, 'images');
  mkdirSync(imageDir, { recursive: true });
  let images = 0;
  const total = train + heldout;
  let done = 0;
  for (const [split, n] of [['train', train], ['heldout', heldout]] as const) {
    const { scenes, samples } = chatSplit(split, n, seed, o);
    for (const [name, scene] of scenes) {
      writeFileSync(join(imageDir, name), await renderScene(scene));
      images++;
    }
    if (split === 'train') writeFileSync(join(outDir, 'train.json'), JSON.stringify(samples.map(chatToLlava)) + '\n');
    else writeFileSync(join(outDir, 'heldout-chats.json'), JSON.stringify(samples, null, 1) + '\n');
    done += n;
    onProgress?.(done, total);
  }
  return { train, heldout, images };
}
