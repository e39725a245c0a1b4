/**
 * Checkpoint → resolved tower: finds which architecture the tensors describe, under which wrapper prefix,
 * reads every size it can from tensor shapes (MLP width always from the weights), takes the rest from the
 * config (given, next to the checkpoint, or built in), and cross-checks the two so a wrong config fails
 * loudly instead of producing a silently wrong graph.
 */
import { CheckpointError, RenamedTensors, type TensorReader } from '../formats/tensor.js';
import { BUILTIN_EVA_ROPE, matchBuiltin } from './builtin.js';
import { ConfigError, type TowerConfig } from './config.js';
import { maxAbsDiff, officialRopeTables } from './rope.js';
import type { AdapterSpec, Arch, TowerSpec } from './spec.js';

export interface ResolvedTower {
  readonly spec: TowerSpec;
  /** The tower weights under canonical names (see spec.ts). */
  readonly weights: TensorReader;
  /** Present when the checkpoint also holds the LLM2CLIP text adapter. */
  readonly adapter?: { readonly spec: AdapterSpec; readonly weights: TensorReader };
  /** Name of the released model whose config filled gaps, if one was used. */
  readonly builtin?: string;
}

const OPENAI_ANCHOR = /^(.*?)vision_model\.embeddings\.patch_embedding\.weight$/;
const EVA_ANCHOR = /^(.*?)(visual\.)?patch_embed\.proj\.weight$/;
const OPENCLIP_ANCHOR = /^(.*?)visual\.conv1\.weight$/;
const ADAPTER_ANCHOR = /^(.*?)text_adaptor\.0\.fn\.0\.weight$/;

function findAnchor(names: string[], re: RegExp): RegExpExecArray | undefined {
  const hits = names.map((n) => re.exec(n)).filter((m): m is RegExpExecArray => m !== null);
  if (hits.length > 1) {
    throw new CheckpointError(`checkpoint holds ${hits.length} candidate towers (${hits.map((h) => h[0]).join(', ')}); expected one`);
  }
  return hits[0];
}

/** Maps canonical names to stored names for every stored tensor under `storedPrefix`. */
function mapPrefix(names: string[], storedPrefix: string, canonPrefix: string, rename: (n: string) => string = (n) => n): Map<string, string> {
  const m = new Map<string, string>();
  for (const n of names) if (n.startsWith(storedPrefix)) m.set(canonPrefix + rename(n.slice(storedPrefix.length)), n);
  return m;
}

function shapeOf(r: TensorReader, name: string): readonly number[] {
  const i = r.info(name);
  if (!i) throw new CheckpointError(`${r.source}: missing tensor ${name}`);
  return i.shape;
}

function countBlocks(names: string[], re: RegExp): number {
  const idx = new Set<number>();
  for (const n of names) {
    const m = re.exec(n);
    if (m) idx.add(Number(m[1]));
  }
  for (let i = 0; i < idx.size; i++) if (!idx.has(i)) throw new CheckpointError(`block ${i} is missing (found blocks ${[...idx].sort((a, b) => a - b).join(',')})`);
  return idx.size;
}

function check(source: string, what: string, fromConfig: number | undefined, fromWeights: number, tensor: string): void {
  if (fromConfig !== undefined && fromConfig !== fromWeights) {
    throw new ConfigError(`${source}: config says ${what} ${fromConfig} but the checkpoint has ${fromWeights} (${tensor})`);
  }
}

function gridFromTokens(source: string, tokens: number, tensor: string): number {
  const g = Math.round(Math.sqrt(tokens - 1));
  if (g * g + 1 !== tokens) throw new CheckpointError(`${source}: ${tensor} has ${tokens} positions, not a square grid plus CLS`);
  return g;
}

function headsFor(source: string, arch: Arch, cfg: TowerConfig | undefined, geo: { imageSize: number; patchSize: number; width: number; layers: number }): { heads: number; builtin?: string } {
  const b = matchBuiltin(arch, geo);
  if (cfg?.heads !== undefined) {
    if (geo.width % cfg.heads !== 0) throw new ConfigError(`${cfg.source}: width ${geo.width} is not divisible by ${cfg.heads} heads`);
    return { heads: cfg.heads };
  }
  if (b) return { heads: geo.width / b.headWidth, builtin: b.name };
  throw new ConfigError(
    `${source}: cannot tell the attention head count from tensor shapes and no config was given or found; pass --config (a Hugging Face config.json or an eva_clip model config)`,
  );
}

function resolveOpenai(reader: TensorReader, root: string, cfg: TowerConfig | undefined): { spec: TowerSpec; weights: TensorReader; builtin?: string } {
  const names = reader.names();
  const map = mapPrefix(names, root + 'vision_model.', 'vision_model.');
  const proj = root + 'visual_projection.weight';
  if (!reader.info(proj)) throw new CheckpointError(`${reader.source}: OpenAI-CLIP tower without ${proj}`);
  map.set('visual_projection.weight', proj);
  const w = new RenamedTensors(reader, map);
  const src = cfg?.source ?? reader.source;
  const patch = shapeOf(w, 'vision_model.embeddings.patch_embedding.weight');
  if (patch.length !== 4 || patch[1] !== 3 || patch[2] !== patch[3]) throw new CheckpointError(`${reader.source}: patch_embedding.weight has shape [${patch.join(',')}], expected [W,3,P,P]`);
  const width = patch[0]!;
  const patchSize = patch[2]!;
  const pos = shapeOf(w, 'vision_model.embeddings.position_embedding.weight');
  const grid = gridFromTokens(reader.source, pos[0]!, 'position_embedding.weight');
  const layers = countBlocks(w.names(), /^vision_model\.encoder\.layers\.(\d+)\./);
  const mlpWidth = shapeOf(w, 'vision_model.encoder.layers.0.mlp.fc1.weight')[0]!;
  const embedDim = shapeOf(w, 'visual_projection.weight')[0]!;
  const imageSize = grid * patchSize;
  if (cfg && cfg.arch !== 'openai') throw new ConfigError(`${cfg.source}: an eva_clip config was given for an OpenAI-CLIP (Hugging Face layout) checkpoint`);
  check(src, 'hidden_size', cfg?.width, width, 'patch_embedding.weight');
  check(src, 'patch_size', cfg?.patchSize, patchSize, 'patch_embedding.weight');
  check(src, 'num_hidden_layers', cfg?.layers, layers, 'encoder.layers.*');
  check(src, 'intermediate_size', cfg?.mlpWidth, mlpWidth, 'mlp.fc1.weight');
  check(src, 'projection_dim', cfg?.embedDim, embedDim, 'visual_projection.weight');
  // HF CLIPVisionConfig defaults image_size to 224 when the file omits it; only an explicit value is checked.
  check(src, 'image_size', cfg?.imageSize, imageSize, 'position_embedding.weight');
  const geo = { imageSize, patchSize, width, layers };
  const { heads, builtin } = headsFor(reader.source, 'openai', cfg, geo);
  if (layers < 2) throw new CheckpointError(`${reader.source}: tower has ${layers} block(s); the LLaVA tap needs at least 2`);
  return {
    spec: {
      arch: 'openai', imageSize, patchSize, width, layers, heads, mlpWidth, embedDim,
      layerNormEps: cfg?.layerNormEps ?? 1e-5,
      activation: cfg?.activation ?? 'quick_gelu',
      tapLayer: layers - 2,
    },
    weights: w,
    builtin,
  };
}

function resolveEva(reader: TensorReader, stored: string, cfg: TowerConfig | undefined): { spec: TowerSpec; weights: TensorReader; builtin?: string } {
  const names = reader.names();
  // eva_clip renames original EVA-CLIP q_bias/v_bias to q_proj.bias/v_proj.bias when loading; accept both.
  const rename = (n: string): string => n.replace(/\.attn\.q_bias$/, '.attn.q_proj.bias').replace(/\.attn\.v_bias$/, '.attn.v_proj.bias');
  const map = mapPrefix(names, stored, 'visual.', rename);
  // RoPE tables are buffers (stored once per tower and once per block): the graph computes its own, after
  // they have been checked against the config below.
  const ropeBuffers = [...map.entries()].filter(([k]) => /(^|\.)rope\.freqs_(cos|sin)$/.test(k));
  for (const [k] of ropeBuffers) map.delete(k);
  const w = new RenamedTensors(reader, map);
  const src = cfg?.source ?? reader.source;
  if (cfg && cfg.arch !== 'eva02') throw new ConfigError(`${cfg.source}: a Hugging Face CLIP config was given for an EVA02 checkpoint`);
  const patch = shapeOf(w, 'visual.patch_embed.proj.weight');
  if (patch.length !== 4 || patch[1] !== 3 || patch[2] !== patch[3]) throw new CheckpointError(`${reader.source}: patch_embed.proj.weight has shape [${patch.join(',')}], expected [W,3,P,P]`);
  const width = patch[0]!;
  const patchSize = patch[2]!;
  const pos = shapeOf(w, 'visual.pos_embed');
  const grid = gridFromTokens(reader.source, pos[pos.length - 2]!, 'pos_embed');
  const layers = countBlocks(w.names(), /^visual\.blocks\.(\d+)\./);
  if (!w.info('visual.blocks.0.mlp.w3.weight')) {
    throw new CheckpointError(`${reader.source}: EVA02 block without mlp.w3 (SwiGLU); only LLM2CLIP's naiveswiglu EVA02 towers are supported`);
  }
  if (!w.info('visual.blocks.0.attn.q_proj.weight')) {
    throw new CheckpointError(`${reader.source}: EVA02 attention without separate q/k/v projections (fused qkv, subln=false); LLM2CLIP's EVA02 towers use subln`);
  }
  const mlpWidth = shapeOf(w, 'visual.blocks.0.mlp.w1.weight')[0]!;
  const embedDim = shapeOf(w, 'visual.head.weight')[0]!;
  const subln = w.info('visual.blocks.0.attn.inner_attn_ln.weight') !== undefined;
  const imageSize = grid * patchSize;
  check(src, 'vision_cfg.width', cfg?.width, width, 'patch_embed.proj.weight');
  check(src, 'vision_cfg.patch_size', cfg?.patchSize, patchSize, 'patch_embed.proj.weight');
  check(src, 'vision_cfg.layers', cfg?.layers, layers, 'blocks.*');
  check(src, 'vision_cfg.image_size', cfg?.imageSize, imageSize, 'pos_embed');
  check(src, 'embed_dim', cfg?.embedDim, embedDim, 'head.weight');
  if (cfg?.subln !== undefined && cfg.subln !== subln) {
    throw new ConfigError(`${src}: config says subln=${cfg.subln} but the checkpoint ${subln ? 'has' : 'lacks'} attn.inner_attn_ln`);
  }
  const geo = { imageSize, patchSize, width, layers };
  const { heads, builtin } = headsFor(reader.source, 'eva02', cfg, geo);
  const useRope = cfg ? cfg.rope === true : true;
  const rope = useRope
    ? { ptHwSeqLen: cfg?.ptHwSeqLen ?? BUILTIN_EVA_ROPE.ptHwSeqLen, intpFreq: cfg?.intpFreq ?? BUILTIN_EVA_ROPE.intpFreq, theta: BUILTIN_EVA_ROPE.theta }
    : undefined;
  if (rope && !rope.intpFreq && rope.ptHwSeqLen !== grid) {
    throw new ConfigError(`${src}: RoPE without intp_freq needs a ${rope.ptHwSeqLen}×${rope.ptHwSeqLen} grid but the tower has ${grid}×${grid}`);
  }
  if (ropeBuffers.length > 0) {
    if (!rope) throw new ConfigError(`${src}: config says rope=false but the checkpoint stores RoPE tables (${ropeBuffers[0]![1]})`);
    const expected = officialRopeTables(rope, grid, width / heads);
    for (const [canon, stored] of ropeBuffers) {
      // 2e-3 absorbs fp16 storage of values in [-1, 1]; a wrong pt_hw_seq_len or intp_freq moves angles by far more.
      const d = maxAbsDiff(reader.readF32(stored), canon.endsWith('cos') ? expected.cos : expected.sin);
      if (!(d <= 2e-3)) {
        throw new ConfigError(
          `${src}: stored RoPE table ${stored} disagrees with pt_hw_seq_len=${rope.ptHwSeqLen}, intp_freq=${rope.intpFreq}, head width ${width / heads} (max |Δ| ${d.toPrecision(3)}); pass the model's eva_clip config with --config`,
        );
      }
    }
  }
  if (layers < 2) throw new CheckpointError(`${reader.source}: tower has ${layers} block(s); the LLaVA tap needs at least 2`);
  return {
    spec: {
      arch: 'eva02', imageSize, patchSize, width, layers, heads, mlpWidth, embedDim,
      layerNormEps: 1e-6, activation: 'quick_gelu', rope, subln, tapLayer: layers - 2,
    },
    weights: w,
    builtin,
  };
}

function resolveAdapter(reader: TensorReader, embedDim: number): ResolvedTower['adapter'] {
  const m = findAnchor(reader.names(), ADAPTER_ANCHOR);
  if (!m) return undefined;
  const w = new RenamedTensors(reader, mapPrefix(reader.names(), m[1] + 'text_adaptor.', 'text_adaptor.'));
  const blocks = countBlocks(w.names().filter((n) => /\.fn\./.test(n)), /^text_adaptor\.(\d+)\./);
  const fc0 = shapeOf(w, 'text_adaptor.0.fn.0.weight');
  const inputDim = fc0[1]!;
  const outName = `text_adaptor.${blocks + 1}.weight`;
  const out = shapeOf(w, outName);
  if (out[1] !== inputDim) throw new CheckpointError(`${reader.source}: ${outName} is [${out.join(',')}], expected [P,${inputDim}]`);
  if (out[0] !== embedDim) throw new CheckpointError(`${reader.source}: adapter outputs ${out[0]} dims but the tower embeds to ${embedDim}`);
  return { spec: { inputDim, embedDim: out[0]!, blocks, layerNormEps: 1e-5 }, weights: w };
}

type Detected = { arch: 'openai'; root: string } | { arch: 'eva02'; stored: string };

function detect(reader: TensorReader): Detected {
  const names = reader.names();
  const oa = findAnchor(names, OPENAI_ANCHOR);
  if (oa) {
    if (names.some((n) => n.startsWith(oa[1]! + 'vision_model.') && /\.(inner_attn_ln|ffn_ln|fc3)\./.test(n))) {
      throw new CheckpointError(
        `${reader.source}: this is the Hugging Face remote-code port of an EVA02 tower (vision_model.* with EVA layers), which the authors flag for precision mismatches; convert the official LLM2CLIP-*.pt from the same repository instead`,
      );
    }
    return { arch: 'openai', root: oa[1]! };
  }
  const ev = findAnchor(names, EVA_ANCHOR);
  if (ev) return { arch: 'eva02', stored: ev[1]! + (ev[2] ?? '') };
  if (findAnchor(names, OPENCLIP_ANCHOR)) {
    throw new CheckpointError(`${reader.source}: open_clip-style OpenAI tower (visual.conv1.weight); LLM2CLIP publishes OpenAI towers in the Hugging Face layout (vision_model.*), use that file`);
  }
  const sample = names.slice(0, 5).join(', ');
  throw new CheckpointError(`${reader.source}: no LLM2CLIP vision tower found (neither vision_model.* nor visual.patch_embed.*; first tensors: ${sample || 'none'})`);
}

/** Which architecture the checkpoint's tensors describe (throws, naming the problem, if none). */
export function detectArch(reader: TensorReader): Arch {
  return detect(reader).arch;
}

export function resolveTower(reader: TensorReader, cfg?: TowerConfig): ResolvedTower {
  const d = detect(reader);
  const t = d.arch === 'openai' ? resolveOpenai(reader, d.root, cfg) : resolveEva(reader, d.stored, cfg);
  return { ...t, adapter: resolveAdapter(reader, t.spec.embedDim) };
}
