/**
 * `eval run`: answers a LLaVA question file with a model and appends LLaVA answer records
 * ({question_id, prompt, text, answer_id, model_id, metadata}) to the answer file, one fsync'ed line at a
 * time. Resumable: questions already answered in the file are skipped (never asked or written twice), a
 * torn last line left by a killed run is repaired. Greedy (temperature 0) by default, LLaVA's 128 new
 * tokens. Requests failing with 408/429/5xx, network errors or timeouts are retried with exponential
 * backoff (honouring Retry-After); a question that still fails is written to the failures file
 * (<out>.failed.jsonl: question_id, prompt, image, error, status, attempts), never as an empty answer,
 * and is asked again by the next run.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, isAbsolute, relative, resolve } from 'node:path';

import { sniffFormat } from '../../src/image/sniff.js';
import { answerKey, JsonlAppender, loadStoredAnswers } from './answer-file.js';
import { BackendError, endpointBackend, localBackend, type Backend, type EndpointOptions, type LocalOptions } from './backend.js';
import { EvalInputError, idKey, readQuestions, type AnswerRecord, type Question, type QuestionId } from './files.js';
import { ProgressBar } from './progress.js';
import { pyStrip } from './py.js';

export interface RunOptions {
  /** LLaVA question file, or the questions themselves */
  questions: string | readonly Question[];
  /** folder the questions' image names are relative to */
  images: string;
  /** answer file (appended to; created if absent) */
  out: string;
  backend: ({ kind: 'endpoint' } & EndpointOptions) | ({ kind: 'local' } & LocalOptions) | Backend;
  /** appended to every question's text (LLaVA's suffix, e.g. "\nAnswer the question using a single word or phrase.") */
  promptSuffix?: string;
  /** requests in flight at once (default 1, as LLaVA) */
  concurrency?: number;
  /** only the first N questions of the file */
  limit?: number;
  /** default 128 (LLaVA's max_new_tokens) */
  maxTokens?: number;
  /** default 0: greedy */
  temperature?: number;
  /** retries after the first attempt (default 5) */
  retries?: number;
  /** first backoff delay (default 1000 ms), doubled per retry with jitter, capped at maxRetryDelayMs (30 s) */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** default `${out}.failed.jsonl` */
  failuresFile?: string;
  /** stderr progress bar: 'auto' (default), false, or a callback */
  progress?: 'auto' | false | ((done: number, failed: number, total: number) => void);
  signal?: AbortSignal;
  /** model_id written to the answers (default: the endpoint's model name / the GGUF's file name) */
  modelId?: string;
  /** notes for the user (default: stderr) */
  log?: (msg: string) => void;
}

export interface RunFailure {
  question_id: QuestionId;
  prompt: string;
  image?: string;
  error: string;
  status?: number;
  attempts: number;
}

export interface RunSummary {
  /** questions considered (after --limit) */
  questions: number;
  already_answered: number;
  answered: number;
  failed: number;
  /** questions left unasked because the run was interrupted */
  not_attempted: number;
  interrupted: boolean;
  out: string;
  /** the failures file, when a question failed */
  failures_file: string | null;
  failures: RunFailure[];
  model_id: string;
  elapsed_s: number;
  torn_line?: { line: number; action: 'removed' | 'completed'; bytes: number };
}

const ALPHABET = '23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

/** A 22-character base-57 id of 128 random bits, like shortuuid.uuid(). */
export function shortUuid(): string {
  let n = BigInt(`0x${randomBytes(16).toString('hex')}`);
  let s = '';
  for (let i = 0; i < 22; i++) {
    s = ALPHABET[Number(n % 57n)]! + s;
    n /= 57n;
  }
  return s;
}

const MIME_BY_EXT: Record<string, string> = { '.bmp': 'image/bmp', '.tif': 'image/tiff', '.tiff': 'image/tiff', '.ppm': 'image/x-portable-pixmap' };

/** The image as a data URL (type from its magic bytes, else its extension). */
export async function imageDataUrl(path: string): Promise<string> {
  const bytes = await readFile(path);
  const fmt = sniffFormat(bytes);
  const mime = fmt ? `image/${fmt}` : MIME_BY_EXT[extname(path).toLowerCase()];
  if (!mime) throw new BackendError(`image ${path}: not a PNG, JPEG, WebP or GIF file`, false);
  return `data:${mime};base64,${bytes.toString('base64')}`;
}

function imagePath(dir: string, name: string): string {
  const p = resolve(dir, name);
  const rel = relative(resolve(dir), p);
  if (rel.startsWith('..') || isAbsolute(rel)) throw new BackendError(`image ${JSON.stringify(name)} lies outside --images ${dir}`, false);
  return p;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((res, rej) => {
    if (signal.aborted) return rej(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      res();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      rej(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

const isAbort = (e: unknown, signal: AbortSignal): boolean => signal.aborted || (e as Error)?.name === 'AbortError';

/**
 * Two runs appending to the same answer file would each ask every pending question: a lock file
 * (`<out>.lock`, holding the pid) refuses the second one; a lock left by a process that no longer runs is
 * taken over.
 */
function lockAnswers(out: string): () => void {
  const file = `${out}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new EvalInputError(`${file}: cannot create the lock file (${(e as Error).message})`);
      let pid = NaN;
      try {
        pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
      } catch {
        continue; // removed meanwhile by the run that held it: try again
      }
      if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) {
        throw new EvalInputError(`${out} is being written by another eval run (pid ${pid}); wait for it, or remove ${file} if that process is not an eval run`);
      }
      rmSync(file, { force: true });
    }
  }
  throw new EvalInputError(`${file}: could not take the lock`);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function runEval(opts: RunOptions): Promise<RunSummary> {
  const unlock = lockAnswers(opts.out);
  try {
    return await runEvalLocked(opts);
  } finally {
    unlock();
  }
}

async function runEvalLocked(opts: RunOptions): Promise<RunSummary> {
  const t0 = performance.now();
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const concurrency = opts.concurrency ?? 1;
  const maxTokens = opts.maxTokens ?? 128;
  const temperature = opts.temperature ?? 0;
  const retries = opts.retries ?? 5;
  const retryDelayMs = opts.retryDelayMs ?? 1000;
  const maxRetryDelayMs = opts.maxRetryDelayMs ?? 30_000;
  const suffix = opts.promptSuffix ?? '';
  const failuresFile = opts.failuresFile ?? `${opts.out}.failed.jsonl`;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new EvalInputError('concurrency must be a positive integer');
  if (!existsSync(opts.images) || !statSync(opts.images).isDirectory()) throw new EvalInputError(`--images ${opts.images}: not a directory`);

  const all = typeof opts.questions === 'string' ? readQuestions(opts.questions) : [...opts.questions];
  const questions = opts.limit !== undefined ? all.slice(0, opts.limit) : all;
  const stored = loadStoredAnswers(opts.out);
  if (stored.repaired) {
    log(
      stored.repaired.action === 'removed'
        ? `${opts.out}: removed a torn last line (line ${stored.repaired.line}, ${stored.repaired.bytes} bytes) left by an interrupted run; that question is asked again`
        : `${opts.out}: the last line (line ${stored.repaired.line}) was whole but lacked its newline; completed it`,
    );
  }

  // Match stored answers to question lines, counting repeats of the same (id, prompt).
  const remaining = new Map(stored.counts);
  const pending: { q: Question; prompt: string }[] = [];
  let already = 0;
  for (const q of questions) {
    const prompt = q.text + suffix;
    const k = answerKey(q.question_id, prompt);
    const c = remaining.get(k) ?? 0;
    if (c > 0) {
      remaining.set(k, c - 1);
      already++;
    } else pending.push({ q, prompt });
  }
  // Stored answers for ids of this question file under another prompt: a changed --prompt-suffix.
  const allKeys = new Set(all.map((q) => answerKey(q.question_id, q.text + suffix)));
  const allIds = new Set(all.map((q) => idKey(q.question_id)));
  const clash = stored.records.find((r) => allIds.has(idKey(r.question_id)) && !allKeys.has(answerKey(r.question_id, r.prompt)));
  if (clash) {
    throw new EvalInputError(
      `${opts.out} already holds an answer for question_id ${JSON.stringify(clash.question_id)} asked with another prompt (${JSON.stringify(clash.prompt.slice(0, 80))}); ` +
        'was --prompt-suffix changed? Write to a new --out file instead of mixing prompts',
    );
  }

  // Nothing to ask: do not load a model or touch the endpoint.
  const backend: Backend | undefined =
    pending.length === 0
      ? undefined
      : 'answer' in opts.backend
        ? opts.backend
        : opts.backend.kind === 'endpoint'
          ? endpointBackend(opts.backend)
          : await localBackend({ sequences: concurrency, ...opts.backend });
  const modelId =
    opts.modelId ??
    backend?.modelId ??
    ('answer' in opts.backend ? opts.backend.modelId : opts.backend.kind === 'endpoint' ? opts.backend.model : (opts.backend.modelId ?? opts.backend.llm));

  const answers = new JsonlAppender(opts.out);
  const failuresOut = new JsonlAppender(failuresFile);
  if (existsSync(failuresFile)) rmSync(failuresFile); // this run's failures only
  const failures: RunFailure[] = [];
  const controller = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, controller.signal]) : controller.signal;
  const bar =
    opts.progress === false
      ? undefined
      : typeof opts.progress === 'function'
        ? { update: opts.progress, end: opts.progress }
        : new ProgressBar(pending.length);
  let done = 0;
  let answered = 0;
  const tick = (force = false) => {
    if (bar instanceof ProgressBar) bar.update(done, failures.length, force);
    else bar?.update(done, failures.length, pending.length);
  };

  async function ask(q: Question, prompt: string): Promise<{ text: string; finishReason?: string; attempts: number }> {
    const imageUrl = q.image !== undefined ? await imageDataUrl(imagePath(opts.images, q.image)).catch((e: unknown) => {
      if (e instanceof BackendError) throw e;
      throw new BackendError(`image ${q.image}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, false);
    }) : undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await backend!.answer({ text: prompt, ...(imageUrl !== undefined ? { imageUrl } : {}), maxTokens, temperature, signal });
        return { ...r, attempts: attempt };
      } catch (e) {
        if (isAbort(e, signal)) throw e;
        const be = e instanceof BackendError ? e : new BackendError((e as Error).message ?? String(e), false);
        if (!be.retryable || attempt > retries) throw Object.assign(be, { attempts: attempt });
        const backoff = Math.min(maxRetryDelayMs, retryDelayMs * 2 ** (attempt - 1));
        const delay = Math.max(backoff / 2 + (Math.random() * backoff) / 2, Math.min(be.retryAfterMs ?? 0, 60_000));
        await sleep(delay, signal);
      }
    }
  }

  let next = 0;
  async function worker(): Promise<void> {
    while (!signal.aborted && next < pending.length) {
      const { q, prompt } = pending[next++]!;
      let r: Awaited<ReturnType<typeof ask>>;
      try {
        r = await ask(q, prompt);
      } catch (e) {
        if (isAbort(e, signal)) return;
        const be = e as BackendError & { attempts?: number };
        const f: RunFailure = {
          question_id: q.question_id,
          prompt,
          ...(q.image !== undefined ? { image: q.image } : {}),
          error: be.message,
          ...(be.status !== undefined ? { status: be.status } : {}),
          attempts: be.attempts ?? 1,
        };
        failures.push(f);
        failuresOut.append(f);
        done++;
        tick();
        continue;
      }
      // A write error (disk full, ...) is not a question's failure: it stops the run.
      answers.append({
        question_id: q.question_id,
        prompt,
        text: pyStrip(r.text),
        answer_id: shortUuid(),
        model_id: modelId,
        metadata: { ...(r.finishReason !== undefined ? { finish_reason: r.finishReason } : {}), ...(r.attempts > 1 ? { attempts: r.attempts } : {}) },
      } satisfies AnswerRecord);
      answered++;
      done++;
      tick();
    }
  }

  let fatal: unknown;
  tick(true);
  try {
    await Promise.all(
      Array.from({ length: Math.min(concurrency, pending.length) }, () =>
        worker().catch((e: unknown) => {
          fatal ??= e;
          controller.abort();
        }),
      ),
    );
  } finally {
    controller.abort();
    answers.close();
    failuresOut.close();
    if (bar instanceof ProgressBar) bar.end(done, failures.length);
    else bar?.end(done, failures.length, pending.length);
    await backend?.close?.();
  }
  if (fatal !== undefined) throw fatal;
  const interrupted = opts.signal?.aborted ?? false;
  return {
    questions: questions.length,
    already_answered: already,
    answered,
    failed: failures.length,
    not_attempted: pending.length - done,
    interrupted,
    out: opts.out,
    failures_file: failures.length > 0 ? failuresFile : null,
    failures,
    model_id: modelId,
    elapsed_s: Math.round((performance.now() - t0) / 100) / 10,
    ...(stored.repaired ? { torn_line: stored.repaired } : {}),
  };
}
