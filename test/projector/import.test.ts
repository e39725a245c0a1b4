import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readNpy } from '../../src/formats/npy.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { TorchCheckpointReader } from '../../src/formats/torch.js';
import { ZipWriter } from '../../src/formats/zip.js';
import { importLlavaProjector } from '../../projector/import.js';
import { Projector } from '../../projector/runtime.js';
import { relL2 } from '../reference/forward.js';

const FIX = join(process.cwd(), 'test', 'fixtures', 'projector');
const work = mkdtempSync(join(tmpdir(), 'llm2clip-import-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('import-projector (LLaVA mm_projector → our format)', () => {
  it.each(['mlp2x', 'mlp3x'])('%s: a PyTorch-saved mm_projector.bin reproduces PyTorch outputs (≤ 1e-6 relative)', async (name) => {
    const out = join(work, name);
    const m = await importLlavaProjector(join(FIX, `${name}_mm_projector.bin`), out);
    expect(m).toMatchObject({ type: `${name}_gelu`, inputDim: 12, hiddenDim: 10, outputDim: 10 });
    const p = await Projector.load(out);
    const x = readNpy(join(FIX, `${name}_input.npy`));
    const y = readNpy(join(FIX, `${name}_output.npy`));
    expect(relL2(await p.project(x.data, 5), y.data)).toBeLessThan(1e-6);
    await p.dispose();
  });

  it('reads a LLaVA checkpoint folder (safetensors shards among LLM weights) and checks config.json', async () => {
    const src = TorchCheckpointReader.open(join(FIX, 'mlp2x_mm_projector.bin'));
    const dir = join(work, 'llava');
    mkdirSync(dir);
    writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [
      { name: 'model.embed_tokens.weight', shape: [4, 10], dtype: 'F32', data: new Float32Array(40) },
      ...['0.weight', '0.bias'].map((k) => ({ name: `model.mm_projector.${k}`, shape: src.info(`model.mm_projector.${k}`)!.shape, dtype: 'BF16' as const, data: src.readF32(`model.mm_projector.${k}`) })),
    ]);
    writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), ['2.weight', '2.bias'].map((k) => ({ name: `model.mm_projector.${k}`, shape: src.info(`model.mm_projector.${k}`)!.shape, dtype: 'F32' as const, data: src.readF32(`model.mm_projector.${k}`) })));
    src.close();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ mm_projector_type: 'mlp2x_gelu', mm_hidden_size: 12, hidden_size: 10, image_aspect_ratio: 'pad', _name_or_path: 'llava-tiny' }));
    const m = await importLlavaProjector(dir, join(work, 'from-dir'));
    expect(m).toMatchObject({ type: 'mlp2x_gelu', inputDim: 12, outputDim: 10, resizeMode: 'pad', llm: { nEmbd: 10, name: 'llava-tiny' } });
    const p = await Projector.load(join(work, 'from-dir'));
    // bf16-stored first layer: compare with the tolerance bf16 rounding allows
    expect(relL2(await p.project(readNpy(join(FIX, 'mlp2x_input.npy')).data, 5), readNpy(join(FIX, 'mlp2x_output.npy')).data)).toBeLessThan(1e-2);
    await p.dispose();

    writeFileSync(join(dir, 'config.json'), JSON.stringify({ mm_projector_type: 'linear' }));
    await expect(importLlavaProjector(dir, join(work, 'x'))).rejects.toThrow(/mm_projector_type is linear but the weights form mlp2x_gelu/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ mm_hidden_size: 1024 }));
    await expect(importLlavaProjector(dir, join(work, 'x'))).rejects.toThrow(/mm_hidden_size 1024 but the projector takes 12/);
  });

  it('refuses files without a projector, or with a broken layer sequence', async () => {
    const d = join(work, 'none');
    mkdirSync(d);
    writeSafetensors(join(d, 'model.safetensors'), [{ name: 'model.norm.weight', shape: [4], dtype: 'F32', data: new Float32Array(4) }]);
    await expect(importLlavaProjector(d, join(work, 'y'))).rejects.toThrow(/no mm_projector tensors/);
    writeSafetensors(join(d, 'model.safetensors'), [
      { name: 'model.mm_projector.0.weight', shape: [4, 4], dtype: 'F32', data: new Float32Array(16) },
      { name: 'model.mm_projector.0.bias', shape: [4], dtype: 'F32', data: new Float32Array(4) },
      { name: 'model.mm_projector.3.weight', shape: [4, 4], dtype: 'F32', data: new Float32Array(16) },
      { name: 'model.mm_projector.3.bias', shape: [4], dtype: 'F32', data: new Float32Array(4) },
    ]);
    await expect(importLlavaProjector(d, join(work, 'y'))).rejects.toThrow(/layers 0,3 are not LLaVA's Linear\/GELU sequence/);
    // A torch zip whose pickle calls posix.system: refused by the restricted unpickler, nothing runs.
    const zip = ZipWriter.create(join(work, 'evil.bin'));
    zip.add('archive/data.pkl', readFileSync(join(process.cwd(), 'test', 'fixtures', 'formats', 'evil_system_p2.pkl')));
    zip.close();
    await expect(importLlavaProjector(join(work, 'evil.bin'), join(work, 'y'))).rejects.toThrow(/refusing pickle global 'posix.system'/);
    await expect(importLlavaProjector(join(work, 'missing.bin'), join(work, 'y'))).rejects.toThrow(/no such file/);
  });
});
