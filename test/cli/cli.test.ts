/**
 * The CLI is a contract other tools script against: run the built binary as a user would and check
 * its files and JSON against the library API (whose numerics the parity tests pin down), and check that
 * every bad input fails with exit code and a message naming the problem.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNpy, writeNpy } from '../../src/formats/npy.js';
import { l2normalize, TextAdapter, VisionTower } from '../../src/vision/tower.js';

const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');

function run(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

let work: string;
let towerDir: string;
let img1: string;
let img2: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'llm2clip-cli-'));
  const s = run(['synth-checkpoint', '--arch', 'eva02', '--preset', 'tiny', '--out', join(work, 'ck')]);
  expect(s.code, s.stderr).toBe(0);
  towerDir = join(work, 'tower');
  const c = run(['convert', join(work, 'ck', 'LLM2CLIP-EVA02-tiny.pt'), '--out', towerDir]);
  expect(c.code, c.stderr).toBe(0);
  expect(c.stdout).toMatch(/eva02 3×64 @32px, patch_features \[n,16,64\] from block 1, image_embeds \[n,40\], adapter 48→40/);
  img1 = join(work, 'a.png');
  img2 = join(work, 'b.jpg');
  const raw = Buffer.alloc(50 * 37 * 3).map((_, i) => (i * 37) % 256);
  await sharp(raw, { raw: { width: 50, height: 37, channels: 3 } }).png().toFile(img1);
  await sharp(raw, { raw: { width: 37, height: 50, channels: 3 } }).jpeg({ quality: 90 }).toFile(img2);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('llm2clip CLI', () => {
  it('preprocess writes float32 [3,S,S] equal to the library', async () => {
    const out = join(work, 'px.npy');
    const r = run(['preprocess', '--tower', towerDir, img1, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const npy = readNpy(out);
    expect(npy.shape).toEqual([3, 32, 32]);
    const tower = await VisionTower.load(towerDir);
    expect(maxAbsDiff(npy.data, await tower.preprocess(img1))).toBe(0);
    await tower.dispose();
  });

  it('features from images and from --pixels ([3,S,S] and [n,3,S,S]) agree with the library', async () => {
    const tower = await VisionTower.load(towerDir);
    const lib = await tower.encode([img1, img2]);
    const out = join(work, 'f.npy');
    expect(run(['features', '--tower', towerDir, img1, img2, '--out', out, '--batch', '2']).code).toBe(0);
    const f = readNpy(out);
    expect(f.shape).toEqual([2, 16, 64]);
    expect(maxAbsDiff(f.data, lib.patchFeatures)).toBeLessThan(1e-5);

    const px = new Float32Array(2 * 3 * 32 * 32);
    px.set(await tower.preprocess(img1), 0);
    px.set(await tower.preprocess(img2), 3 * 32 * 32);
    writeNpy(join(work, 'p4.npy'), [2, 3, 32, 32], px);
    writeNpy(join(work, 'p3.npy'), [3, 32, 32], px.subarray(3 * 32 * 32));
    expect(run(['features', '--tower', towerDir, '--pixels', join(work, 'p4.npy'), '--out', out]).code).toBe(0);
    expect(maxAbsDiff(readNpy(out).data, lib.patchFeatures)).toBeLessThan(1e-5);
    expect(run(['features', '--tower', towerDir, '--pixels', join(work, 'p3.npy'), '--out', out]).code).toBe(0);
    const one = readNpy(out);
    expect(one.shape).toEqual([1, 16, 64]);
    expect(maxAbsDiff(one.data, lib.patchFeatures.subarray(16 * 64))).toBeLessThan(1e-5);
    await tower.dispose();
  });

  it('embed prints one JSON line per input with the L2-normalised embedding', async () => {
    const r = run(['embed', '--tower', towerDir, img1, img2]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { input: string; embedding: number[] });
    expect(lines.map((l) => l.input)).toEqual([img1, img2]);
    const tower = await VisionTower.load(towerDir);
    const lib = await tower.encode([img1, img2]);
    await tower.dispose();
    const norm = l2normalize(lib.imageEmbeds, 40);
    expect(maxAbsDiff(lines.flatMap((l) => l.embedding), norm)).toBeLessThan(1e-6);
    const raw = run(['embed', '--tower', towerDir, '--no-normalize', img1]);
    expect(maxAbsDiff(JSON.parse(raw.stdout).embedding, lib.imageEmbeds.subarray(0, 40))).toBeLessThan(1e-5);
  });

  it('adapt maps [n, D] LLM embeddings through adapter.onnx', async () => {
    const llm = new Float32Array(3 * 48).map((_, i) => Math.cos(i));
    writeNpy(join(work, 'llm.npy'), [3, 48], llm);
    const r = run(['adapt', '--tower', towerDir, '--llm-embeds', join(work, 'llm.npy'), '--out', join(work, 'ad.npy')]);
    expect(r.code, r.stderr).toBe(0);
    const a = readNpy(join(work, 'ad.npy'));
    expect(a.shape).toEqual([3, 40]);
    const adapter = await TextAdapter.load(towerDir);
    expect(maxAbsDiff(a.data, await adapter.adapt(llm, 3))).toBe(0);
    await adapter.dispose();
    writeNpy(join(work, 'bad.npy'), [3, 47], new Float32Array(3 * 47));
    const bad = run(['adapt', '--tower', towerDir, '--llm-embeds', join(work, 'bad.npy'), '--out', join(work, 'x.npy')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/shape \[3, 47\]; this adapter takes \[n, 48\]/);
  });

  it('fails with a named problem on bad inputs', () => {
    const garbage = join(work, 'garbage.safetensors');
    writeFileSync(garbage, Buffer.from('this is not a checkpoint at all, just text'));
    let r = run(['convert', garbage, '--out', join(work, 'x')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/llm2clip convert: .*garbage\.safetensors/);

    const truncated = join(work, 'trunc.pt');
    writeFileSync(truncated, readFileSync(join(work, 'ck', 'LLM2CLIP-EVA02-tiny.pt')).subarray(0, 3000));
    r = run(['convert', truncated, '--out', join(work, 'x')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/trunc\.pt/);

    const cfg = join(work, 'wrong.json');
    writeFileSync(cfg, JSON.stringify({ embed_dim: 40, vision_cfg: { image_size: 32, layers: 24, width: 64, head_width: 16, patch_size: 8 } }));
    r = run(['convert', join(work, 'ck', 'LLM2CLIP-EVA02-tiny.pt'), '--config', cfg, '--out', join(work, 'x')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/vision_cfg.layers 24 but the checkpoint has 3/);

    const notImage = join(work, 'x.png');
    writeFileSync(notImage, Buffer.from('definitely not a png'));
    r = run(['embed', '--tower', towerDir, notImage]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/x\.png/);

    r = run(['features', '--tower', towerDir, img1]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--out is required/);
    r = run(['features', '--tower', join(work, 'nope'), img1, '--out', join(work, 'y.npy')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/tower manifest/);
    r = run(['synth-checkpoint', '--arch', 'vit', '--preset', 'tiny', '--out', work]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--arch "vit"/);
    r = run(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});
