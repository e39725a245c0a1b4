// Bounded fuzz: ≥ 500 malformed or hostile requests (test/server/fuzz-cases.ts) against a server with
// URL fetching enabled for any host (private targets refused) and a file:// root. Every one must be a
// 4xx OpenAI error object; afterwards the server is healthy, still answers, and logged no 500.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { dataUrl, pngBytes } from '../chat/fixtures.js';
import { fuzzCases, type FuzzCase } from './fuzz-cases.js';
import { errorOf, post, startTestServer, syntheticModel, type TestServer } from './helpers.js';

let model: Awaited<ReturnType<typeof syntheticModel>>;
let t: TestServer;
let root: string;
const LIMITS = { maxImages: 8, maxPromptChars: 100_000, maxBodyBytes: 4 * 1024 * 1024 };

beforeAll(async () => {
  model = await syntheticModel();
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'llm2clip-fuzz-root-'));
  fs.writeFileSync(path.join(root, 'ok.png'), await pngBytes(5, 6, 7));
  fs.symlinkSync('/etc/passwd', path.join(root, 'passwd.png'));
  t = await startTestServer(model, { ...LIMITS, fetchHosts: ['*'], fetchTimeoutMs: 2000, fileRoot: root, parallel: 2 });
});

afterAll(async () => {
  await t?.close();
  await model?.cleanup();
  fs.rmSync(root, { recursive: true, force: true });
});

async function send(c: FuzzCase): Promise<{ status: number; body: unknown }> {
  const url = `${t.url}${c.path ?? '/v1/chat/completions'}`;
  if (c.raw === undefined && c.body === undefined) {
    const r = await fetch(url, { method: c.method ?? 'GET', signal: AbortSignal.timeout(60_000) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined };
  }
  const r = await post(url, c.raw ?? c.body, { raw: c.raw !== undefined, method: c.method ?? 'POST', ...(c.headers ? { headers: c.headers } : {}) });
  return { status: r.status, body: r.body };
}

describe('fuzz', () => {
  it('answers every malformed or hostile request with a 4xx OpenAI error and stays healthy', async () => {
    const image = dataUrl(await pngBytes(9, 99, 199));
    const cases = fuzzCases({ image, port: t.server.port, fileRoot: root, ...LIMITS });
    expect(cases.length).toBeGreaterThanOrEqual(500);

    const results: { c: FuzzCase; status: number; code: string | null; message?: string; problem?: string }[] = [];
    let next = 0;
    const worker = async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        try {
          const r = await send(c);
          let code: string | null = null;
          let message: string | undefined;
          let problem: string | undefined;
          try {
            ({ code, message } = errorOf(r.body));
          } catch (e) {
            problem = (e as Error).message;
          }
          if (r.status < 400 || r.status > 499) problem = `status ${r.status}: ${JSON.stringify(r.body).slice(0, 200)}`;
          results.push({ c, status: r.status, code, ...(message ? { message } : {}), ...(problem ? { problem } : {}) });
        } catch (e) {
          results.push({ c, status: 0, code: null, problem: `request failed: ${(e as Error).message} ${String((e as { cause?: unknown }).cause ?? '')}` });
        }
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));

    const byStatus: Record<string, number> = {};
    const byCategory: Record<string, number> = {};
    const byCode: Record<string, number> = {};
    for (const r of results) {
      byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
      byCategory[r.c.cat] = (byCategory[r.c.cat] ?? 0) + 1;
      byCode[String(r.code)] = (byCode[String(r.code)] ?? 0) + 1;
    }
    console.log(`fuzz: ${results.length} requests; by status ${JSON.stringify(byStatus)}; by category ${JSON.stringify(byCategory)}; by code ${JSON.stringify(byCode)}`);
    const problems = results.filter((r) => r.problem).map((r) => `[${r.c.cat}] ${r.c.name}: ${r.problem}`);
    expect(problems).toEqual([]);
    expect(results).toHaveLength(cases.length);
    if (process.env.FUZZ_DUMP) for (const r of results) console.log(`${r.c.cat}\t${r.c.name}\t${r.status}\t${r.code}\t${r.message?.slice(0, 160)}`);

    // hostile images are refused as images, for the right reason
    const codes = (cat: string) => [...new Set(results.filter((r) => r.c.cat === cat).map((r) => r.code))];
    for (const cat of ['ssrf', 'bomb', 'not-an-image', 'bad-base64']) expect([cat, codes(cat)]).toEqual([cat, ['invalid_image']]);
    for (const r of results.filter((x) => x.c.cat === 'ssrf' && /^http/.test(x.c.name) && !/@|invalid/.test(x.c.name))) expect(r.message).toMatch(/refused$/);
    for (const r of results.filter((x) => x.c.cat === 'bomb' && /png \d{4,}/.test(x.c.name))) expect(r.message).toMatch(/over the 40000000-pixel limit/);
    expect(codes('many-images').sort()).toEqual(['invalid_value', 'too_many_images']);

    // healthy afterwards: health ready, nothing queued or busy, a valid request answers, no 500 logged
    const h = (await (await fetch(`${t.url}/health`)).json()) as { status: string; busy: number; queued: number };
    expect(h).toMatchObject({ status: 'ready', busy: 0, queued: 0 });
    const ok = await post(`${t.url}/v1/chat/completions`, { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: image } }, { type: 'text', text: 'ok?' }] }], max_tokens: 3 });
    expect(ok.status).toBe(200);
    const fileOk = await post(`${t.url}/v1/chat/completions`, { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `file://${root}/ok.png` } }] }], max_tokens: 1 });
    expect(fileOk.status).toBe(200);
    expect(t.logs.filter((l) => / 500 /.test(l))).toEqual([]);
    expect(await (await fetch(`${t.url}/metrics`)).text()).not.toMatch(/status="5\d\d"/);
  });
});
