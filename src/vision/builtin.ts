/**
 * Configs of the released LLM2CLIP vision towers (microsoft/LLM2CLIP `llm2clip/eva_clip/model_configs/*.json`
 * and the Hugging Face `config.json` files). The official EVA02 `.pt` files carry no config, so these fill
 * in what tensor shapes cannot tell (head count, RoPE settings); everything else is read from the weights.
 */
import type { Arch } from './spec.js';

export interface BuiltinTower {
  readonly name: string;
  readonly arch: Arch;
  readonly imageSize: number;
  readonly patchSize: number;
  readonly width: number;
  readonly layers: number;
  readonly headWidth: number;
  readonly embedDim: number;
  /** Hugging Face repository the weights are published under. */
  readonly repo: string;
  /** File inside the repository that holds vision tower (+ adapter where present). */
  readonly file: string;
}

const EVA_ROPE = { ptHwSeqLen: 16, intpFreq: true, theta: 10000 } as const;

export const BUILTIN_TOWERS: readonly BuiltinTower[] = [
  { name: 'LLM2CLIP-Openai-B-16', arch: 'openai', imageSize: 224, patchSize: 16, width: 768, layers: 12, headWidth: 64, embedDim: 1280, repo: 'microsoft/LLM2CLIP-Openai-B-16', file: 'model.safetensors' },
  { name: 'LLM2CLIP-Openai-L-14-224', arch: 'openai', imageSize: 224, patchSize: 14, width: 1024, layers: 24, headWidth: 64, embedDim: 1280, repo: 'microsoft/LLM2CLIP-Openai-L-14-224', file: 'model.safetensors' },
  { name: 'LLM2CLIP-Openai-L-14-336', arch: 'openai', imageSize: 336, patchSize: 14, width: 1024, layers: 24, headWidth: 64, embedDim: 1280, repo: 'microsoft/LLM2CLIP-Openai-L-14-336', file: 'model.safetensors' },
  { name: 'LLM2CLIP-EVA02-B-16', arch: 'eva02', imageSize: 224, patchSize: 16, width: 768, layers: 12, headWidth: 64, embedDim: 1280, repo: 'microsoft/LLM2CLIP-EVA02-B-16', file: 'LLM2CLIP-EVA02-B-16.pt' },
  { name: 'LLM2CLIP-EVA02-L-14-336', arch: 'eva02', imageSize: 336, patchSize: 14, width: 1024, layers: 24, headWidth: 64, embedDim: 1280, repo: 'microsoft/LLM2CLIP-EVA02-L-14-336', file: 'LLM2CLIP-EVA02-L-14-336.pt' },
  { name: 'LLM2CLIP-Llama3.2-1B-EVA02-L-14-336', arch: 'eva02', imageSize: 336, patchSize: 14, width: 1024, layers: 24, headWidth: 64, embedDim: 1280, repo: 'microsoft/LLM2CLIP-Llama3.2-1B-EVA02-L-14-336', file: 'LLM2CLIP-Llama3.2-1B-EVA02-L-14-336.pt' },
];

export const BUILTIN_EVA_ROPE = EVA_ROPE;

/** The released tower a checkpoint's shapes identify, if any (several share shapes; they share configs too). */
export function matchBuiltin(arch: Arch, shape: { imageSize: number; patchSize: number; width: number; layers: number }): BuiltinTower | undefined {
  return BUILTIN_TOWERS.find(
    (b) => b.arch === arch && b.imageSize === shape.imageSize && b.patchSize === shape.patchSize && b.width === shape.width && b.layers === shape.layers,
  );
}

export function builtinByName(name: string): BuiltinTower | undefined {
  const n = name.replace(/^microsoft\//, '').toLowerCase();
  return BUILTIN_TOWERS.find((b) => b.name.toLowerCase() === n);
}
