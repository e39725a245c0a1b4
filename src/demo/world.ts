/**
 * The demo world: coloured shapes on a 3×3 grid over varied backgrounds, with short-answer questions.
 *
 * Everything here is pure and deterministic by seed (mulberry32), except `renderScene`, which rasterises a
 * scene's SVG with sharp at the tower's resolution. One grid cell is one tower patch (48 px images, 16 px
 * patches), so the tower's nine patch tokens line up with the nine places a question can name.
 *
 * Question types (answers are lowercase words, compared after trimming and lowercasing):
 *   colour  "What colour is the star?"            → "red"            (the shape is unique in the scene)
 *   shape   "What shape is the blue object?"      → "circle"         (the colour is unique)
 *   where   "Where is the green square?"          → "top left"       (the pair is unique)
 *   exists  "Is there a purple cross?"            → "yes" | "no"
 *   count   "How many circles are there?"         → "zero" … "four"  (also "How many red objects …", "How many objects …")
 *   what    "What is at the bottom right?"        → "a yellow diamond" | "nothing"
 */
import sharp from 'sharp';

import { mulberry32 } from '../util/random.js';

export const COLOURS = ['red', 'orange', 'yellow', 'green', 'blue', 'purple'] as const;
export const SHAPES = ['circle', 'square', 'triangle', 'star', 'diamond', 'cross'] as const;
export const PLURALS: Readonly<Record<Shape, string>> = {
  circle: 'circles', square: 'squares', triangle: 'triangles', star: 'stars', diamond: 'diamonds', cross: 'crosses',
};
/** Cells in row-major order (the tower's patch order). */
export const POSITIONS = [
  'top left', 'top middle', 'top right',
  'middle left', 'center', 'middle right',
  'bottom left', 'bottom middle', 'bottom right',
] as const;
export const NUMBERS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'] as const;
export const QUESTION_TYPES = ['colour', 'shape', 'where', 'exists', 'count', 'what'] as const;

export type Colour = (typeof COLOURS)[number];
export type Shape = (typeof SHAPES)[number];
export type QuestionType = (typeof QUESTION_TYPES)[number];

/** Image geometry: GRID × GRID cells of CELL pixels. */
export const GRID = 3;
export const CELL = 16;
export const IMAGE_SIZE = GRID * CELL;

/** Saturated object colours (RGB), jittered a little per object. */
const COLOUR_RGB: Readonly<Record<Colour, readonly [number, number, number]>> = {
  red: [222, 30, 30],
  orange: [255, 128, 0],
  yellow: [245, 215, 0],
  green: [30, 165, 55],
  blue: [30, 90, 225],
  purple: [145, 45, 200],
};

export interface SceneObject {
  readonly colour: Colour;
  readonly shape: Shape;
  /** cell index 0..8, row-major */
  readonly cell: number;
  /** centre offset from the cell centre in px, and size (bounding box) in px */
  readonly dx: number;
  readonly dy: number;
  readonly size: number;
  /** RGB actually drawn */
  readonly rgb: readonly [number, number, number];
}

export type Background =
  | { kind: 'solid'; a: readonly [number, number, number] }
  | { kind: 'gradient'; a: readonly [number, number, number]; b: readonly [number, number, number]; angle: number }
  | { kind: 'split'; a: readonly [number, number, number]; b: readonly [number, number, number]; vertical: boolean; at: number }
  | { kind: 'speckle'; a: readonly [number, number, number]; b: readonly [number, number, number]; dots: readonly (readonly [number, number, number])[] };

export interface Scene {
  readonly objects: readonly SceneObject[];
  readonly background: Background;
}

export interface Question {
  readonly type: QuestionType;
  readonly question: string;
  readonly answer: string;
}

export interface WorldOptions {
  /** objects per image: uniform in [minObjects, maxObjects] */
  readonly minObjects?: number;
  readonly maxObjects?: number;
  /** question types to draw from (default: all) */
  readonly types?: readonly QuestionType[];
}

export type Rng = () => number;

const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rng, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));

function shuffle<T>(r: Rng, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

/** A low-saturation colour of any lightness: backgrounds never look like an object colour. */
function mutedColour(r: Rng): [number, number, number] {
  const l = 0.08 + 0.9 * r();
  const s = 0.18 * r();
  const h = r() * 360;
  return hslToRgb(h, s, l);
}

export function hslToRgb(h: number, s: number, l: number): [number, number, number] {
  const c = (1 - Math.abs(2 * l - 1)) * s;
  const hp = (h % 360) / 60;
  const x = c * (1 - Math.abs((hp % 2) - 1));
  const [r1, g1, b1] = hp < 1 ? [c, x, 0] : hp < 2 ? [x, c, 0] : hp < 3 ? [0, c, x] : hp < 4 ? [0, x, c] : hp < 5 ? [x, 0, c] : [c, 0, x];
  const m = l - c / 2;
  return [Math.round(255 * (r1 + m)), Math.round(255 * (g1 + m)), Math.round(255 * (b1 + m))];
}

function randomBackground(r: Rng): Background {
  const k = r();
  if (k < 0.4) return { kind: 'solid', a: mutedColour(r) };
  if (k < 0.7) return { kind: 'gradient', a: mutedColour(r), b: mutedColour(r), angle: int(r, 0, 7) * 45 };
  if (k < 0.85) return { kind: 'split', a: mutedColour(r), b: mutedColour(r), vertical: r() < 0.5, at: int(r, 10, IMAGE_SIZE - 10) };
  const a = mutedColour(r);
  const b = mutedColour(r);
  const dots: [number, number, number][] = [];
  for (let i = 0; i < 40; i++) dots.push([int(r, 0, IMAGE_SIZE - 2), int(r, 0, IMAGE_SIZE - 2), int(r, 1, 2)]);
  return { kind: 'speckle', a, b, dots };
}

function jitterRgb(r: Rng, c: readonly [number, number, number]): [number, number, number] {
  const f = 0.88 + 0.2 * r();
  return c.map((v) => Math.max(0, Math.min(255, Math.round(v * f)))) as [number, number, number];
}

export function randomScene(r: Rng, o: WorldOptions = {}): Scene {
  const n = int(r, o.minObjects ?? 1, o.maxObjects ?? 4);
  const cells = shuffle(r, [...Array(GRID * GRID).keys()]).slice(0, n);
  const objects = cells.map((cell) => {
    const colour = pick(r, COLOURS);
    return { colour, shape: pick(r, SHAPES), cell, dx: int(r, -1, 1), dy: int(r, -1, 1), size: int(r, 11, 13), rgb: jitterRgb(r, COLOUR_RGB[colour]) };
  });
  objects.sort((a, b) => a.cell - b.cell);
  return { objects, background: randomBackground(r) };
}

// ---------------------------------------------------------------------------------------------------
// Rendering

const hex = (c: readonly number[]): string => `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
const f = (v: number): string => (Math.round(v * 100) / 100).toString();

function shapeSvg(o: SceneObject): string {
  const cx = (o.cell % GRID) * CELL + CELL / 2 + o.dx;
  const cy = Math.floor(o.cell / GRID) * CELL + CELL / 2 + o.dy;
  const h = o.size / 2;
  const fill = `fill="${hex(o.rgb)}"`;
  const poly = (pts: [number, number][]): string => `<polygon points="${pts.map(([x, y]) => `${f(x)},${f(y)}`).join(' ')}" ${fill}/>`;
  switch (o.shape) {
    case 'circle':
      return `<circle cx="${f(cx)}" cy="${f(cy)}" r="${f(h)}" ${fill}/>`;
    case 'square':
      return `<rect x="${f(cx - h * 0.9)}" y="${f(cy - h * 0.9)}" width="${f(1.8 * h)}" height="${f(1.8 * h)}" ${fill}/>`;
    case 'triangle':
      return poly([[cx, cy - h], [cx + h, cy + h * 0.85], [cx - h, cy + h * 0.85]]);
    case 'diamond':
      return poly([[cx, cy - h], [cx + h * 0.8, cy], [cx, cy + h], [cx - h * 0.8, cy]]);
    case 'star': {
      const pts: [number, number][] = [];
      for (let i = 0; i < 10; i++) {
        const a = -Math.PI / 2 + (i * Math.PI) / 5;
        const rad = i % 2 === 0 ? h * 1.05 : h * 0.45;
        pts.push([cx + rad * Math.cos(a), cy + 0.08 * h + rad * Math.sin(a)]);
      }
      return poly(pts);
    }
    case 'cross': {
      const t = h * 0.36;
      return poly([
        [cx - t, cy - h], [cx + t, cy - h], [cx + t, cy - t], [cx + h, cy - t], [cx + h, cy + t], [cx + t, cy + t],
        [cx + t, cy + h], [cx - t, cy + h], [cx - t, cy + t], [cx - h, cy + t], [cx - h, cy - t], [cx - t, cy - t],
      ]);
    }
  }
}

function backgroundSvg(b: Background): string {
  const S = IMAGE_SIZE;
  switch (b.kind) {
    case 'solid':
      return `<rect width="${S}" height="${S}" fill="${hex(b.a)}"/>`;
    case 'gradient': {
      const rad = (b.angle * Math.PI) / 180;
      const [x1, y1, x2, y2] = [0.5 - 0.5 * Math.cos(rad), 0.5 - 0.5 * Math.sin(rad), 0.5 + 0.5 * Math.cos(rad), 0.5 + 0.5 * Math.sin(rad)];
      return (
        `<defs><linearGradient id="g" x1="${f(x1)}" y1="${f(y1)}" x2="${f(x2)}" y2="${f(y2)}">` +
        `<stop offset="0" stop-color="${hex(b.a)}"/><stop offset="1" stop-color="${hex(b.b)}"/></linearGradient></defs>` +
        `<rect width="${S}" height="${S}" fill="url(#g)"/>`
      );
    }
    case 'split':
      return (
        `<rect width="${S}" height="${S}" fill="${hex(b.a)}"/>` +
        (b.vertical ? `<rect x="${b.at}" width="${S - b.at}" height="${S}" fill="${hex(b.b)}"/>` : `<rect y="${b.at}" width="${S}" height="${S - b.at}" fill="${hex(b.b)}"/>`)
      );
    case 'speckle':
      return `<rect width="${S}" height="${S}" fill="${hex(b.a)}"/>` + b.dots.map(([x, y, s]) => `<rect x="${x}" y="${y}" width="${s}" height="${s}" fill="${hex(b.b)}"/>`).join('');
  }
}

export function sceneSvg(scene: Scene): string {
  const S = IMAGE_SIZE;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${S}" height="${S}" viewBox="0 0 ${S} ${S}">${backgroundSvg(scene.background)}${scene.objects.map(shapeSvg).join('')}</svg>`;
}

/** The scene as an RGB PNG of IMAGE_SIZE² pixels (no alpha channel). */
export async function renderScene(scene: Scene): Promise<Buffer> {
  return sharp(Buffer.from(sceneSvg(scene)), { density: 72 }).removeAlpha().png({ compressionLevel: 9 }).toBuffer();
}

/** The scene as raw RGB bytes [IMAGE_SIZE, IMAGE_SIZE, 3] (what decoding renderScene's PNG gives). */
export async function renderSceneRaw(scene: Scene): Promise<Uint8Array> {
  const { data, info } = await sharp(Buffer.from(sceneSvg(scene)), { density: 72 }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.width !== IMAGE_SIZE || info.height !== IMAGE_SIZE || info.channels !== 3) throw new Error(`rendered ${info.width}×${info.height}×${info.channels}`);
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

// ---------------------------------------------------------------------------------------------------
// Questions

/** 'a' or 'an' before a colour word. */
export const article = (colour: string): string => (/^[aeiou]/.test(colour) ? 'an' : 'a');
const describe = (o: SceneObject): string => `${article(o.colour)} ${o.colour} ${o.shape}`;
const count = <T>(xs: readonly T[], p: (x: T) => boolean): number => xs.reduce((n, x) => n + (p(x) ? 1 : 0), 0);

/** Paraphrases: the first is the canonical wording; the others keep the LLM from keying on exact strings. */
function phrase(r: Rng, type: QuestionType, a: Record<string, string>): string {
  const variants: Record<QuestionType, string[]> = {
    colour: [`What colour is the ${a.shape}?`, `What color is the ${a.shape}?`, `Which colour is the ${a.shape}?`],
    shape: [`What shape is the ${a.colour} object?`, `What is the shape of the ${a.colour} object?`, `Which shape is ${a.colour}?`],
    where: [`Where is the ${a.colour} ${a.shape}?`, `Where is the ${a.colour} ${a.shape} in the picture?`],
    exists: [`Is there ${article(a.colour!)} ${a.colour} ${a.shape}?`, `Is there ${article(a.colour!)} ${a.colour} ${a.shape} in the picture?`],
    count: [`How many ${a.what} are there?`, `How many ${a.what} are in the picture?`, `Count the ${a.what}.`],
    what: [`What is at the ${a.position}?`, `What is in the ${a.position}?`],
  };
  return r() < 0.6 ? variants[type][0]! : pick(r, variants[type]);
}

/** One question of `type` about `scene`, or undefined when the scene cannot support that type. */
export function askQuestion(r: Rng, scene: Scene, type: QuestionType): Question | undefined {
  const objs = scene.objects;
  switch (type) {
    case 'colour': {
      const c = objs.filter((o) => count(objs, (x) => x.shape === o.shape) === 1);
      if (c.length === 0) return undefined;
      const o = pick(r, c);
      return { type, question: phrase(r, type, { shape: o.shape }), answer: o.colour };
    }
    case 'shape': {
      const c = objs.filter((o) => count(objs, (x) => x.colour === o.colour) === 1);
      if (c.length === 0) return undefined;
      const o = pick(r, c);
      return { type, question: phrase(r, type, { colour: o.colour }), answer: o.shape };
    }
    case 'where': {
      const c = objs.filter((o) => count(objs, (x) => x.colour === o.colour && x.shape === o.shape) === 1);
      if (c.length === 0) return undefined;
      const o = pick(r, c);
      return { type, question: phrase(r, type, { colour: o.colour, shape: o.shape }), answer: POSITIONS[o.cell]! };
    }
    case 'exists': {
      if (r() < 0.5) {
        const o = pick(r, objs);
        return { type, question: phrase(r, type, { colour: o.colour, shape: o.shape }), answer: 'yes' };
      }
      // Hard negatives first: a pair sharing the colour or the shape of something present.
      const present = new Set(objs.map((o) => `${o.colour} ${o.shape}`));
      const near = objs.flatMap((o) => [...COLOURS.map((c) => `${c} ${o.shape}`), ...SHAPES.map((s) => `${o.colour} ${s}`)]).filter((p) => !present.has(p));
      const all = COLOURS.flatMap((c) => SHAPES.map((s) => `${c} ${s}`)).filter((p) => !present.has(p));
      const [colour, shape] = pick(r, r() < 0.7 && near.length > 0 ? near : all).split(' ') as [string, string];
      return { type, question: phrase(r, type, { colour, shape }), answer: 'no' };
    }
    case 'count': {
      const k = r();
      if (k < 0.2) return { type, question: phrase(r, type, { what: 'objects' }), answer: NUMBERS[objs.length]! };
      if (k < 0.6) {
        // Mostly shapes that are present, so the answers are not mostly "zero".
        const s = r() < 0.75 ? pick(r, objs).shape : pick(r, SHAPES);
        return { type, question: phrase(r, type, { what: PLURALS[s] }), answer: NUMBERS[count(objs, (o) => o.shape === s)]! };
      }
      const c = r() < 0.75 ? pick(r, objs).colour : pick(r, COLOURS);
      return { type, question: phrase(r, type, { what: `${c} objects` }), answer: NUMBERS[count(objs, (o) => o.colour === c)]! };
    }
    case 'what': {
      const cell = r() < 0.65 ? pick(r, objs).cell : int(r, 0, GRID * GRID - 1);
      const o = objs.find((x) => x.cell === cell);
      return { type, question: phrase(r, type, { position: POSITIONS[cell]! }), answer: o ? describe(o) : 'nothing' };
    }
  }
}

/** `n` questions about one scene, with types cycling through `types` from a random start (no exact repeats). */
export function askQuestions(r: Rng, scene: Scene, n: number, types: readonly QuestionType[] = QUESTION_TYPES): Question[] {
  const out: Question[] = [];
  const seen = new Set<string>();
  const start = Math.floor(r() * types.length);
  for (let tries = 0; out.length < n && tries < 8 * n + 8; tries++) {
    const q = askQuestion(r, scene, types[(start + tries) % types.length]!);
    if (!q || seen.has(q.question)) continue;
    seen.add(q.question);
    out.push(q);
  }
  return out;
}

/** Exact-match scoring: trimmed, lowercased, trailing full stop ignored. */
export function normalizeAnswer(s: string): string {
  return s.trim().toLowerCase().replace(/[.!]+$/, '').trim();
}

/** A fresh random stream for a split: train and held-out draw from different seeds, so images never repeat. */
export function splitRng(seed: number, split: 'train' | 'heldout'): Rng {
  return mulberry32((seed * 2654435761 + (split === 'train' ? 0x1234567 : 0x7654321)) >>> 0);
}

/** Every word the world's questions and answers use (for building a vocabulary). */
export function worldWords(): string[] {
  const text = [
    ...COLOURS, ...SHAPES, ...Object.values(PLURALS), ...POSITIONS, ...NUMBERS,
    'What colour is the', 'What color is the', 'Which colour is the', 'What shape is the object', 'What is the shape of the object', 'Which shape is',
    'Where is the in the picture', 'Is there a in the picture', 'How many are there', 'How many are in the picture', 'Count the objects',
    'What is at the', 'What is in the', 'yes no nothing a an',
  ].join(' ');
  return [...new Set(text.split(/\s+/).filter(Boolean))];
}
