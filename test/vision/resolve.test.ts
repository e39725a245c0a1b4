import { describe, expect, it } from 'vitest';
import { MemoryTensors } from '../../src/formats/tensor.js';
import { parseTowerConfig } from '../../src/vision/config.js';
import { resolveTower } from '../../src/vision/resolve.js';
import { evaTensors, openaiTensors } from '../../src/vision/synth-weights.js';

const tiny = { imageSize: 32, patchSize: 8, width: 64, layers: 3, heads: 4, embedDim: 40, adapterDim: 48 };

/** Shapes only (zeros), except the RoPE buffers, whose values resolve checks against the config. */
function memory(tensors: { name: string; shape: readonly number[]; fill?: () => Float32Array }[], rename: (n: string) => string = (n) => n): MemoryTensors {
  const m = new MemoryTensors('mem');
  for (const t of tensors) {
    const data = t.fill && t.name.includes('rope.') ? t.fill() : new Float32Array(t.shape.reduce((a, b) => a * b, 1));
    m.set(rename(t.name), t.shape, data);
  }
  return m;
}

const hfCfg = (over: Record<string, unknown> = {}) =>
  parseTowerConfig({ projection_dim: 40, vision_config: { hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 3, patch_size: 8, image_size: 32, ...over } }, 'config.json');

const evaCfg = (over: Record<string, unknown> = {}) =>
  parseTowerConfig(
    { embed_dim: 40, vision_cfg: { image_size: 32, layers: 3, width: 64, head_width: 16, patch_size: 8, rope: true, pt_hw_seq_len: 16, intp_freq: true, naiveswiglu: true, subln: true, ...over } },
    'eva.json',
  );

describe('resolveTower', () => {
  it('reads an OpenAI (HF layout) tower under any wrapper prefix, sizes from the weights', () => {
    const r = resolveTower(memory(openaiTensors(tiny, 0, true), (n) => `model.${n}`), hfCfg());
    expect(r.spec).toMatchObject({ arch: 'openai', imageSize: 32, patchSize: 8, width: 64, layers: 3, heads: 4, mlpWidth: 256, embedDim: 40, tapLayer: 1, layerNormEps: 1e-5, activation: 'quick_gelu' });
    expect(r.weights.info('vision_model.encoder.layers.2.mlp.fc2.weight')?.shape).toEqual([64, 256]);
    expect(r.adapter?.spec).toEqual({ inputDim: 48, embedDim: 40, blocks: 4, layerNormEps: 1e-5 });
    expect(r.adapter?.weights.info('text_adaptor.5.weight')?.shape).toEqual([40, 48]);
  });

  it('reads an EVA02 tower with legacy q_bias/v_bias names and a module. prefix', () => {
    const names = (n: string) => `module.${n.replace('attn.q_proj.bias', 'attn.q_bias').replace('attn.v_proj.bias', 'attn.v_bias')}`;
    const r = resolveTower(memory(evaTensors(tiny, 0, true), names), evaCfg());
    expect(r.spec).toMatchObject({ arch: 'eva02', width: 64, layers: 3, heads: 4, mlpWidth: 170, embedDim: 40, subln: true, layerNormEps: 1e-6, rope: { ptHwSeqLen: 16, intpFreq: true, theta: 10000 } });
    expect(r.weights.info('visual.blocks.1.attn.q_proj.bias')?.shape).toEqual([64]);
    expect(r.weights.names().filter((k) => k.includes('rope'))).toEqual([]);
    expect(r.adapter?.spec.inputDim).toBe(48);
  });

  it('identifies released shapes without a config (built-in), and refuses unknown shapes without one', () => {
    const l14 = { imageSize: 336, patchSize: 14, width: 1024, layers: 24, heads: 16, embedDim: 1280, adapterDim: 4096 };
    const r = resolveTower(memory(evaTensors(l14, 0, false)));
    expect(r.builtin).toBe('LLM2CLIP-EVA02-L-14-336');
    expect(r.spec.heads).toBe(16);
    expect(r.spec.mlpWidth).toBe(2730);
    expect(r.spec.tapLayer).toBe(22);
    expect(() => resolveTower(memory(evaTensors(tiny, 0, false)))).toThrow(/cannot tell the attention head count.*--config/);
  });

  it('rejects a config that contradicts the weights, naming both numbers', () => {
    const t = memory(openaiTensors(tiny, 0, false));
    expect(() => resolveTower(t, hfCfg({ hidden_size: 128, num_attention_heads: 2 }))).toThrow(/hidden_size 128 but the checkpoint has 64/);
    expect(() => resolveTower(t, hfCfg({ num_hidden_layers: 4 }))).toThrow(/num_hidden_layers 4 but the checkpoint has 3/);
    expect(() => resolveTower(t, hfCfg({ image_size: 224 }))).toThrow(/image_size 224 but the checkpoint has 32/);
    expect(() => resolveTower(t, evaCfg())).toThrow(/eva_clip config was given for an OpenAI-CLIP/);
    const e = memory(evaTensors(tiny, 0, false));
    expect(() => resolveTower(e, evaCfg({ layers: 12 }))).toThrow(/vision_cfg.layers 12 but the checkpoint has 3/);
    expect(() => resolveTower(e, evaCfg({ head_width: 48 }))).toThrow(/not a multiple of head_width/);
    // The stored RoPE tables are the checkpoint's own evidence of its RoPE settings.
    expect(() => resolveTower(e, evaCfg({ intp_freq: false, pt_hw_seq_len: 4 }))).toThrow(/stored RoPE table visual.*freqs_cos disagrees with pt_hw_seq_len=4, intp_freq=false/);
    expect(() => resolveTower(e, evaCfg({ rope: false }))).toThrow(/rope=false but the checkpoint stores RoPE tables/);
    expect(() => resolveTower(e, hfCfg())).toThrow(/Hugging Face CLIP config was given for an EVA02/);
  });

  it('rejects checkpoints that hold no tower, or a missing block, with the reason', () => {
    expect(() => resolveTower(memory([{ name: 'encoder.weight', shape: [2, 2] }]))).toThrow(/no LLM2CLIP vision tower found.*encoder.weight/);
    const t = openaiTensors(tiny, 0, false).filter((x) => !x.name.includes('layers.1.'));
    expect(() => resolveTower(memory(t), hfCfg())).toThrow(/block 1 is missing/);
    expect(() => resolveTower(memory([{ name: 'visual.conv1.weight', shape: [8, 3, 2, 2] }]))).toThrow(/open_clip-style/);
    const hfEvaPort = memory([
      { name: 'vision_model.embeddings.patch_embedding.weight', shape: [64, 3, 8, 8] },
      { name: 'vision_model.encoder.layers.0.mlp.ffn_ln.weight', shape: [170] },
    ]);
    expect(() => resolveTower(hfEvaPort)).toThrow(/remote-code port of an EVA02 tower.*official LLM2CLIP-\*\.pt/);
  });

  it('validates config files with named fields', () => {
    expect(() => parseTowerConfig({ vision_config: { hidden_size: -1 } }, 'c.json')).toThrow(/c.json: invalid Hugging Face CLIP config: vision_config.hidden_size/);
    expect(() => parseTowerConfig({ vision_config: { hidden_act: 'relu' } }, 'c.json')).toThrow(/hidden_act 'relu' is not supported/);
    expect(() => parseTowerConfig({ foo: 1 }, 'c.json')).toThrow(/not a tower config/);
    expect(() => parseTowerConfig(JSON.parse('{"vision_config": {"__proto__": {"num_attention_heads": 0.5}}}'), 'c.json')).toThrow(/"__proto__" key/);
  });
});
