// Graceful shutdown: in-flight chats finish within the drain deadline or are aborted after it (a streamed
// one ends with an error event), new requests are refused; and the real thing: `llm2clip serve` (built
// dist/) gets SIGTERM while streaming and exits 0 after the stream completed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { packageRoot } from '../../server/config.js';
import { longOutputFormat, post, startTestServer, syntheticModel, until } from './helpers.js';

let model: Awaited<ReturnType<typeof syntheticModel>>;

beforeAll(async () => {
  model = await syntheticModel();
});

afterAll(async () => {
  await model?.cleanup();
});

const body = (maxTokens: number, stream: boolean) => ({
  messages: [{ role: 'user', content: 'write' }],
  max_tokens: maxTokens,
  stream,
  response_format: longOutputFormat(8000),
});

async function streamText(url: string, b: unknown): Promise<string> {
  const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
  return r.text();
}

describe('drain', () => {
  it('lets in-flight chats finish within the deadline and refuses new ones', async () => {
    const t = await startTestServer(model, { contextSize: 4096 });
    const inflight = post(`${t.url}/v1/chat/completions`, body(600, false));
    await until(() => t.server.context.inflight.size === 1, 'an in-flight chat');
    const drained = t.server.drain(60_000);
    const late = await fetch(`${t.url}/v1/models`).then(
      (r) => r.status,
      () => 'refused',
    );
    expect([503, 'refused']).toContain(late);
    const r = await inflight;
    expect(r.status).toBe(200);
    expect((r.body as { choices: { finish_reason: string }[] }).choices[0]!.finish_reason).toBe('length');
    expect(await drained).toEqual({ finished: 1, aborted: 0 });
    await expect(fetch(`${t.url}/health`)).rejects.toThrow();
  });

  it('aborts what is still running at the deadline: a stream ends with a shutting_down error event', async () => {
    const t = await startTestServer(model, { contextSize: 4096 });
    const text = streamText(t.url, body(4000, true));
    const plain = post(`${t.url}/v1/chat/completions`, body(4000, false));
    await until(() => t.server.context.inflight.size === 2 && (t.server.context.model?.vlm.stats().pool.busy ?? 0) === 2, 'two generating chats');
    await new Promise((r) => setTimeout(r, 50));
    const result = await t.server.drain(100);
    expect(result).toEqual({ finished: 0, aborted: 2 });
    const sse = await text;
    expect(sse).toMatch(/^data: \{.*"chat\.completion\.chunk"/);
    expect(sse.trim().split('\n\n').at(-1)).toMatch(/"code":"shutting_down"/);
    const p = await plain;
    expect(p.status).toBe(503);
  });
});

const cli = path.join(packageRoot(), 'dist', 'src', 'cli', 'serve-command.js');

describe.skipIf(!fs.existsSync(cli))(`SIGTERM to llm2clip serve${fs.existsSync(cli) ? '' : ' (skipped: dist/ is not built; run npm run build)'}`, () => {
  it('drains: the running stream completes, then the process exits 0', async () => {
    const args = ['--tower', model.tower, '--projector', model.projector, '--llm', model.llm, '--port', '0', '--gpu', 'off', '--threads', '1', '--tower-threads', '1'];
    const runner = path.join(packageRoot(), 'test', 'server', 'serve-child.mjs');
    const child = spawn(process.execPath, [runner, ...args, '--context-size', '4096', '--quiet'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      await until(() => /serving .* at (http:\/\/\S+)\//.test(stderr), 'the server to start', 60_000);
      const url = /at (http:\/\/\S+?)\/ /.exec(stderr)![1]!;
      const stream = streamText(url, body(1500, true));
      await until(async () => ((await (await fetch(`${url}/health`)).json()) as { busy: number }).busy === 1, 'a busy sequence');
      child.kill('SIGTERM');
      const sse = await stream;
      expect(sse.trim().endsWith('data: [DONE]')).toBe(true);
      expect(sse).toMatch(/"finish_reason":"length"/);
      expect(await exited).toBe(0);
      expect(stderr).toMatch(/SIGTERM, draining/);
      expect(stderr).toMatch(/1 request\(s\) finished, 0 aborted/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
