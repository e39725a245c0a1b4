/**
 * convert-llm refuses what it cannot convert faithfully, with a message naming the file and the problem,
 * and writes nothing in that case; and the CLI commands validate their flags (usage errors name the flag).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { cmdConvertLlm, cmdSynthLlm } from '../../src/cli/llm-commands.js';
import { UsageError } from '../../src/cli/args.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { convertLlm, permuteQk } from '../../src/gguf/convert-llm.js';
import { GgufFile } from '../../src/gguf/reader.js';
import { writeHfFixture, type HfFixtureOptions } from './hf-fixture.js';
import { scratchDir } from './helpers.js';

let root: string;
let n = 0;
beforeAll(() => {
  root = scratchDir('convert-errors');
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A fresh valid fixture, edited by `edit`, converted; resolves to the error message. */
async function failure(edit: (dir: string) => void, o: Partial<HfFixtureOptions> = {}, dtype?: 'F32' | 'F16'): Promise<string> {
  const dir = path.join(root, `case${n++}`);
  writeHfFixture({ dir, tokenizer: 'spm', layers: 1, ...o });
  edit(dir);
  const out = path.join(root, `${path.basename(dir)}.gguf`);
  try {
    await convertLlm({ dir, out, dtype });
  } catch (e) {
    expect(fs.existsSync(out)).toBe(false);
    return (e as Error).message;
  }
  throw new Error('conversion unexpectedly succeeded');
}

const json = (dir: string, file: string): Record<string, unknown> => JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
const setJson = (dir: string, file: string, patch: (j: Record<string, unknown>) => void): void => {
  const j = json(dir, file);
  patch(j);
  fs.writeFileSync(path.join(dir, file), JSON.stringify(j));
};

describe('convert-llm input validation', () => {
  it('names missing files and directories', async () => {
    await expect(convertLlm({ dir: path.join(root, 'nope'), out: path.join(root, 'x.gguf') })).rejects.toThrow(/nope: not a directory/);
    expect(await failure((d) => fs.rmSync(path.join(d, 'config.json')))).toMatch(/config.json: no such file/);
    expect(await failure((d) => fs.rmSync(path.join(d, 'model.safetensors')))).toMatch(/no model.safetensors or model.safetensors.index.json/);
    expect(
      await failure((d) => {
        fs.renameSync(path.join(d, 'model.safetensors'), path.join(d, 'pytorch_model.bin'));
      }),
    ).toMatch(/found pytorch_model.bin: convert-llm reads safetensors checkpoints only/);
    expect(
      await failure((d) => {
        fs.renameSync(path.join(d, 'tokenizer.json'), path.join(d, 'tokenizer.model'));
      }),
    ).toMatch(/tokenizer.json: no such file \(only tokenizer.model is present/);
    expect(await failure((d) => fs.writeFileSync(path.join(d, 'config.json'), '{not json'))).toMatch(/config.json: not valid JSON/);
  });

  it('refuses unsupported architectures and settings', async () => {
    expect(await failure((d) => setJson(d, 'config.json', (j) => (j.architectures = ['GPT2LMHeadModel'])))).toMatch(
      /architecture GPT2LMHeadModel is not supported \(convert-llm takes LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM\)/,
    );
    expect(await failure((d) => setJson(d, 'config.json', (j) => (j.quantization_config = { quant_method: 'gptq' })))).toMatch(/quantized checkpoints are not supported/);
    expect(await failure((d) => setJson(d, 'config.json', (j) => (j.hidden_act = 'gelu')))).toMatch(/hidden_act gelu is not supported/);
    expect(await failure((d) => setJson(d, 'config.json', (j) => (j.rope_scaling = { rope_type: 'yarn', factor: 4 })))).toMatch(/RoPE scaling type yarn is not supported/);
    expect(await failure((d) => setJson(d, 'config.json', (j) => delete j.hidden_size))).toMatch(/config.json: hidden_size: /);
    expect(await failure((d) => setJson(d, 'config.json', (j) => (j.num_key_value_heads = 3)))).toMatch(/num_attention_heads 4 is not a multiple of num_key_value_heads 3/);
    expect(await failure(() => {}, { arch: 'MistralForCausalLM', extraConfig: { sliding_window: 128 } })).toMatch(/sliding_window 128 < max_position_embeddings 256/);
    expect(await failure(() => {}, { arch: 'Qwen2ForCausalLM', tokenizer: 'qwen2', extraConfig: { use_sliding_window: true } })).toMatch(/use_sliding_window is true/);
  });

  it('checks tensors against the config', async () => {
    expect(await failure((d) => setJson(d, 'config.json', (j) => (j.intermediate_size = 100)))).toMatch(/model.layers.0.mlp.gate_proj.weight has shape \[96, 64\]; config.json implies \[100, 64\]/);
    expect(await failure((d) => setJson(d, 'config.json', (j) => (j.num_hidden_layers = 2)))).toMatch(/missing tensor model.layers.1.input_layernorm.weight \(GGUF blk.1.attn_norm.weight\)/);
    expect(await failure((d) => setJson(d, 'config.json', (j) => (j.tie_word_embeddings = false)), { tied: true })).toMatch(/lm_head.weight is missing but config.json says tie_word_embeddings is false/);
    const extra = await failure((d) => {
      writeSafetensors(path.join(d, 'model.safetensors'), [
        ...['model.embed_tokens.weight'].map((name) => ({ name, shape: [3, 2], dtype: 'F32' as const, data: new Float32Array(6) })),
        { name: 'vision_tower.patch_embed.weight', shape: [2], dtype: 'F32', data: new Float32Array(2) },
      ]);
    });
    expect(extra).toMatch(/not part of a 1-layer Llama decoder, e.g. vision_tower.patch_embed.weight/);
  });

  it('refuses broken values and values F16 cannot hold', async () => {
    const poke = (name: string, value: number) => (d: string): void => {
      const file = path.join(d, 'model.safetensors');
      const bytes = fs.readFileSync(file);
      const hlen = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + hlen).toString('utf8'));
      bytes.writeFloatLE(value, 8 + hlen + header[name].data_offsets[0]);
      fs.writeFileSync(file, bytes);
    };
    expect(await failure(poke('model.layers.0.mlp.up_proj.weight', NaN))).toMatch(/tensor model.layers.0.mlp.up_proj.weight contains NaN values/);
    expect(await failure(poke('model.layers.0.mlp.up_proj.weight', 1e6), {}, 'F16')).toMatch(/values up to 1000000, beyond float16's range; convert with --dtype f32/);
    await expect(convertLlm({ dir: root, out: path.join(root, 'x.gguf'), dtype: 'Q4' as never })).rejects.toThrow(/dtype must be F32 or F16/);
  });

  it('refuses tokenizers llama.cpp would not reproduce', async () => {
    expect(await failure((d) => setJson(d, 'tokenizer.json', (j) => ((j.model as Record<string, unknown>).type = 'WordPiece')))).toMatch(/tokenizer model WordPiece is not supported/);
    const unknownPre = await failure(
      (d) => setJson(d, 'tokenizer.json', (j) => (((j.pre_tokenizer as Record<string, unknown>).pretokenizers as Record<string, unknown>[])[0]!.pattern = { Regex: '\\w+' })),
      { tokenizer: 'llama-bpe' },
    );
    expect(unknownPre).toMatch(/unsupported pre-tokenizer: split regex "\\\\w\+" is not one convert-llm knows/);
    expect(await failure((d) => setJson(d, 'tokenizer.json', (j) => (j.normalizer = null)))).toMatch(/must map spaces to "▁"/);
    expect(await failure((d) => setJson(d, 'tokenizer_config.json', (j) => (j.eos_token = '<eos>')))).toMatch(/tokenizer_config.json: eos_token "<eos>" is not in the vocabulary/);
    expect(await failure((d) => setJson(d, 'config.json', (j) => (j.vocab_size = 100)))).toMatch(/beyond config.json's vocab_size 100/);
  });

  it('checks sharded checkpoints against their index', async () => {
    const msg = await failure(
      (d) => {
        const idx = json(d, 'model.safetensors.index.json') as { weight_map: Record<string, string> };
        idx.weight_map['model.norm.weight'] = 'model-00001-of-00002.safetensors';
        fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify(idx));
      },
      { shards: 2 },
    );
    expect(msg).toMatch(/weight_map puts model.norm.weight in model-00001-of-00002.safetensors, which does not hold it/);
    const escape = await failure(
      (d) => setJson(d, 'model.safetensors.index.json', (j) => ((j.weight_map as Record<string, string>)['model.norm.weight'] = '../x.safetensors')),
      { shards: 2 },
    );
    expect(escape).toMatch(/shard name "..\/x.safetensors" is not a plain file name/);
  });
});

describe('convert-llm RoPE settings', () => {
  it('records linear RoPE scaling and rope_parameters (transformers ≥ 5) in the llama.* keys', async () => {
    const dir = path.join(root, 'rope-linear');
    writeHfFixture({ dir, tokenizer: 'spm', layers: 1, ropeScaling: { type: 'linear', factor: 2.5 } });
    const out = path.join(root, 'rope-linear.gguf');
    await convertLlm({ dir, out });
    const f = GgufFile.open(out);
    expect([f.value('llama.rope.scaling.type'), f.value('llama.rope.scaling.factor'), f.value('llama.rope.freq_base')]).toEqual(['linear', 2.5, 10000]);
    f.close();
    setJson(dir, 'config.json', (j) => {
      delete j.rope_theta;
      j.rope_scaling = null;
      j.rope_parameters = { rope_type: 'default', rope_theta: 123456 };
    });
    await convertLlm({ dir, out });
    const g = GgufFile.open(out);
    expect([g.value('llama.rope.scaling.type'), g.value('llama.rope.freq_base')]).toEqual([undefined, 123456]);
    g.close();
  });
});

describe('permuteQk', () => {
  it("moves each head's row i + j·d/2 to 2i + j (convert_hf_to_gguf.py's permute)", () => {
    // 2 heads of 4 rows, 1 column: rows labelled by their index.
    const w = Float32Array.from({ length: 8 }, (_, i) => i);
    expect(Array.from(permuteQk(w, 8, 2))).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    // 1 head of 6 rows, 2 columns: whole rows move.
    const w2 = Float32Array.from({ length: 12 }, (_, i) => i);
    expect(Array.from(permuteQk(w2, 6, 1))).toEqual([0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11]);
    expect(() => permuteQk(new Float32Array(6), 6, 2)).toThrow(/cannot permute 6 rows into 2 heads of even size/);
  });
});

describe('CLI: synth-llm and convert-llm', () => {
  let out: { mock: { calls: unknown[][] } };
  beforeAll(() => {
    out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  });
  afterAll(() => vi.restoreAllMocks());

  it('writes a tiny model and a converted model, reporting what it wrote', async () => {
    const synth = path.join(root, 'cli-tiny.gguf');
    await cmdSynthLlm(['--preset', 'tiny', '--out', synth, '--seed', '3']);
    expect(String(out.mock.calls.at(-1)?.[0])).toMatch(/^wrote .*cli-tiny.gguf \(.* MiB\): llama 2×64, 4 heads \/ 2 KV, n_ff 128, vocab \d+ \(SPM; <image> = 261\), F32, seed 3\n$/);
    const f = GgufFile.open(synth);
    expect(f.value('general.architecture')).toBe('llama');
    f.close();

    const dir = path.join(root, 'cli-hf');
    writeHfFixture({ dir, tokenizer: 'qwen2', arch: 'Qwen2ForCausalLM', qkvBias: true, tied: true, dtype: 'BF16' });
    const conv = path.join(root, 'cli-conv.gguf');
    await cmdConvertLlm([dir, '--out', conv, '--dtype', 'f32']);
    expect(String(out.mock.calls.at(-1)?.[0])).toMatch(/Qwen2ForCausalLM → llama 2×64, 4 heads \/ 2 KV, F32, tied embeddings; tokenizer gpt2 \(qwen2\) with \d+ tokens, chat template included/);
  });

  it('names the flag in usage errors', async () => {
    const usage = async (argv: string[], fn = cmdSynthLlm): Promise<string> => {
      try {
        await fn(argv);
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        return (e as Error).message;
      }
      throw new Error('no usage error');
    };
    expect(await usage(['--out', 'x.gguf'])).toMatch(/^--preset is required/);
    expect(await usage(['--preset', '7b', '--out', 'x.gguf'])).toMatch(/^--preset "7b": /);
    expect(await usage(['--preset', 'tiny'])).toMatch(/^--out is required/);
    expect(await usage(['--preset', 'tiny', '--out', 'x.bin'])).toMatch(/^--out "x.bin": the output file name must end in .gguf/);
    expect(await usage(['--preset', 'tiny', '--out', 'x.gguf', '--seed=-4'])).toMatch(/^--seed "-4"/);
    expect(await usage(['--preset', 'tiny', '--out', 'x.gguf', '--seed', '1.5'])).toMatch(/^--seed "1.5"/);
    expect(await usage(['--preset', 'tiny', '--out', 'x.gguf', '--dtype', 'q4'])).toMatch(/^--dtype "q4"/);
    expect(await usage(['--preset', 'tiny', '--out', 'x.gguf', 'extra'])).toMatch(/unexpected argument extra/);
    expect(await usage(['--bogus'])).toMatch(/bogus/);
    expect(await usage(['--out', 'x.gguf'], cmdConvertLlm)).toMatch(/exactly one Hugging Face model directory/);
    expect(await usage(['a', 'b', '--out', 'x.gguf'], cmdConvertLlm)).toMatch(/exactly one Hugging Face model directory/);
    expect(await usage([root, '--out', 'x.gguf', '--dtype', 'bf16'], cmdConvertLlm)).toMatch(/^--dtype "bf16"/);
  });
});
