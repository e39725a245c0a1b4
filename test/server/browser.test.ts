// The chat page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core): upload an
// image, ask, watch the answer stream in with timings; a second turn carries the history; images also
// arrive by drag-and-drop and paste; no request leaves the server, no console errors.
// It runs on the bundled demo model, so the answer that streams in is checked for being right (a blue
// star → "blue", then "top left" in the second turn), and for being exactly what the server sent.
import fs from 'node:fs';

import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { renderScene, type Scene } from '../../src/demo/world.js';
import { pngBytes } from '../chat/fixtures.js';
import { demoModel, startTestServer, type ModelPaths, type TestServer } from './helpers.js';

const BLUE_STAR: Scene = {
  background: { kind: 'gradient', a: [200, 196, 190], b: [150, 150, 160], angle: 45 },
  objects: [{ colour: 'blue', shape: 'star', cell: 0, dx: 0, dy: 0, size: 12, rgb: [40, 70, 220] }],
};

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
const demo = demoModel();
const skip = !haveChromium ? ` (skipped: ${CHROMIUM} is missing; apt-get install -y chromium)` : !demo ? ' (skipped: models/demo is missing)' : '';

describe.skipIf(skip !== '')(`chat page in headless Chromium on the demo model${skip}`, () => {
  let model: ModelPaths;
  let t: TestServer;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];
  const requests: { url: string; body: string | null }[] = [];

  beforeAll(async () => {
    model = demo!;
    t = await startTestServer(model, { modelName: 'llm2clip-demo' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    });
    page = await browser.newPage();
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('request', (r) => requests.push({ url: r.url(), body: r.postData() }));
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it('uploads an image, asks, and streams the answer in with timings; a second turn sends the history', async () => {
    await page.goto(`${t.url}/`);
    await expect.poll(() => page.textContent('#health')).toBe('ready');
    await expect.poll(() => page.textContent('#model')).toBe('llm2clip-demo');
    await page.click('#settings summary');
    await page.fill('#max-tokens', '24');
    await page.fill('#temperature', '0');

    await page.setInputFiles('#file-input', { name: 'star.png', mimeType: 'image/png', buffer: await renderScene(BLUE_STAR) });
    await page.waitForSelector('#pending img');
    await page.fill('#prompt', 'What colour is the star?');
    const responseP = page.waitForResponse((r) => r.url().endsWith('/v1/chat/completions'));
    await page.click('#send');

    const response = await responseP;
    expect(response.status()).toBe(200);
    expect(response.headers()['content-type']).toMatch(/^text\/event-stream/);
    const bubble = page.locator('.msg.assistant').first();
    await expect.poll(() => bubble.getAttribute('data-state'), { timeout: 60_000 }).toBe('done');
    await expect.poll(() => bubble.locator('.timings').textContent()).toMatch(/prompt tokens .* generated .*prefill .* ms/);
    expect(await page.locator('.msg.user img').count()).toBe(1);

    // what appeared is exactly what streamed
    const sse = await response.text();
    const deltas = sse
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)) as { choices: { delta?: { content?: string } }[] })
      .map((c) => c.choices[0]?.delta?.content ?? '');
    const streamed = deltas.join('');
    expect(await bubble.locator('.text').textContent()).toBe(streamed);
    expect(streamed).toBe('blue');
    expect(Number(await bubble.getAttribute('data-chunks'))).toBe(deltas.filter((d) => d.length > 0).length);
    expect(sse.trim().endsWith('data: [DONE]')).toBe(true);
    const first = JSON.parse(requests.find((r) => r.url.endsWith('/v1/chat/completions'))!.body!) as { messages: { content: unknown[] }[]; stream: boolean };
    expect(first.stream).toBe(true);
    expect(first.messages).toHaveLength(1);
    expect(JSON.stringify(first.messages[0]!.content)).toMatch(/data:image\/png;base64,/);

    // second turn: the history goes along
    await page.fill('#prompt', 'Where is the blue star?');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('.msg.assistant').nth(1).getAttribute('data-state'), { timeout: 60_000 }).toBe('done');
    expect(await page.locator('.msg.assistant').nth(1).locator('.text').textContent()).toBe('top left');
    const second = JSON.parse(requests.filter((r) => r.url.endsWith('/v1/chat/completions'))[1]!.body!) as { messages: { role: string }[] };
    expect(second.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
  });

  it('takes images by drag-and-drop and paste', async () => {
    const b64 = (await pngBytes(20, 200, 20)).toString('base64');
    await page.evaluate(async (data) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const dt = () => {
        const d = new DataTransfer();
        d.items.add(new File([bytes], 'green.png', { type: 'image/png' }));
        return d;
      };
      document.dispatchEvent(new DragEvent('drop', { dataTransfer: dt(), bubbles: true, cancelable: true }));
      document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt(), bubbles: true, cancelable: true }));
    }, b64);
    await expect.poll(() => page.locator('#pending img').count()).toBe(2);
    await page.click('#pending button');
    await expect.poll(() => page.locator('#pending img').count()).toBe(1);
  });

  it('made no request outside the server and logged no errors', () => {
    expect(requests.filter((r) => !r.url.startsWith(t.url) && !r.url.startsWith('data:') && !r.url.startsWith('blob:'))).toEqual([]);
    expect(problems).toEqual([]);
  });
});
