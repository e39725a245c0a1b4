/** Shared bits of the GGUF tests: scratch space, node-llama-cpp on CPU, and gguf-py as an independent reader. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel, type Token } from 'node-llama-cpp';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');

export function scratchDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `llm2clip-gguf-${label}-`));
}

let llama: Promise<Llama> | undefined;
/** One CPU-only llama.cpp instance per test file (loading the backend is the slow part). */
export function cpuLlama(): Promise<Llama> {
  llama ??= getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error });
  return llama;
}

/**
 * Log-probabilities after each token of `ids` through node-llama-cpp's public API (controlledEvaluate
 * with full probabilities, which node-llama-cpp computes as a softmax of the raw logits).
 */
export async function logProbsPerPosition(model: LlamaModel, ids: readonly number[]): Promise<Float64Array[]> {
  // F32 KV cache and no flash attention: llama.cpp's default F16 KV cache alone rounds keys and values to
  // ~1e-3 relative, which would hide a converter error of that size behind a looser tolerance.
  // Threads = math cores: node-llama-cpp's default may oversubscribe small machines (4 threads on 2 vCPUs
  // ran the 0.5b preset 40× slower here).
  const ctx = await model.createContext({
    contextSize: 256,
    batchSize: 256,
    sequences: 1,
    threads: (await cpuLlama()).cpuMathCores,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  try {
    const seq = ctx.getSequence();
    const res = await seq.controlledEvaluate(ids.map((t) => [t as Token, { generateNext: { probabilities: true } }]));
    return res.map((r, i) => {
      const probs = r?.next.probabilities;
      if (!probs) throw new Error(`no probabilities at position ${i}`);
      const out = new Float64Array(probs.size);
      for (const [tok, p] of probs) out[tok] = Math.log(p);
      return out;
    });
  } finally {
    await ctx.dispose();
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const BUNDLE = path.join(ROOT, 'node_modules', 'node-llama-cpp', 'llama', 'gitRelease.bundle');

/**
 * gguf-py (the reader llama.cpp itself ships) from node-llama-cpp's bundled llama.cpp source, extracted
 * once into the temp directory. Returns the directory holding the `gguf` package, or why it is unavailable.
 */
function prepareGgufPy(): { dir: string } | { reason: string } {
  const np = spawnSync(PYTHON, ['-c', 'import numpy'], { encoding: 'utf8' });
  if (np.error || np.status !== 0) return { reason: `${PYTHON} with numpy is not available` };
  if (!fs.existsSync(BUNDLE)) return { reason: `${BUNDLE} is missing` };
  const st = fs.statSync(BUNDLE);
  const dest = path.join(os.tmpdir(), `llm2clip-gguf-py-${st.size}-${Math.floor(st.mtimeMs)}`);
  const pkg = path.join(dest, 'gguf-py');
  if (fs.existsSync(path.join(pkg, 'gguf', 'gguf_reader.py'))) return { dir: pkg };
  const work = `${dest}.partial-${process.pid}`;
  fs.rmSync(work, { recursive: true, force: true });
  const clone = spawnSync('git', ['clone', '-q', '--no-checkout', BUNDLE, work], { encoding: 'utf8' });
  if (clone.error || clone.status !== 0) return { reason: `git clone of the llama.cpp bundle failed: ${clone.error?.message ?? clone.stderr}` };
  const co = spawnSync('git', ['-C', work, 'checkout', '-q', 'HEAD', '--', 'gguf-py'], { encoding: 'utf8' });
  if (co.error || co.status !== 0) return { reason: `git checkout of gguf-py failed: ${co.stderr}` };
  try {
    fs.renameSync(work, dest);
  } catch {
    fs.rmSync(work, { recursive: true, force: true }); // another test process won the race
  }
  return { dir: pkg };
}

let ggufPyCache: ReturnType<typeof prepareGgufPy> | undefined;
/** Memoised: only the writer tests pay for probing python and extracting gguf-py. */
export function ggufPy(): { dir: string } | { reason: string } {
  ggufPyCache ??= prepareGgufPy();
  return ggufPyCache;
}

/** Runs test/gguf/dump_gguf.py (gguf-py's GGUFReader) on a file and returns its JSON. */
export function dumpWithGgufPy(file: string): { alignment: number; metadata: Record<string, { type: string; value: unknown }>; tensors: { name: string; type: string; shape: number[]; data: number[] }[] } {
  const py = ggufPy();
  if (!('dir' in py)) throw new Error(py.reason);
  const r = spawnSync(PYTHON, [path.join(HERE, 'dump_gguf.py'), py.dir, file], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`dump_gguf.py failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}
