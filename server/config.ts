/**
 * Server configuration: one table of options, each settable as a flag (`--port 8080`) or an environment
 * variable (`LLM2CLIP_PORT=8080`; flags win), validated by zod with errors that name the flag and the
 * variable. `serveHelp()` is generated from the same table, so the help text cannot drift from the parser.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { z } from 'zod';

import { TEMPLATE_CHOICES, type TemplateChoice } from '../src/chat/index.js';
import { addressList } from './net-policy.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const MiB = 1024 * 1024;

/** The repository / package root (holds package.json), from this file in server/ or dist/server/. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

/** Where the bundled demo model lives: tower/, projector/ and llm.gguf. */
export const DEMO_MODEL_DIR = join(packageRoot(), 'models', 'demo');

function validAddressEntry(e: string): boolean {
  try {
    addressList([e]);
    return true;
  } catch {
    return false;
  }
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const bool = z.union([
  z.boolean(),
  z
    .string()
    .toLowerCase()
    .pipe(z.enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off']))
    .transform((v) => ['true', '1', 'yes', 'on'].includes(v)),
]);
const list = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s.length > 0));
const str = z.string().min(1);

interface Opt {
  schema: z.ZodType;
  help: string;
  /** shown in the help; the schema's own default applies */
  def?: string;
  boolean?: boolean;
  multiple?: boolean;
}

const OPTIONS = {
  host: { schema: str.default('127.0.0.1'), help: 'address to listen on', def: '127.0.0.1' },
  port: { schema: int(0, 65535).default(8080), help: 'TCP port (0 = any free port)', def: '8080' },
  'model-dir': { schema: str.optional(), help: 'a model folder holding tower/, projector/ and llm.gguf', def: 'models/demo, the bundled demo model' },
  tower: { schema: str.optional(), help: 'converted tower folder (overrides <model-dir>/tower)' },
  projector: { schema: str.optional(), help: 'projector folder (overrides <model-dir>/projector)' },
  llm: { schema: str.optional(), help: 'LLM GGUF file (overrides <model-dir>/llm.gguf)' },
  'model-name': { schema: str.max(256).optional(), help: 'model id in /v1/models and responses', def: 'llm2clip-<model folder name>' },
  template: { schema: z.enum(TEMPLATE_CHOICES as [TemplateChoice, ...TemplateChoice[]]).optional(), help: `chat template: ${TEMPLATE_CHOICES.join('|')}`, def: 'gguf' },
  'api-key': { schema: str.optional(), help: 'require "Authorization: Bearer <key>" on /v1/* and /metrics' },
  parallel: { schema: int(1, 64).default(4), help: 'sequences decoded in parallel', def: '4' },
  'context-size': { schema: int(64).optional(), help: 'positions per sequence', def: 'min(4096, the model\'s training context)' },
  'batch-size': { schema: int(1).optional(), help: 'llama.cpp batch size' },
  'max-queue': { schema: int(0, 100_000).default(64), help: 'chats waiting for a sequence before new ones get 429', def: '64' },
  'feature-cache-mb': { schema: int(0, 1 << 20).default(256), help: 'projected image-feature cache', def: '256' },
  'max-body-bytes': { schema: int(1024).default(48 * MiB), help: 'largest request body (413 above)', def: String(48 * MiB) },
  'max-image-bytes': { schema: int(1).default(10 * MiB), help: 'largest encoded image (data URL, download or file)', def: String(10 * MiB) },
  'max-image-pixels': { schema: int(1).default(40_000_000), help: 'largest decoded image, width × height (decompression bombs)', def: '40000000' },
  'max-images': { schema: int(0, 10_000).default(8), help: 'images per request', def: '8' },
  'max-prompt-chars': { schema: int(1).default(1_000_000), help: 'characters of text per request', def: '1000000' },
  'cors-origin': { schema: list.default([]), help: 'origins allowed by CORS (comma list or repeated; * = any)', multiple: true },
  'fetch-hosts': { schema: list.default([]), help: 'hosts http(s) image URLs may be fetched from (comma list; *.example.com; * = any); empty = no fetching', multiple: true },
  'fetch-allow-private': { schema: bool.default(false), help: 'let fetches reach loopback/private/link-local addresses', boolean: true },
  'fetch-allow-addresses': {
    schema: list.default([]).refine((l) => l.every((e) => validAddressEntry(e)), 'each entry must be an IP address or CIDR block'),
    help: 'addresses / CIDR blocks exempt from that refusal (e.g. a LAN image server)',
    multiple: true,
  },
  'fetch-timeout-ms': { schema: int(1, 600_000).default(10_000), help: 'time cap of one image download, redirects included', def: '10000' },
  'fetch-max-redirects': { schema: int(0, 20).default(3), help: 'redirects followed (each hop re-checked)', def: '3' },
  'file-root': { schema: str.optional(), help: 'folder file:// image URLs may read from; unset = no file:// URLs' },
  'image-batching': { schema: bool.default(true), help: 'encode images of concurrent requests in one tower batch', def: 'true', boolean: true },
  'image-batch-window-ms': { schema: int(0, 1000).default(8), help: 'how long the first image of a batch waits for others', def: '8' },
  'image-batch-max': {
    schema: int(1, 256).optional(),
    help: 'images per tower batch',
    def: '16 with --provider cuda; 4 on the CPU, where one image already keeps all cores busy and a bigger batch only delays the first answers',
  },
  gpu: { schema: z.enum(['auto', 'cuda', 'vulkan', 'metal', 'off']).default('auto'), help: 'llama.cpp backend: auto|cuda|vulkan|metal|off', def: 'auto' },
  threads: { schema: int(0, 1024).optional(), help: 'llama.cpp threads (0 = no limit)', def: 'the CPU math cores on the CPU (as llama.cpp)' },
  'tower-threads': { schema: int(1, 1024).optional(), help: 'onnxruntime threads of the tower and projector' },
  provider: { schema: z.enum(['cpu', 'cuda']).optional(), help: 'onnxruntime execution provider of the tower: cpu|cuda', def: 'cpu' },
  'drain-timeout-ms': { schema: int(0, 3_600_000).default(30_000), help: 'on SIGTERM/SIGINT: how long in-flight chats may finish before they are aborted', def: '30000' },
  quiet: { schema: bool.default(false), help: 'no request log on stderr', boolean: true },
} satisfies Record<string, Opt>;

type Options = typeof OPTIONS;
type Raw = { [K in keyof Options]: z.output<Options[K]['schema']> };

const camel = (s: string): string => s.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
const envName = (flag: string): string => `LLM2CLIP_${flag.toUpperCase().replaceAll('-', '_')}`;

export interface ServeConfig {
  host: string;
  port: number;
  tower: string;
  projector: string;
  llm: string;
  /** true when the paths are the bundled demo model's defaults */
  demoModel: boolean;
  modelName: string;
  template?: TemplateChoice;
  apiKey?: string;
  parallel: number;
  contextSize?: number;
  batchSize?: number;
  maxQueue: number;
  featureCacheMb: number;
  maxBodyBytes: number;
  maxImageBytes: number;
  maxImagePixels: number;
  maxImages: number;
  maxPromptChars: number;
  corsOrigin: string[];
  fetchHosts: string[];
  fetchAllowPrivate: boolean;
  fetchAllowAddresses: string[];
  fetchTimeoutMs: number;
  fetchMaxRedirects: number;
  fileRoot?: string;
  imageBatching: boolean;
  imageBatchWindowMs: number;
  imageBatchMax: number;
  gpu: 'auto' | 'cuda' | 'vulkan' | 'metal' | 'off';
  threads?: number;
  towerThreads?: number;
  provider?: 'cpu' | 'cuda';
  drainTimeoutMs: number;
  quiet: boolean;
}

/**
 * Builds the configuration from flags and environment (flags win). `overrides` (tests, benchmarks) are
 * keyed by camelCase name and validated like everything else.
 */
export function parseServeConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, overrides: Partial<Record<string, unknown>> = {}): ServeConfig {
  const parseOptions = Object.fromEntries(
    Object.entries(OPTIONS).map(([k, o]) => [k, { type: 'boolean' in o && o.boolean ? ('boolean' as const) : ('string' as const), multiple: 'multiple' in o && o.multiple === true }]),
  );
  let values: Record<string, unknown>;
  try {
    const r = parseArgs({ args: [...argv], options: parseOptions, allowPositionals: false, strict: true, allowNegative: true } as Parameters<typeof parseArgs>[0]);
    values = r.values as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}\n(see llm2clip serve --help)`);
  }
  const raw: Record<string, unknown> = {};
  for (const [flag, o] of Object.entries(OPTIONS) as [keyof Options, Opt][]) {
    const key = camel(flag);
    const fromEnv = env[envName(flag)];
    const value = key in overrides ? overrides[key] : values[flag] !== undefined ? values[flag] : fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined;
    const r = o.schema.safeParse(value);
    if (!r.success) {
      const src = key in overrides ? `option ${key}` : values[flag] !== undefined ? `--${flag}` : `${envName(flag)}`;
      throw new ConfigError(`${src} ${JSON.stringify(value)}: ${r.error.issues[0]?.message ?? 'invalid'}`);
    }
    raw[flag] = r.data;
  }
  for (const k of Object.keys(overrides)) if (!(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`) in OPTIONS)) throw new ConfigError(`unknown option ${k}`);
  return resolveConfig(raw as Raw);
}

function resolveConfig(r: Raw): ServeConfig {
  const dir = r['model-dir'] ? resolve(r['model-dir']) : DEMO_MODEL_DIR;
  const tower = resolve(r.tower ?? join(dir, 'tower'));
  const projector = resolve(r.projector ?? join(dir, 'projector'));
  const llm = resolve(r.llm ?? join(dir, 'llm.gguf'));
  const demoModel = !r['model-dir'] && !r.tower && !r.projector && !r.llm;
  const modelName = r['model-name'] ?? (r.llm && !r['model-dir'] ? basename(llm).replace(/\.gguf$/i, '') : `llm2clip-${basename(dir)}`);
  return {
    host: r.host,
    port: r.port,
    tower,
    projector,
    llm,
    demoModel,
    modelName,
    ...(r.template ? { template: r.template } : {}),
    ...(r['api-key'] ? { apiKey: r['api-key'] } : {}),
    parallel: r.parallel,
    ...(r['context-size'] !== undefined ? { contextSize: r['context-size'] } : {}),
    ...(r['batch-size'] !== undefined ? { batchSize: r['batch-size'] } : {}),
    maxQueue: r['max-queue'],
    featureCacheMb: r['feature-cache-mb'],
    maxBodyBytes: r['max-body-bytes'],
    maxImageBytes: r['max-image-bytes'],
    maxImagePixels: r['max-image-pixels'],
    maxImages: r['max-images'],
    maxPromptChars: r['max-prompt-chars'],
    corsOrigin: r['cors-origin'],
    fetchHosts: r['fetch-hosts'].map((h) => h.toLowerCase()),
    fetchAllowPrivate: r['fetch-allow-private'],
    fetchAllowAddresses: r['fetch-allow-addresses'],
    fetchTimeoutMs: r['fetch-timeout-ms'],
    fetchMaxRedirects: r['fetch-max-redirects'],
    ...(r['file-root'] ? { fileRoot: resolve(r['file-root']) } : {}),
    imageBatching: r['image-batching'],
    imageBatchWindowMs: r['image-batch-window-ms'],
    imageBatchMax: r['image-batch-max'] ?? (r.provider === 'cuda' ? 16 : 4),
    gpu: r.gpu,
    ...(r.threads !== undefined ? { threads: r.threads } : {}),
    ...(r['tower-threads'] !== undefined ? { towerThreads: r['tower-threads'] } : {}),
    ...(r.provider ? { provider: r.provider } : {}),
    drainTimeoutMs: r['drain-timeout-ms'],
    quiet: r.quiet,
  };
}

/** Refuses to start on model paths that do not exist, naming each (and the demo model when it is the default). */
export function checkModelPaths(c: ServeConfig): void {
  const missing = [c.tower, c.projector, c.llm].filter((p) => !existsSync(p));
  if (missing.length === 0) return;
  const hint = c.demoModel
    ? `the bundled demo model is not at ${DEMO_MODEL_DIR} (it is not there until the demo model has been built); pass --model-dir DIR or --tower/--projector/--llm`
    : 'check --model-dir / --tower / --projector / --llm';
  throw new ConfigError(`model file(s) not found: ${missing.join(', ')}\n${hint}`);
}

export function serveHelp(): string {
  const lines = ['llm2clip serve [options]  — OpenAI-compatible chat server with image input, and a chat page at /', ''];
  lines.push('Every option can also be set as an environment variable (shown in brackets); flags win.', '');
  for (const [flag, o] of Object.entries(OPTIONS) as [string, Opt][]) {
    const arg = o.boolean ? `--${flag} / --no-${flag}` : `--${flag} ${o.multiple ? 'LIST' : 'V'}`;
    lines.push(`  ${arg.padEnd(34)} ${o.help}${o.def ? ` (default ${o.def})` : ''} [${envName(flag)}]`);
  }
  lines.push('', 'Endpoints: POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics, GET / (chat page).');
  return lines.join('\n') + '\n';
}
