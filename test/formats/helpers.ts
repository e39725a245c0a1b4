/** Shared bits for the format tests: fixture paths, scratch files, and the optional real-python oracle. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/formats');

export function fixture(name: string): string {
  return path.join(FIXTURES, name);
}

export interface ExpectedTensor {
  shape: number[];
  dtype?: string;
  values: number[];
}

/** Values recorded by make_fixtures.py from torch/numpy themselves. */
export const expected = JSON.parse(fs.readFileSync(fixture('expected.json'), 'utf8')) as Record<string, Record<string, ExpectedTensor>>;

let scratchDir: string | undefined;
export function scratch(name: string): string {
  scratchDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'llm2clip-formats-'));
  return path.join(scratchDir, name);
}

export function writeScratch(name: string, bytes: Uint8Array): string {
  const p = scratch(name);
  fs.writeFileSync(p, bytes);
  return p;
}

export const PYTHON = '/usr/bin/python3';

function probe(): string | undefined {
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  if (r.error) return `${PYTHON} is not runnable (${r.error.message})`;
  if (r.status !== 0) return `${PYTHON} cannot import torch and numpy`;
  return undefined;
}

/** Why the real-torch checks cannot run here, or undefined when they can. */
export const noTorchReason = probe();

/** Runs a python snippet (argv after the script is `args`) and parses the JSON it prints last. */
export function runPython(code: string, args: string[] = []): unknown {
  const r = spawnSync(PYTHON, ['-c', code, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

export function f32(values: number[]): Float32Array {
  return Float32Array.from(values);
}
