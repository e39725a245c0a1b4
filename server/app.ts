/**
 * The express app: request ids and the access log, CORS, the API key, body parsing with a size cap,
 * the routes, and one error handler that turns everything into an OpenAI error object. Anything that is
 * not an HttpError (or a 4xx from the body parser) is a bug: logged with its request id, answered 500.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import express, { type NextFunction, type Request, type Response } from 'express';

import { chatCompletions } from './completions.js';
import type { ServerContext } from './context.js';
import { HttpError } from './errors.js';

/** The web page's files: server/public, also when running from dist/server. */
export function publicDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const d of [join(here, 'public'), join(here, '..', '..', 'server', 'public')]) if (existsSync(join(d, 'index.html'))) return d;
  return join(here, 'public');
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

const PAGE_CSP = "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

export function createApp(ctx: ServerContext): express.Express {
  const c = ctx.config;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  // request id + access log + request metrics
  app.use((req, res, next) => {
    const given = req.get('x-request-id');
    const id = given && /^[\w.:-]{1,64}$/.test(given) ? given : randomUUID();
    res.locals.requestId = id;
    res.set('X-Request-Id', id);
    const t0 = performance.now();
    res.on('finish', () => {
      const route = (req.route as { path?: string } | undefined)?.path ?? (res.statusCode === 404 ? 'unmatched' : req.path.startsWith('/v1/') ? 'unmatched' : 'static');
      ctx.metrics.requests.inc({ route: String(route), status: String(res.statusCode) });
      if (!c.quiet) ctx.log(`[${id}] ${req.method} ${req.originalUrl.slice(0, 200)} ${res.statusCode} ${(performance.now() - t0).toFixed(1)}ms`);
    });
    next();
  });

  // CORS for the configured origins (preflight answered here)
  app.use((req, res, next) => {
    const origin = req.get('origin');
    if (origin && (c.corsOrigin.includes('*') || c.corsOrigin.includes(origin))) {
      res.set('Access-Control-Allow-Origin', c.corsOrigin.includes('*') ? '*' : origin);
      res.set('Vary', 'Origin');
      res.set('Access-Control-Expose-Headers', 'X-Request-Id, Retry-After');
      if (req.method === 'OPTIONS') {
        res.set('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
        res.set('Access-Control-Allow-Headers', req.get('access-control-request-headers') ?? 'Authorization, Content-Type');
        res.set('Access-Control-Max-Age', '600');
        res.status(204).end();
        return;
      }
    }
    next();
  });

  // during a drain, requests on kept-alive connections are refused and the connection closed
  app.use((req, res, next) => {
    if (ctx.phase === 'draining' && req.path !== '/health') {
      res.set('Connection', 'close');
      throw new HttpError(503, 'the server is shutting down', 'service_unavailable', null, 'shutting_down', { 'Retry-After': '2' });
    }
    next();
  });

  const auth = (req: Request, _res: Response, next: NextFunction): void => {
    if (c.apiKey === undefined) return next();
    const m = /^Bearer\s+(.+)$/i.exec(req.get('authorization') ?? '');
    const ok = m !== null && timingSafeEqual(digest(m[1]!.trim()), digest(c.apiKey));
    if (!ok) {
      throw new HttpError(401, m ? 'Incorrect API key provided' : 'Missing API key: send "Authorization: Bearer <key>"', 'authentication_error', null, 'invalid_api_key', {
        'WWW-Authenticate': 'Bearer',
      });
    }
    next();
  };
  app.use('/v1', auth);
  app.use('/metrics', auth);

  app.get('/health', (_req, res) => {
    const ready = ctx.phase === 'ready';
    const body: Record<string, unknown> = { status: ctx.phase, model: c.modelName };
    if (ctx.phase === 'failed') body.error = 'the model failed to load; see the server log';
    if (ready && ctx.model) {
      const s = ctx.model.vlm.stats();
      Object.assign(body, { sequences: s.pool.sequences, busy: s.pool.busy, queued: s.pool.queued });
    }
    if (!ready) res.set('Retry-After', '2');
    res.status(ready ? 200 : 503).json(body);
  });

  app.get('/metrics', (_req, res) => {
    res.type('text/plain; version=0.0.4').send(ctx.metrics.render());
  });

  const created = Math.floor(Date.now() / 1000); // when this server started serving the model
  const modelCard = () => {
    const vlm = ctx.model?.vlm;
    return {
      id: c.modelName,
      object: 'model',
      created,
      owned_by: 'llm2clip',
      input_modalities: ['text', 'image'],
      architecture: { input_modalities: ['text', 'image'], output_modalities: ['text'] },
      meta: vlm ? { context_length: vlm.sequenceCapacity + 1, tokens_per_image: vlm.embedder.tokensPerImage, sequences: c.parallel } : { status: ctx.phase },
    };
  };
  app.get('/v1/models', (_req, res) => void res.json({ object: 'list', data: [modelCard()] }));
  app.get('/v1/models/:id', (req, res) => {
    if (req.params.id !== c.modelName) throw new HttpError(404, `The model '${req.params.id}' does not exist`, 'not_found_error', 'model', 'model_not_found');
    res.json(modelCard());
  });

  // not strict: a body of valid JSON that is not an object (null, 3, "x") gets "must be a JSON object"
  const json = express.json({ limit: c.maxBodyBytes, strict: false });
  const chat = async (req: Request, res: Response): Promise<void> => chatCompletions(ctx, req, res);
  app.post('/v1/chat/completions', json, chat);
  app.post('/chat/completions', auth, json, chat);

  app.use(
    '/',
    (_req, res, next) => {
      res.set('Content-Security-Policy', PAGE_CSP);
      res.set('X-Content-Type-Options', 'nosniff');
      next();
    },
    express.static(publicDir(), { index: 'index.html', dotfiles: 'ignore', fallthrough: true, redirect: false }),
  );

  app.use((req, res) => {
    const known = ['/v1/chat/completions', '/chat/completions', '/v1/models', '/health', '/metrics'].includes(req.path);
    if (known) {
      res.set('Allow', req.path.endsWith('completions') ? 'POST' : 'GET');
      throw new HttpError(405, `${req.method} is not allowed on ${req.path}`, 'invalid_request_error', null, 'method_not_allowed');
    }
    throw new HttpError(404, `Unknown route: ${req.method} ${req.path.slice(0, 200)}`, 'not_found_error', null, 'unknown_route');
  });

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    let e: HttpError;
    if (err instanceof HttpError) e = err;
    else if (isBodyParserError(err)) {
      e =
        err.status === 413
          ? new HttpError(413, `the request body is over the ${c.maxBodyBytes}-byte limit`, 'invalid_request_error', null, 'request_too_large')
          : new HttpError(
              err.status,
              err.type === 'entity.parse.failed' ? `the body is not valid JSON: ${err.message}` : `the request body cannot be read: ${err.message}`,
              'invalid_request_error',
              null,
              'invalid_body',
            );
    } else {
      const id = String(res.locals.requestId);
      ctx.log(`[${id}] 500 on ${req.method} ${req.path}: ${(err as Error)?.stack ?? String(err)}`);
      e = new HttpError(500, `internal server error (request id ${id}); this is a bug, please report it`, 'server_error', null, 'internal_error');
    }
    ctx.metrics.errors.inc({ status: String(e.status), type: e.type });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.status(e.status).set(e.headers).json(e.body());
  });
  return app;
}

/** body-parser's errors (http-errors: a 4xx status, `expose`, usually a `type`; zlib errors carry no type). */
function isBodyParserError(e: unknown): e is { status: number; type?: string; message: string } {
  const x = e as { status?: unknown; type?: unknown; expose?: unknown };
  return typeof x === 'object' && x !== null && typeof x.status === 'number' && x.status >= 400 && x.status < 500 && (typeof x.type === 'string' || x.expose === true);
}
