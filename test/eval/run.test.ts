/**
 * `eval run` against a fake OpenAI-compatible server on 127.0.0.1: the request bodies (image as a data
 * URL, greedy, prompt text + suffix), retries of transient failures, a failures report for permanent
 * ones (never an empty answer, non-zero exit code), and resuming after the run was killed mid-way, with
 * the torn last line repaired and nothing asked or written twice.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { loadStoredAnswers } from '../../eval/src/answer-file.js';
import { chatCompletionsUrl } from '../../eval/src/backend.js';
import { formatProgress } from '../../eval/src/progress.js';
import { runEval, shortUuid, type RunOptions } from '../../eval/src/run.js';
import { startFakeServer, type FakeServer } from './helpers/fake-server.js';

const VITE_NODE = join(process.cwd(), 'node_modules', 'vite-node', 'vite-node.mjs');
const CLI_CHILD = join(process.cwd(), 'test', 'eval', 'helpers', 'cli-child.ts');
const SUFFIX = '\nAnswer the question using a single word or phrase.';
// a 1×1 PNG (only its bytes matter here: the fake server does not decode it)
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC', 'base64');

let work: string;
let images: string;
let server: FakeServer | undefined;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'llm2clip-eval-run-'));
  images = join(work, 'images');
  mkdirSync(images);
  for (let i = 1; i <= 12; i++) writeFileSync(join(images, `img${i}.png`), PNG);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));
afterEach(async () => {
  await server?.close();
  server = undefined;
});

let caseNo = 0;
/** A fresh case folder with a question file of questions q<from>..q<to> (image img<N>.png). */
function makeCase(ids: number[], extra: (n: number) => Record<string, unknown> = () => ({})): { dir: string; questions: string; out: string } {
  const dir = join(work, `case${++caseNo}`);
  mkdirSync(dir);
  const questions = join(dir, 'questions.jsonl');
  writeFileSync(questions, ids.map((n) => JSON.stringify({ question_id: n, image: `img${n}.png`, text: `What is in image [q${n}]?`, category: 'c', ...extra(n) })).join('\n') + '\n');
  return { dir, questions, out: join(dir, 'answers.jsonl') };
}

const readLines = (f: string): Record<string, unknown>[] =>
  readFileSync(f, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

function baseOptions(c: { questions: string; out: string }, s: FakeServer, more: Partial<RunOptions> = {}): RunOptions {
  return {
    questions: c.questions,
    images,
    out: c.out,
    backend: { kind: 'endpoint', endpoint: `${s.url}/v1`, model: 'fake-model', apiKey: 'sk-test' },
    progress: false,
    retryDelayMs: 1,
    log: () => undefined,
    ...more,
  };
}

/** The CLI in a child process (asynchronously: the fake server lives in this process). */
function runCli(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [VITE_NODE, CLI_CHILD, '--', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('eval run against an OpenAI-compatible endpoint', () => {
  it('sends the image as a data URL, greedy, prompt text + suffix; writes LLaVA answer records', async () => {
    server = await startFakeServer();
    const c = makeCase([1, 2, 3]);
    const s = await runEval(baseOptions(c, server, { promptSuffix: SUFFIX, concurrency: 2 }));
    expect(s).toMatchObject({ questions: 3, already_answered: 0, answered: 3, failed: 0, not_attempted: 0, failures_file: null, model_id: 'fake-model' });
    expect(server.requests).toHaveLength(3);
    for (const r of server.requests) {
      const n = r.tag.slice(1);
      expect(r.url).toBe('/v1/chat/completions');
      expect(r.headers.authorization).toBe('Bearer sk-test');
      expect(r.body).toMatchObject({ model: 'fake-model', temperature: 0, max_tokens: 128, stream: false });
      expect(r.body.messages).toEqual([
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG.toString('base64')}` } },
            { type: 'text', text: `What is in image [q${n}]?${SUFFIX}` },
          ],
        },
      ]);
    }
    const lines = readLines(c.out);
    expect(lines.map((l) => l.question_id).sort()).toEqual([1, 2, 3]);
    for (const l of lines) {
      expect(Object.keys(l)).toEqual(['question_id', 'prompt', 'text', 'answer_id', 'model_id', 'metadata']);
      expect(l.prompt).toBe(`What is in image [q${l.question_id as number}]?${SUFFIX}`);
      expect(l.text).toBe(`answer q${l.question_id as number}`); // stripped, as LLaVA does
      expect(l.answer_id).toMatch(/^[2-9A-HJ-NP-Za-km-z]{22}$/);
      expect(l).toMatchObject({ model_id: 'fake-model', metadata: { finish_reason: 'stop' } });
    }
  });

  it('honours --max-tokens, --temperature, --limit and text-only questions', async () => {
    server = await startFakeServer();
    const c = makeCase([1, 2, 3], (n) => (n === 1 ? { image: undefined } : {}));
    const s = await runEval(baseOptions(c, server, { maxTokens: 16, temperature: 0.5, limit: 2 }));
    expect(s).toMatchObject({ questions: 2, answered: 2 });
    const r1 = server.requests.find((r) => r.tag === 'q1')!;
    expect(r1.body).toMatchObject({ max_tokens: 16, temperature: 0.5 });
    expect(r1.body.messages[0]!.content).toEqual([{ type: 'text', text: 'What is in image [q1]?' }]);
    expect(server.requests.some((r) => r.tag === 'q3')).toBe(false);
  });

  it('retries transient failures, reports permanent ones in the failures file, never writes an empty answer', async () => {
    server = await startFakeServer({
      q2: { kind: 'status', status: 500, times: Infinity }, // permanent 5xx: retried, then failed
      q3: { kind: 'status', status: 400, times: Infinity }, // a client error: not retried
      q4: { kind: 'status', status: 429, times: 2, retryAfter: '0' },
      q5: { kind: 'drop', times: 1 }, // connection reset
      q6: { kind: 'status', status: 503, times: 1 },
    });
    const c = makeCase([1, 2, 3, 4, 5, 6, 7]);
    rmSync(join(images, 'img7.png')); // q7: its image is missing
    try {
      const s = await runEval(baseOptions(c, server, { concurrency: 3, retries: 3 }));
      expect(s).toMatchObject({ questions: 7, answered: 4, failed: 3, failures_file: `${c.out}.failed.jsonl` });
      const count = (tag: string) => server!.requests.filter((r) => r.tag === tag).length;
      expect([count('q1'), count('q2'), count('q3'), count('q4'), count('q5'), count('q6'), count('q7')]).toEqual([1, 4, 1, 3, 2, 2, 0]);

      const answers = readLines(c.out);
      expect(answers.map((a) => a.question_id).sort()).toEqual([1, 4, 5, 6]);
      expect(answers.every((a) => typeof a.text === 'string' && a.text !== '')).toBe(true);
      expect(answers.find((a) => a.question_id === 4)!.metadata).toEqual({ finish_reason: 'stop', attempts: 3 });

      const failures = readLines(`${c.out}.failed.jsonl`).sort((a, b) => (a.question_id as number) - (b.question_id as number));
      expect(failures).toHaveLength(3);
      expect(failures[0]).toMatchObject({ question_id: 2, status: 500, attempts: 4, image: 'img2.png' });
      expect(failures[0]!.error).toMatch(/HTTP 500: fake 500 for q2/);
      expect(failures[1]).toMatchObject({ question_id: 3, status: 400, attempts: 1 });
      expect(failures[2]).toMatchObject({ question_id: 7, attempts: 1 });
      expect(failures[2]!.error).toMatch(/img7\.png: ENOENT/);
      expect(s.failures.map((f) => f.question_id).sort()).toEqual([2, 3, 7]);

      // The endpoint recovers: a rerun asks only the failed questions, and the failures file goes away.
      server.behaviours.clear();
      writeFileSync(join(images, 'img7.png'), PNG);
      const before = server.requests.length;
      const again = await runEval(baseOptions(c, server, { concurrency: 3 }));
      expect(again).toMatchObject({ already_answered: 4, answered: 3, failed: 0, failures_file: null });
      expect(server.requests.slice(before).map((r) => r.tag).sort()).toEqual(['q2', 'q3', 'q7']);
      expect(existsSync(`${c.out}.failed.jsonl`)).toBe(false);
      expect(readLines(c.out).map((a) => a.question_id).sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    } finally {
      writeFileSync(join(images, 'img7.png'), PNG);
    }
  });

  it('answers repeated question ids (TextVQA reuses the image id) and identical lines once each', async () => {
    server = await startFakeServer();
    const c = makeCase([1]);
    const q = (id: string, n: number) => JSON.stringify({ question_id: id, image: 'img1.png', text: `Question [q${n}]` });
    writeFileSync(c.questions, [q('img_a', 1), q('img_a', 2), q('img_a', 1)].join('\n') + '\n');
    await runEval(baseOptions(c, server, { limit: 2 }));
    expect(readLines(c.out)).toHaveLength(2);
    await runEval(baseOptions(c, server));
    expect(readLines(c.out).map((l) => l.prompt)).toEqual(['Question [q1]', 'Question [q2]', 'Question [q1]']);
    const before = server.requests.length;
    expect(await runEval(baseOptions(c, server))).toMatchObject({ already_answered: 3, answered: 0 });
    expect(server.requests.length).toBe(before);
  });

  it('refuses to mix prompts when --prompt-suffix changed between runs', async () => {
    server = await startFakeServer();
    const c = makeCase([1, 2]);
    await runEval(baseOptions(c, server, { limit: 1 }));
    await expect(runEval(baseOptions(c, server, { promptSuffix: SUFFIX }))).rejects.toThrow(/another prompt.*--prompt-suffix/);
  });

  it('refuses a second run on the same answer file while the first is running; a stale lock is taken over', async () => {
    server = await startFakeServer();
    const c = makeCase([1, 2, 3, 4]);
    const first = runEval(baseOptions(c, server));
    await expect(runEval(baseOptions(c, server))).rejects.toThrow(/being written by another eval run \(pid \d+\)/);
    await first;
    expect(existsSync(`${c.out}.lock`)).toBe(false);
    expect(readLines(c.out)).toHaveLength(4);
    writeFileSync(`${c.out}.lock`, '999999999\n'); // no such process
    const more = makeCase([1, 2, 3, 4, 5]);
    const again = await runEval(baseOptions({ questions: more.questions, out: c.out }, server));
    expect(again).toMatchObject({ already_answered: 4, answered: 1 });
    expect(readLines(c.out)).toHaveLength(5);
    expect(existsSync(`${c.out}.lock`)).toBe(false);
  });

  it('resumes a killed run: nothing asked or written twice, the torn last line repaired', async () => {
    // q1–q3 are answered, q4 onwards hang: the run is stuck with 3 answers written when it is killed.
    server = await startFakeServer(Object.fromEntries([4, 5, 6, 7, 8].map((n) => [`q${n}`, { kind: 'hang' as const }])));
    const c = makeCase([1, 2, 3, 4, 5, 6, 7, 8]);
    const child: ChildProcess = spawn(
      process.execPath,
      [VITE_NODE, CLI_CHILD, '--', 'run', '--questions', c.questions, '--images', images, '--out', c.out, '--endpoint', server.url, '--model', 'fake-model', '--concurrency', '2', '--no-progress'],
      { stdio: 'ignore' },
    );
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, sig) => r(sig)));
    const t0 = Date.now();
    while (!(existsSync(c.out) && readLines(c.out).length === 3 && server.requests.length >= 5)) {
      if (Date.now() - t0 > 60_000) throw new Error('the child run did not reach 3 answers');
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    // As if it had died in the middle of writing q4's line:
    appendFileSync(c.out, '{"question_id": 4, "prompt": "What is in image [q4]?", "te');

    server.behaviours.clear();
    const before = server.requests.length;
    const logs: string[] = [];
    const s = await runEval(baseOptions(c, server, { concurrency: 2, log: (m) => logs.push(m) }));
    expect(s).toMatchObject({ questions: 8, already_answered: 3, answered: 5, failed: 0, torn_line: { line: 4, action: 'removed' } });
    expect(logs.join('\n')).toMatch(/removed a torn last line \(line 4/);
    const asked = server.requests.slice(before).map((r) => r.tag).sort();
    expect(asked).toEqual(['q4', 'q5', 'q6', 'q7', 'q8']);
    const ids = readLines(c.out).map((l) => l.question_id);
    expect(ids).toHaveLength(8);
    expect(new Set(ids).size).toBe(8);
    expect(readFileSync(c.out, 'utf8').endsWith('}\n')).toBe(true);
  });

  it('exits non-zero and lists the failed ids (CLI); usage errors exit 2', async () => {
    server = await startFakeServer({ q2: { kind: 'status', status: 400, times: Infinity } });
    const c = makeCase([1, 2, 3]);
    const r = await runCli(['run', '--questions', c.questions, '--images', images, '--out', c.out, '--endpoint', server.url, '--model', 'm', '--no-progress', '--retry-delay', '1']);
    expect(r.code, r.stderr).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ questions: 3, answered: 2, failed: 1, failed_ids: [2], failures_file: `${c.out}.failed.jsonl` });
    expect(r.stderr).toMatch(/1 question\(s\) failed and were not answered \(see .*answers\.jsonl\.failed\.jsonl\):\n {2}2: HTTP 400/);
    const u = await runCli(['run', '--questions', c.questions, '--images', images, '--out', c.out, '--endpoint', server.url, '--model', 'm', '--tower', 't']);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/cannot be combined/);
  });
});

describe('run pieces', () => {
  it('validates question lines before asking anything', async () => {
    server = await startFakeServer();
    const c = makeCase([1]);
    writeFileSync(c.questions, '{"question_id": 1, "image": "img1.png", "text": "[q1]"}\n{"question_id": 2, "image": 5, "text": "[q2]"}\n');
    await expect(runEval(baseOptions(c, server))).rejects.toThrow(/questions\.jsonl line 2: image/);
    expect(server.requests).toHaveLength(0);
  });

  it('completes a whole last line that lost only its newline; refuses a corrupt middle line', () => {
    const dir = join(work, 'stored');
    mkdirSync(dir);
    const f = join(dir, 'a.jsonl');
    const rec = (id: number) => JSON.stringify({ question_id: id, prompt: 'p', text: 't', answer_id: 'x', model_id: 'm', metadata: {} });
    writeFileSync(f, `${rec(1)}\n${rec(2)}`);
    expect(loadStoredAnswers(f).repaired).toEqual({ line: 2, action: 'completed', bytes: 1 });
    expect(readFileSync(f, 'utf8')).toBe(`${rec(1)}\n${rec(2)}\n`);
    writeFileSync(f, `${rec(1)}\n{"question_id": 2, "pro\n${rec(3)}\n`);
    expect(() => loadStoredAnswers(f)).toThrow(/line 2: not valid JSON.*only a torn LAST line/);
  });

  it('endpoint URLs', () => {
    expect(chatCompletionsUrl('http://127.0.0.1:8080')).toBe('http://127.0.0.1:8080/v1/chat/completions');
    expect(chatCompletionsUrl('http://h:1/v1/')).toBe('http://h:1/v1/chat/completions');
    expect(chatCompletionsUrl('http://h:1/api/v1/chat/completions')).toBe('http://h:1/api/v1/chat/completions');
    expect(() => chatCompletionsUrl('ftp://h')).toThrow(/http/);
  });

  it('progress line: count, percent, rate, ETA, failures', () => {
    const line = formatProgress({ done: 50, failed: 2, total: 200, elapsedMs: 10_000 }, 10);
    expect(line).toBe('[###-------] 50/200 25.0% | 5.0 q/s | ETA 30s | elapsed 10s | failed 2');
    expect(formatProgress({ done: 1, failed: 0, total: 100, elapsedMs: 4000 }, 4)).toBe('[----] 1/100 1.0% | 4.0 s/q | ETA 6m36s | elapsed 4s');
  });

  it('answer ids look like shortuuid', () => {
    const ids = new Set(Array.from({ length: 100 }, shortUuid));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(/^[2-9A-HJ-NP-Za-km-z]{22}$/);
  });
});
