/** State shared by the routes, the loader and the drain logic of one server. */
import type { ServeConfig } from './config.js';
import type { Metrics } from './metrics.js';
import type { ServedModel } from './model.js';

export type Phase = 'loading' | 'ready' | 'draining' | 'failed';

export interface InFlight {
  controller: AbortController;
  /** settles when the request's response is over */
  done: Promise<void>;
}

export interface ServerContext {
  readonly config: ServeConfig;
  readonly metrics: Metrics;
  phase: Phase;
  model?: ServedModel;
  loadError?: Error;
  /** chat requests being answered (drain waits for them, then aborts what is left) */
  readonly inflight: Set<InFlight>;
  /** one line to the server log (stderr unless quiet; tests capture it) */
  log(line: string): void;
}

/** Seconds a client should wait before retrying after a 429 / 503. */
export const RETRY_AFTER_SECONDS = 2;
