/**
 * Starts the HTTP server at once (health says "loading", chats get 503) and loads the model behind it.
 * `drain()` is the SIGTERM path: stop accepting connections, refuse new requests, let in-flight chats
 * finish until the deadline, abort the rest, free the model, close the sockets.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { createApp } from './app.js';
import type { ServeConfig } from './config.js';
import type { ServerContext } from './context.js';
import { Metrics } from './metrics.js';
import { loadServedModel, type LoadDeps } from './model.js';

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly context: ServerContext;
  readonly http: Server;
  /** resolves once the model is loaded; rejects when loading failed */
  readonly ready: Promise<void>;
  /** graceful shutdown within `deadlineMs` (default: the configured drain timeout); idempotent */
  drain(deadlineMs?: number): Promise<{ finished: number; aborted: number }>;
}

export interface StartDeps extends LoadDeps {
  /** log sink; default stderr */
  log?: (line: string) => void;
  /** awaited before the model loads (tests hold the server in the loading state with it) */
  beforeLoad?: () => Promise<void>;
}

export async function startServer(config: ServeConfig, deps: StartDeps = {}): Promise<RunningServer> {
  const metrics = new Metrics();
  const log = deps.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const ctx: ServerContext = { config, metrics, phase: 'loading', inflight: new Set(), log };
  metrics.gauges = {
    state: () => ctx.phase,
    queueDepth: () => ctx.model?.vlm.stats().pool.queued ?? 0,
    activeSequences: () => ctx.model?.vlm.stats().pool.busy ?? 0,
    sequences: () => config.parallel,
    featureCache: () => ctx.model?.vlm.stats().featureCache ?? { hits: 0, misses: 0, entries: 0, bytes: 0 },
    imageEncodes: () => ctx.model?.vlm.stats().imageEncodes ?? 0,
  };
  const app = createApp(ctx);
  const http = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(config.port, config.host, (err?: Error) => (err ? reject(err) : resolve(s)));
    s.once('error', reject);
  });
  // slow clients must not hold a connection forever; generation itself has no time limit here
  http.headersTimeout = 30_000;
  http.requestTimeout = 120_000;
  const port = (http.address() as AddressInfo).port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;

  const ready = (deps.beforeLoad ?? (async () => undefined))().then(() => loadServedModel(config, metrics, deps)).then(
    (m) => {
      ctx.model = m;
      if (ctx.phase === 'loading') ctx.phase = 'ready';
      log(`llm2clip: serving ${config.modelName} at http://${host}:${port}/ (${config.parallel} sequences)`);
    },
    (e: unknown) => {
      ctx.phase = 'failed';
      ctx.loadError = e as Error;
      log(`llm2clip: the model failed to load: ${(e as Error).message}`);
      throw e;
    },
  );
  ready.catch(() => undefined);

  let draining: Promise<{ finished: number; aborted: number }> | undefined;
  const drain = (deadlineMs = config.drainTimeoutMs): Promise<{ finished: number; aborted: number }> =>
    (draining ??= (async () => {
      ctx.phase = 'draining';
      const closed = new Promise<void>((r) => http.close(() => r()));
      http.closeIdleConnections();
      const pending = [...ctx.inflight];
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        Promise.all(pending.map((p) => p.done)).then(() => true),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), deadlineMs))),
      ]);
      clearTimeout(timer);
      let aborted = 0;
      if (!inTime) {
        for (const p of ctx.inflight) {
          aborted++;
          p.controller.abort(new Error('the server is shutting down'));
        }
        await Promise.all([...ctx.inflight].map((p) => p.done));
      }
      await ready.catch(() => undefined);
      const m = ctx.model;
      if (m) {
        await m.vlm.dispose();
      }
      http.closeIdleConnections();
      const force = setTimeout(() => http.closeAllConnections(), 1000);
      await closed;
      clearTimeout(force);
      return { finished: pending.length - aborted, aborted };
    })());

  return { url: `http://${host}:${port}`, port, context: ctx, http, ready, drain };
}
