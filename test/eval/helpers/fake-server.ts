/**
 * A fake OpenAI-compatible chat-completions server on 127.0.0.1 for the run tests. Each request is
 * recognised by the question tag "[q<N>]" in its text part; per-question behaviours make it fail
 * permanently (HTTP 500 / 400), transiently (429 / 503 / a dropped connection, a given number of times),
 * or hang until the server is closed. Every request body is recorded.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Behaviour =
  | { kind: 'ok' }
  | { kind: 'status'; status: number; times: number; retryAfter?: string }
  | { kind: 'drop'; times: number }
  | { kind: 'hang' };

export interface RecordedRequest {
  tag: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: {
    model: string;
    temperature: number;
    max_tokens: number;
    stream?: boolean;
    messages: { role: string; content: ({ type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } })[] }[];
  };
}

export interface FakeServer {
  url: string;
  requests: RecordedRequest[];
  behaviours: Map<string, Behaviour>;
  /** answer text for a tag (default "answer <tag>") */
  answerFor: (tag: string) => string;
  close(): Promise<void>;
}

export async function startFakeServer(behaviours: Record<string, Behaviour> = {}): Promise<FakeServer> {
  const requests: RecordedRequest[] = [];
  const seen = new Map<string, number>();
  const state: FakeServer = {
    url: '',
    requests,
    behaviours: new Map(Object.entries(behaviours)),
    answerFor: (tag) => `  answer ${tag}\n`,
    close: async () => undefined,
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404).end();
        return;
      }
      const body = JSON.parse(raw) as RecordedRequest['body'];
      const text = body.messages[0]?.content.find((p) => p.type === 'text');
      const tag = /\[(q\d+)\]/.exec(text && text.type === 'text' ? text.text : '')?.[1] ?? '?';
      requests.push({ tag, url: req.url, headers: req.headers, body });
      const n = (seen.get(tag) ?? 0) + 1;
      seen.set(tag, n);
      const b = state.behaviours.get(tag) ?? { kind: 'ok' };
      if (b.kind === 'hang') return; // never answered
      if (b.kind === 'drop' && n <= b.times) {
        req.socket.destroy();
        return;
      }
      if (b.kind === 'status' && n <= b.times) {
        res.writeHead(b.status, { 'content-type': 'application/json', ...(b.retryAfter !== undefined ? { 'retry-after': b.retryAfter } : {}) });
        res.end(JSON.stringify({ error: { message: `fake ${b.status} for ${tag}`, type: 'server_error', code: b.status } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: `chatcmpl-${tag}`,
          object: 'chat.completion',
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content: state.answerFor(tag) }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}
