/**
 * Prometheus text exposition (format 0.0.4) without a dependency: counters with labels, gauges read at
 * scrape time, and histograms with fixed buckets.
 */

type Labels = Record<string, string>;

const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const fmtLabels = (l: Labels): string => {
  const e = Object.entries(l);
  return e.length === 0 ? '' : `{${e.map(([k, v]) => `${k}="${esc(v)}"`).join(',')}}`;
};
const num = (x: number): string => (Number.isFinite(x) ? String(x) : x > 0 ? '+Inf' : x < 0 ? '-Inf' : 'NaN');

class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    const k = fmtLabels(labels);
    const v = this.values.get(k);
    if (v) v.value += by;
    else this.values.set(k, { labels, value: by });
  }

  get(labels: Labels = {}): number {
    return this.values.get(fmtLabels(labels))?.value ?? 0;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0) lines.push(`${this.name} 0`);
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${fmtLabels(labels)} ${num(value)}`);
    return lines.join('\n');
  }
}

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {
    this.counts = buckets.map(() => 0);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    this.buckets.forEach((b, i) => {
      if (v <= b) this.counts[i]!++;
    });
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${num(this.sum)}`, `${this.name}_count ${this.count}`);
    return lines.join('\n');
  }
}

export interface LiveGauges {
  state: () => 'loading' | 'ready' | 'draining' | 'failed';
  queueDepth: () => number;
  activeSequences: () => number;
  sequences: () => number;
  featureCache: () => { hits: number; misses: number; entries: number; bytes: number };
  imageEncodes: () => number;
}

export class Metrics {
  readonly requests = new Counter('llm2clip_http_requests_total', 'HTTP requests by route and status');
  readonly errors = new Counter('llm2clip_http_errors_total', 'HTTP error responses by status and error type');
  readonly promptTokens = new Counter('llm2clip_prompt_tokens_total', 'prompt positions of finished chats (image rows included)');
  readonly cachedTokens = new Counter('llm2clip_prompt_cached_tokens_total', 'prompt positions reused from the KV cache');
  readonly completionTokens = new Counter('llm2clip_completion_tokens_total', 'generated tokens');
  readonly chats = new Counter('llm2clip_chats_total', 'finished chats by finish reason');
  readonly imageEncode = new Histogram('llm2clip_image_encode_seconds', 'tower + projector run time of one batch', [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
  readonly imageBatch = new Histogram('llm2clip_image_batch_size', 'images per tower run', [1, 2, 4, 8, 16, 32, 64]);
  readonly chatSeconds = new Histogram('llm2clip_chat_seconds', 'chat completion latency (request to last token)', [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]);
  gauges: LiveGauges | undefined;

  render(): string {
    const g = this.gauges;
    const out: string[] = [];
    const gauge = (name: string, help: string, v: number): void => void out.push(`# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name} ${num(v)}`);
    const state = g?.state() ?? 'loading';
    out.push(
      `# HELP llm2clip_up server state (1 for the current one)\n# TYPE llm2clip_up gauge\n` +
        (['loading', 'ready', 'draining', 'failed'] as const).map((s) => `llm2clip_up{state="${s}"} ${s === state ? 1 : 0}`).join('\n'),
    );
    gauge('llm2clip_queue_depth', 'chats waiting for a sequence', g?.queueDepth() ?? 0);
    gauge('llm2clip_active_sequences', 'sequences generating now', g?.activeSequences() ?? 0);
    gauge('llm2clip_sequences', 'sequences of the context', g?.sequences() ?? 0);
    const fc = g?.featureCache() ?? { hits: 0, misses: 0, entries: 0, bytes: 0 };
    out.push(`# HELP llm2clip_feature_cache_hits_total image-feature cache hits\n# TYPE llm2clip_feature_cache_hits_total counter\nllm2clip_feature_cache_hits_total ${fc.hits}`);
    out.push(`# HELP llm2clip_feature_cache_misses_total image-feature cache misses\n# TYPE llm2clip_feature_cache_misses_total counter\nllm2clip_feature_cache_misses_total ${fc.misses}`);
    gauge('llm2clip_feature_cache_entries', 'images held in the feature cache', fc.entries);
    gauge('llm2clip_feature_cache_bytes', 'bytes held in the feature cache', fc.bytes);
    out.push(`# HELP llm2clip_images_encoded_total images run through tower and projector\n# TYPE llm2clip_images_encoded_total counter\nllm2clip_images_encoded_total ${g?.imageEncodes() ?? 0}`);
    for (const m of [this.requests, this.errors, this.promptTokens, this.cachedTokens, this.completionTokens, this.chats, this.imageEncode, this.imageBatch, this.chatSeconds]) {
      out.push(m.render());
    }
    return out.join('\n') + '\n';
  }
}
