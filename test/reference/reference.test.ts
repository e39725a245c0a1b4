/**
 * Checks the float64 TypeScript reference against PyTorch transcriptions of the official modules
 * (fixtures from test/fixtures/reference/make_torch_fixtures.py), plus self-checks of the helpers.
 */
import { describe, expect, it } from 'vitest';
import type { AdapterSpec, TowerSpec } from '../../src/vision/spec.js';
import { loadFixture } from './fixture.js';
import {
  adapterWeightEntries,
  erf,
  randomAdapterWeights,
  randomInput,
  randomTowerWeights,
  referenceAdapter,
  referenceTower,
  relL2,
  ropeTables,
  towerWeightEntries,
} from './forward.js';

const FP32_TOL = 1e-5; // torch float32 vs float64 reference
const FP64_TOL = 1e-12; // torch float64 vs float64 reference (measured ~1e-15)

function rms(x: Float64Array): number {
  let s = 0;
  for (const v of x) s += v * v;
  return Math.sqrt(s / x.length);
}

for (const arch of ['openai', 'eva02'] as const) {
  describe(`${arch} tower vs torch`, () => {
    const fx = loadFixture(arch);
    const variants = fx.meta.variants as Record<string, TowerSpec>;
    const n = fx.meta.n as number;
    const weights = fx.weights();
    const pixels = fx.f32('inputs/pixels');
    const results = new Map<string, ReturnType<typeof referenceTower>>();
    const run = (name: string) => {
      if (!results.has(name)) results.set(name, referenceTower(variants[name], weights, pixels, n));
      return results.get(name)!;
    };

    for (const name of Object.keys(variants)) {
      for (const prec of ['fp32', 'fp64'] as const) {
        if (!fx.has(`outputs/${name}/${prec}/patch_features`)) continue;
        it(`${name} ${prec}: patch features and image embeds`, () => {
          const spec = variants[name];
          const out = run(name);
          const G = spec.imageSize / spec.patchSize;
          const get = (t: string) => (prec === 'fp32' ? fx.f32(`outputs/${name}/${prec}/${t}`) : fx.f64(`outputs/${name}/${prec}/${t}`));
          expect(fx.shape(`outputs/${name}/${prec}/patch_features`)).toEqual([n, G * G, spec.width]);
          expect(fx.shape(`outputs/${name}/${prec}/image_embeds`)).toEqual([n, spec.embedDim]);
          const ePatch = relL2(out.patchFeatures, get('patch_features'));
          const eEmbed = relL2(out.imageEmbeds, get('image_embeds'));
          console.log(`[reference] ${arch} ${name} ${prec}: patch_features relL2 ${ePatch.toExponential(2)}, image_embeds relL2 ${eEmbed.toExponential(2)}`);
          const tol = prec === 'fp32' ? FP32_TOL : FP64_TOL;
          expect(ePatch).toBeLessThanOrEqual(tol);
          expect(eEmbed).toBeLessThanOrEqual(tol);
        });
      }
    }

    it('variants differ enough that the comparisons above have power', () => {
      const main = fx.f64('outputs/main/fp64/patch_features');
      const mainEmb = fx.f64('outputs/main/fp64/image_embeds');
      for (const name of Object.keys(variants)) {
        if (name === 'main') continue;
        const d = Math.max(relL2(fx.f64(`outputs/${name}/fp64/patch_features`), main), relL2(fx.f64(`outputs/${name}/fp64/image_embeds`), mainEmb));
        console.log(`[reference] ${arch} ${name} vs main: relL2 ${d.toExponential(2)}`);
        expect(d).toBeGreaterThan(1e-3); // >> FP64_TOL: a semantic slip of this size would fail
      }
    });

    it('canonical weight names and shapes match the torch modules', () => {
      const fromTorch = fx.names.filter((x) => x.startsWith('weights/')).map((x) => [x.slice(8), fx.shape(x)] as const);
      const ours = towerWeightEntries(variants.main).map((e) => [e.name, [...e.shape]] as const);
      const sort = (a: readonly (readonly [string, readonly number[]])[]) => [...a].sort((x, y) => x[0].localeCompare(y[0]));
      expect(sort(ours)).toEqual(sort(fromTorch));
    });
  });
}

describe('adapter vs torch', () => {
  const fx = loadFixture('adapter');
  const spec = fx.meta.spec as AdapterSpec;
  const n = fx.meta.n as number;
  const out = referenceAdapter(spec, fx.weights(), fx.f32('inputs/llm_embeds'), n);

  it('fp32 and fp64', () => {
    const e32 = relL2(out, fx.f32('outputs/fp32/text_embeds'));
    const e64 = relL2(out, fx.f64('outputs/fp64/text_embeds'));
    console.log(`[reference] adapter: fp32 relL2 ${e32.toExponential(2)}, fp64 relL2 ${e64.toExponential(2)}`);
    expect(fx.shape('outputs/fp64/text_embeds')).toEqual([n, spec.embedDim]);
    expect(e32).toBeLessThanOrEqual(FP32_TOL);
    expect(e64).toBeLessThanOrEqual(FP64_TOL);
  });

  it('canonical weight names and shapes match the torch module', () => {
    const fromTorch = fx.names.filter((x) => x.startsWith('weights/')).map((x) => `${x.slice(8)} ${fx.shape(x).join('x')}`);
    const ours = adapterWeightEntries(spec).map((e) => `${e.name} ${e.shape.join('x')}`);
    expect([...ours].sort()).toEqual([...fromTorch].sort());
  });
});

describe('reference helpers', () => {
  it('erf matches tabulated values', () => {
    const table: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
      [-1.5, -0.9661051464753108],
    ];
    for (const [x, want] of table) expect(Math.abs(erf(x) - want)).toBeLessThan(1e-15);
  });

  it('rope tables: interleaved frequencies, row angles then column angles, intp_freq positions', () => {
    // head_dim 8 -> dim 4 -> freqs [1, 1/100]; G = 2, pt 16, intp_freq: t = [0, 8]
    const { cos, sin } = ropeTables({ ptHwSeqLen: 16, intpFreq: true, theta: 10000 }, 2, 8);
    const patch = 2; // gy = 1, gx = 0
    const want = [8, 8, 0.08, 0.08, 0, 0, 0, 0];
    for (let j = 0; j < 8; j++) {
      expect(cos[patch * 8 + j]).toBeCloseTo(Math.cos(want[j]), 14);
      expect(sin[patch * 8 + j]).toBeCloseTo(Math.sin(want[j]), 14);
    }
    expect(() => ropeTables({ ptHwSeqLen: 16, intpFreq: true, theta: 10000 }, 2, 10)).toThrow(/divisible by 4/);
    expect(() => ropeTables({ ptHwSeqLen: 16, intpFreq: false, theta: 10000 }, 2, 8)).toThrow(/intp_freq/);
  });
});

describe('random weights', () => {
  const openai: TowerSpec = {
    arch: 'openai', imageSize: 32, patchSize: 8, width: 32, layers: 3, heads: 2, mlpWidth: 128, embedDim: 24,
    layerNormEps: 1e-5, activation: 'quick_gelu', tapLayer: 1,
  };
  const eva: TowerSpec = {
    arch: 'eva02', imageSize: 32, patchSize: 8, width: 32, layers: 3, heads: 2, mlpWidth: 86, embedDim: 24,
    layerNormEps: 1e-6, activation: 'quick_gelu', tapLayer: 1, rope: { ptHwSeqLen: 16, intpFreq: true, theta: 10000 },
    subln: true,
  };
  const pixels = randomInput(2 * 3 * 32 * 32, 7);

  for (const spec of [openai, eva]) {
    it(`${spec.arch}: deterministic, complete, O(1) outputs`, () => {
      const a = randomTowerWeights(spec, 1);
      const b = randomTowerWeights(spec, 1);
      const c = randomTowerWeights(spec, 2);
      expect(a.names().sort()).toEqual(towerWeightEntries(spec).map((e) => e.name).sort());
      for (const name of a.names()) {
        expect(a.readF32(name)).toEqual(b.readF32(name));
        expect(a.info(name)!.shape).toEqual(b.info(name)!.shape);
      }
      const name = a.names()[5];
      expect(a.readF32(name)).not.toEqual(c.readF32(name));
      const out = referenceTower(spec, a, pixels, 2);
      expect(out.patchFeatures.length).toBe(2 * 16 * spec.width);
      expect(out.imageEmbeds.length).toBe(2 * spec.embedDim);
      for (const x of [out.patchFeatures, out.imageEmbeds]) {
        expect(x.every(Number.isFinite)).toBe(true);
        expect(rms(x)).toBeGreaterThan(0.05);
        expect(rms(x)).toBeLessThan(20);
      }
      // images are processed independently: image 1 alone gives the second half of the batch
      const single = referenceTower(spec, a, pixels.subarray(3 * 32 * 32), 1);
      expect(relL2(single.imageEmbeds, out.imageEmbeds.subarray(spec.embedDim))).toBe(0);
    });
  }

  it('eva without subln has no sub-LayerNorm weights', () => {
    const names = towerWeightEntries({ ...eva, subln: false }).map((e) => e.name);
    expect(names.some((x) => x.includes('inner_attn_ln') || x.includes('ffn_ln'))).toBe(false);
    expect(names).not.toContain('visual.blocks.0.attn.k_proj.bias');
  });

  it('adapter: deterministic, finite', () => {
    const spec: AdapterSpec = { inputDim: 32, embedDim: 24, blocks: 4, layerNormEps: 1e-5 };
    const w = randomAdapterWeights(spec, 3);
    expect(w.names().sort()).toEqual(adapterWeightEntries(spec).map((e) => e.name).sort());
    const y = referenceAdapter(spec, w, randomInput(2 * 32, 4), 2);
    expect(y.every(Number.isFinite)).toBe(true);
    expect(rms(y)).toBeGreaterThan(0.05);
  });
});
