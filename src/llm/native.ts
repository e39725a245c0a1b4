// Loads native/build/llm2clip_embd.node (built by `npm install` via native/build.mjs)
// and refuses to run against any node-llama-cpp other than the one whose native
// layout and JS internals were verified.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { NativeAddonError } from './errors.js';

/** The node-llama-cpp release the addon's layout pins and the JS internals were checked against. */
export const SUPPORTED_NODE_LLAMA_CPP = '3.21.1';

export interface NativeInfo {
  nodeLlamaCppVersion: string;
  llamaCppCommit: string;
  napiVersion: number;
  /** every libllama.* currently mapped into the process (diagnostics) */
  loadedLibllamas: string[];
}

/** Facts about a context, read through the addon after all cross-checks passed. */
export interface AttachInfo {
  addonPath: string;
  libllamaPath: string;
  nEmbd: number;
  /** width of one injected row (llama_model_n_embd_inp) */
  nEmbdInp: number;
  nVocab: number;
  nBatch: number;
  nUbatch: number;
  nCtx: number;
  nCtxSeq: number;
  nSeqMax: number;
  mrope: boolean;
}

export interface NativeDecodeResult {
  logits: Float32Array | null;
  chunks: number;
  decodeMs: number;
}

/** The addon's exports (native/llm2clip_embd.cpp). `ctx`/`model` are node-llama-cpp's AddonContext/AddonModel. */
export interface NativeEmbdAddon {
  info(): NativeInfo;
  attach(ctx: object, model: object): AttachInfo;
  seqPosRange(ctx: object, model: object, sequenceId: number): [min: number, max: number];
  decodeEmbeddings(
    ctx: object,
    model: object,
    sequenceId: number,
    startPos: number,
    rows: Float32Array,
    nRows: number,
    wantLogits: boolean,
    cancel: Int32Array,
  ): Promise<NativeDecodeResult>;
  lastLogits(ctx: object, model: object): Float32Array | null;
}

const requireHere = createRequire(import.meta.url);

function findPackageRoot(): string {
  // works from src/llm (vitest, tsx) and from dist/src/llm (compiled)
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'native', 'build.mjs'))) return dir;
  }
  throw new NativeAddonError('NATIVE_UNAVAILABLE', 'cannot locate the llm2clip package root (native/build.mjs) from ' + import.meta.url);
}

/** Where native/build.mjs puts the addon. */
export function defaultNativeAddonPath(): string {
  return path.join(findPackageRoot(), 'native', 'build', 'llm2clip_embd.node');
}

/** Version of the node-llama-cpp that `import 'node-llama-cpp'` resolves to from here. */
export function installedNodeLlamaCppVersion(): string {
  const entry = requireHere.resolve('node-llama-cpp');
  for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const pj = path.join(dir, 'package.json');
    if (!fs.existsSync(pj)) continue;
    const pkg = JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'node-llama-cpp' && pkg.version) return pkg.version;
  }
  throw new NativeAddonError('VERSION', `cannot read node-llama-cpp's version near ${entry}`);
}

const loaded = new Map<string, NativeEmbdAddon>();

/**
 * Loads (once) and version-checks the addon. Throws NativeAddonError with an actionable
 * message when it is missing, built for another node-llama-cpp, or the platform is unsupported.
 */
export function loadNativeAddon(addonPath: string = defaultNativeAddonPath()): NativeEmbdAddon {
  const cached = loaded.get(addonPath);
  if (cached) return cached;
  const installed = installedNodeLlamaCppVersion();
  if (installed !== SUPPORTED_NODE_LLAMA_CPP) {
    throw new NativeAddonError(
      'VERSION',
      `node-llama-cpp ${installed} is installed, but image-embedding injection relies on internals verified ` +
        `for ${SUPPORTED_NODE_LLAMA_CPP} only; install node-llama-cpp@${SUPPORTED_NODE_LLAMA_CPP}`,
    );
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new NativeAddonError(
      'NATIVE_UNAVAILABLE',
      `image-embedding injection is only available on linux-x64 (the native layout is verified there), not ${process.platform}-${process.arch}`,
    );
  }
  if (!fs.existsSync(addonPath)) {
    throw new NativeAddonError(
      'NATIVE_UNAVAILABLE',
      `the llm2clip native addon is not built (${addonPath} is missing): run npm install (or node native/build.mjs)`,
    );
  }
  let addon: NativeEmbdAddon;
  try {
    addon = requireHere(addonPath) as NativeEmbdAddon;
  } catch (err) {
    throw new NativeAddonError(
      'NATIVE_UNAVAILABLE',
      `cannot load ${addonPath}: ${(err as Error).message}; rebuild it with npm install (or node native/build.mjs --force)`,
      { cause: err },
    );
  }
  const built = addon.info().nodeLlamaCppVersion;
  if (built !== installed) {
    throw new NativeAddonError(
      'VERSION',
      `${addonPath} was built against node-llama-cpp ${built}, but ${installed} is installed: run npm install (or node native/build.mjs --force)`,
    );
  }
  loaded.set(addonPath, addon);
  return addon;
}
