// HTTP-level behaviour: 401 (API key), 404/405, 413, 429 (+Retry-After), 503 while loading / after a
// failed load, CORS, /metrics, and configuration parsing and help.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ConfigError, checkModelPaths, DEMO_MODEL_DIR, parseServeConfig, serveHelp } from '../../server/config.js';
import { dataUrl, imagePart, pngBytes } from '../chat/fixtures.js';
import { errorOf, longOutputFormat, post, startTestServer, syntheticModel, until, type TestServer } from './helpers.js';

let model: Awaited<ReturnType<typeof syntheticModel>>;
let image: string;
const open: TestServer[] = [];

beforeAll(async () => {
  model = await syntheticModel();
  image = dataUrl(await pngBytes(30, 120, 200));
});

afterAll(async () => {
  for (const t of open) await t.close();
  await model?.cleanup();
});

async function start(options: Parameters<typeof startTestServer>[1] = {}, deps: Parameters<typeof startTestServer>[2] = {}) {
  const t = await startTestServer(model, options, deps);
  open.push(t);
  return t;
}

const chatBody = (extra: Record<string, unknown> = {}) => ({ model: 'test-model', messages: [{ role: 'user', content: [imagePart(image), { type: 'text', text: 'hi' }] }], max_tokens: 4, ...extra });

describe('status codes', () => {
  it('401 without or with a wrong API key; health and the page stay open', async () => {
    const t = await start({ apiKey: 'sekret' });
    const none = await post(`${t.url}/v1/chat/completions`, chatBody());
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect(errorOf(none.body)).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
    const wrong = await post(`${t.url}/v1/chat/completions`, chatBody(), { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    expect((await fetch(`${t.url}/v1/models`)).status).toBe(401);
    expect((await fetch(`${t.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${t.url}/v1/models`, { headers: { authorization: 'Bearer sekret' } })).status).toBe(200);
    const ok = await post(`${t.url}/v1/chat/completions`, chatBody(), { headers: { authorization: 'Bearer sekret' } });
    expect(ok.status).toBe(200);
    expect((await fetch(`${t.url}/health`)).status).toBe(200);
    expect((await fetch(`${t.url}/`)).status).toBe(200);
    // the openai client with the key
    const models = await t.client.models.list();
    expect(models.data[0]!.id).toBe('test-model');
  });

  it('404 for unknown routes and models, 405 for a wrong method, 400 for bodies that are not JSON objects', async () => {
    const t = await start();
    const r = await fetch(`${t.url}/v1/nope`);
    expect(r.status).toBe(404);
    expect(errorOf(await r.json())).toMatchObject({ type: 'not_found_error', code: 'unknown_route' });
    const m = await fetch(`${t.url}/v1/models/other`);
    expect(m.status).toBe(404);
    expect(errorOf(await m.json()).param).toBe('model');
    expect((await fetch(`${t.url}/v1/models/test-model`)).status).toBe(200);
    const unknownModel = await post(`${t.url}/v1/chat/completions`, chatBody({ model: 'gpt-4o' }));
    expect([unknownModel.status, errorOf(unknownModel.body).code]).toEqual([404, 'model_not_found']);
    const get = await fetch(`${t.url}/v1/chat/completions`);
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
    expect((await post(`${t.url}/v1/chat/completions`, '{"messages": [', { raw: true })).status).toBe(400);
    expect((await post(`${t.url}/v1/chat/completions`, JSON.stringify(chatBody()), { raw: true, headers: { 'content-type': 'text/plain' } })).status).toBe(400);
    expect((await post(`${t.url}/v1/chat/completions`, '[1,2]', { raw: true })).status).toBe(400);
    // the model field is optional
    expect((await post(`${t.url}/v1/chat/completions`, { ...chatBody(), model: undefined })).status).toBe(200);
  });

  it('413 for a body over the limit', async () => {
    const t = await start({ maxBodyBytes: 4096 });
    const r = await post(`${t.url}/v1/chat/completions`, chatBody({ messages: [{ role: 'user', content: 'x'.repeat(8000) }] }));
    expect(r.status).toBe(413);
    expect(errorOf(r.body).code).toBe('request_too_large');
  });

  it('429 with Retry-After when the queue is full; the queued chat still finishes', async () => {
    const t = await start({ parallel: 1, maxQueue: 1, contextSize: 4096 });
    const ac = new AbortController();
    const long = fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chatBody({ max_tokens: 4000, response_format: longOutputFormat(6000) })),
      signal: ac.signal,
    }).catch(() => undefined);
    const stats = async () => (await (await fetch(`${t.url}/health`)).json()) as { busy: number; queued: number };
    await until(async () => (await stats()).busy === 1, 'a busy sequence');
    const queued = post(`${t.url}/v1/chat/completions`, chatBody());
    await until(async () => (await stats()).queued === 1, 'a queued chat');
    const refused = await post(`${t.url}/v1/chat/completions`, chatBody());
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(errorOf(refused.body)).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
    ac.abort();
    await long;
    expect((await queued).status).toBe(200);
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    expect(metrics).toMatch(/llm2clip_http_requests_total\{route="\/v1\/chat\/completions",status="429"\} 1/);
  });

  it('503 with Retry-After while the model loads; ready afterwards', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const t = await start({}, { beforeLoad: () => gate, waitReady: false });
    const h = await fetch(`${t.url}/health`);
    expect([h.status, ((await h.json()) as { status: string }).status]).toEqual([503, 'loading']);
    const r = await post(`${t.url}/v1/chat/completions`, chatBody());
    expect([r.status, r.headers.get('retry-after'), errorOf(r.body).code]).toEqual([503, '2', 'model_loading']);
    expect(await (await fetch(`${t.url}/metrics`)).text()).toMatch(/llm2clip_up\{state="loading"\} 1/);
    release();
    await t.server.ready;
    expect((await fetch(`${t.url}/health`)).status).toBe(200);
    expect((await post(`${t.url}/v1/chat/completions`, chatBody())).status).toBe(200);
  });

  it('503 "failed" when the model cannot be loaded', async () => {
    const t = await start({ llm: '/nonexistent/model.gguf' }, { waitReady: false });
    await expect(t.server.ready).rejects.toThrow(/not found: \/nonexistent\/model.gguf/);
    const h = await fetch(`${t.url}/health`);
    expect([h.status, ((await h.json()) as { status: string }).status]).toEqual([503, 'failed']);
    expect((await post(`${t.url}/v1/chat/completions`, chatBody())).status).toBe(503);
  });
});

describe('CORS and metrics', () => {
  it('answers preflights and sets the origin only for configured origins', async () => {
    const t = await start({ corsOrigin: ['http://app.example'] });
    const pre = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: 'http://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('http://app.example');
    const other = await fetch(`${t.url}/v1/models`, { headers: { origin: 'http://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('exposes Prometheus metrics: requests by status, tokens, image encode histogram, cache hits', async () => {
    const t = await start();
    expect((await post(`${t.url}/v1/chat/completions`, chatBody())).status).toBe(200);
    expect((await post(`${t.url}/v1/chat/completions`, chatBody())).status).toBe(200); // same image: cache hit
    expect((await post(`${t.url}/v1/chat/completions`, chatBody({ n: 3 }))).status).toBe(400);
    const text = await (await fetch(`${t.url}/metrics`)).text();
    expect(text).toMatch(/llm2clip_http_requests_total\{route="\/v1\/chat\/completions",status="200"\} 2/);
    expect(text).toMatch(/llm2clip_http_errors_total\{status="400",type="invalid_request_error"\} 1/);
    expect(text).toMatch(/llm2clip_image_encode_seconds_count 1/);
    expect(text).toMatch(/llm2clip_images_encoded_total 1/);
    expect(text).toMatch(/llm2clip_prompt_tokens_total \d+/);
    expect(text).toMatch(/llm2clip_completion_tokens_total \d+/);
    expect(text).toMatch(/llm2clip_queue_depth 0/);
    expect(text).toMatch(/llm2clip_active_sequences 0/);
    expect(text).toMatch(/llm2clip_up\{state="ready"\} 1/);
  });
});

describe('configuration', () => {
  it('reads flags and LLM2CLIP_* variables (flags win) and names the culprit of an error', () => {
    const c = parseServeConfig(['--port', '9000', '--fetch-hosts', 'a.com,*.b.org', '--no-image-batching'], { LLM2CLIP_PORT: '1', LLM2CLIP_PARALLEL: '3', LLM2CLIP_API_KEY: 'k' });
    expect(c).toMatchObject({ port: 9000, parallel: 3, apiKey: 'k', fetchHosts: ['a.com', '*.b.org'], imageBatching: false, host: '127.0.0.1', demoModel: true });
    expect(c.llm).toBe(`${DEMO_MODEL_DIR}/llm.gguf`);
    expect(() => parseServeConfig(['--port', 'abc'], {})).toThrow(/--port "abc"/);
    expect(() => parseServeConfig([], { LLM2CLIP_PARALLEL: '0' })).toThrow(/LLM2CLIP_PARALLEL "0"/);
    expect(() => parseServeConfig(['--bogus'], {})).toThrow(ConfigError);
    expect(() => parseServeConfig(['--fetch-allow-addresses', '10.0.0.0/33'], {})).toThrow(/IP address or CIDR/);
    const m = parseServeConfig(['--model-dir', '/m/x'], {});
    expect(m).toMatchObject({ tower: '/m/x/tower', projector: '/m/x/projector', llm: '/m/x/llm.gguf', modelName: 'llm2clip-x', demoModel: false });
  });

  it('refuses a missing model naming the path (the demo model by default)', () => {
    const c = parseServeConfig([], {});
    if (!c.demoModel) throw new Error('expected the demo default');
    try {
      checkModelPaths({ ...c, llm: '/nowhere/llm.gguf' });
      throw new Error('expected an error');
    } catch (e) {
      expect((e as Error).message).toMatch(/\/nowhere\/llm.gguf/);
      expect((e as Error).message).toMatch(/demo model/);
    }
  });

  it('documents every option in the help', () => {
    const h = serveHelp();
    for (const f of ['--host', '--port', '--model-dir', '--api-key', '--parallel', '--context-size', '--max-queue', '--cors-origin', '--fetch-hosts', '--fetch-allow-private', '--file-root', '--image-batching', '--drain-timeout-ms', 'LLM2CLIP_API_KEY']) {
      expect(h).toContain(f);
    }
  });
});
