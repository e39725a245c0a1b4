// Malformed and hostile requests for the fuzz test. Every case is invalid by construction (the test
// expects a 4xx OpenAI error for each); generated deterministically from a seeded PRNG.
import { deflateSync, gzipSync } from 'node:zlib';

export interface FuzzCase {
  cat: string;
  name: string;
  method?: string;
  path?: string;
  /** a JSON value to send (stringified), or `raw` bytes */
  body?: unknown;
  raw?: string | Buffer;
  headers?: Record<string, string>;
}

export interface FuzzEnv {
  /** a valid small PNG as a data URL */
  image: string;
  /** the server's own port (SSRF at itself) */
  port: number;
  /** the folder file:// URLs may read from; holds passwd.png → /etc/passwd */
  fileRoot: string;
  maxImages: number;
  maxPromptChars: number;
  maxBodyBytes: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CRC = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function pngChunk(type: string, data: Buffer): Buffer {
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(8 + data.length + 4);
  out.writeUInt32BE(data.length, 0);
  td.copy(out, 4);
  out.writeUInt32BE(crc32(td), 8 + data.length);
  return out;
}
/** A PNG whose header claims width × height (8-bit grey); `rows` real rows of zeros are compressed in. */
export function bombPng(width: number, height: number, rows = 1): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(Math.min(rows, height) * (width + 1)))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

const b64url = (mime: string, bytes: Buffer | string) => `data:${mime};base64,${Buffer.from(bytes).toString('base64')}`;

export function fuzzCases(env: FuzzEnv): FuzzCase[] {
  const rand = rng(20260501);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const randBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  const cases: FuzzCase[] = [];
  const add = (cat: string, name: string, c: Omit<FuzzCase, 'cat' | 'name'>) => cases.push({ cat, name, ...c });
  const base = () => ({ model: 'test-model', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: env.image } }, { type: 'text', text: 'what is this?' }] }], max_tokens: 4 });
  const withImage = (url: unknown) => ({ ...base(), messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: 'hi' }] }] });
  const withMessages = (messages: unknown) => ({ ...base(), messages });
  const user = { role: 'user', content: 'hi' };
  const imgPart = { type: 'image_url', image_url: { url: env.image } };

  // 1. broken JSON
  const json = JSON.stringify(base());
  for (let i = 1; i <= 40; i++) add('broken-json', `truncated at ${i}/41`, { raw: json.slice(0, Math.floor((json.length * i) / 41)) });
  for (const s of ['', ' ', '{', '}', '[', ']', 'null', 'true', '123', '"str"', '{"a":}', "{'a':1}", '{"messages":[}', '{"a":1,}', '{"a":NaN}', '{"a":Infinity}', '{"a":undefined}', '/* c */{}', '{"a":1}garbage', '\u0000', '{"max_tokens":01}', '{"a":"\\x41"}', '{"a":"\u0001"}', '['.repeat(100_000)]) {
    add('broken-json', JSON.stringify(s.slice(0, 20)), { raw: s });
  }
  for (let i = 0; i < 6; i++) add('broken-json', `random bytes ${i}`, { raw: randBytes(64 + i * 100) });
  add('broken-json', 'array body', { body: [base()] });
  add('broken-json', 'number body via array', { raw: '[1,2,3]' });

  // 2. wrong types and absurd numbers, field by field
  const deep = (n: number): unknown => (n === 0 ? { type: 'string' } : { type: 'array', items: deep(n - 1) });
  const wide = Object.fromEntries(Array.from({ length: 12_000 }, (_, i) => [`p${i}`, { type: 'string' }]));
  const schema = (s: unknown) => ({ type: 'json_schema', json_schema: { name: 'x', schema: s } });
  const wrong: Record<string, unknown[]> = {
    model: [123, true, {}, [], null, 'x'.repeat(300)],
    messages: [null, 'hi', 123, {}, [], [null], [1], ['str'], true],
    stream: ['yes', 1, {}, [], 'true'],
    stream_options: ['x', 1, { include_usage: 'yes' }, { bogus: true }, [], true],
    max_tokens: ['10', true, {}, [], 1.5, -1, 0, -0, 1e9, 2 ** 53, -1e308, 1e308, 2 ** 31],
    max_completion_tokens: [0, -5, 3.7, '5', 1e12],
    temperature: ['hot', -0.1, 2.1, 1e308, -1e-9, true, [], 100],
    top_p: [-0.1, 1.0001, 'x', {}, 2],
    top_k: [-1, 1.5, 1e7, 'x'],
    min_p: [-0.1, 2, 'x'],
    seed: [1.5, 'x', 2 ** 60, -1.5, true, 1e30],
    stop: [123, [1], [''], '', Array(17).fill('a'), 'x'.repeat(2000), {}, [null], [['a']]],
    response_format: [
      'json', { type: 'xml' }, { type: 'json_schema' }, { type: 'json_schema', json_schema: {} }, { type: 'json_schema', json_schema: { name: 'bad name!', schema: { type: 'object' } } },
      schema('str'), schema({ type: 'string', pattern: 'a' }), schema({ type: 'frob' }), schema(deep(100)), schema({ type: 'object', properties: wide }), schema({ $ref: '#/$defs/missing' }),
      { type: 'json_object', schema: {} }, schema({ anyOf: [] }), schema({ type: 'string', minLength: 5, maxLength: 2 }), schema({ type: 'string', minLength: 100_000 }), {}, [],
      { type: 'json_schema', json_schema: { name: 'x'.repeat(65), schema: { type: 'object' } } }, schema({ enum: [] }), schema({ type: 'object', required: ['missing'] }), schema([]),
    ],
    n: [0, 2, -1, 1e9, 1.5, '1', true],
    frequency_penalty: [1, -2, 'x', 0.5],
    presence_penalty: [0.5, -1, {}],
    logprobs: [true, 'yes', 1],
    top_logprobs: [0, 5, 20],
    logit_bias: [{ '50256': -100 }, 'x', [1]],
    tools: [[{ type: 'function', function: { name: 'f' } }], 'x', {}],
    tool_choice: ['auto', 'required', { type: 'function', function: { name: 'f' } }],
    functions: [[{ name: 'f', parameters: {} }]],
    function_call: ['auto', { name: 'f' }],
    modalities: [['audio'], ['text', 'audio'], 'text'],
    audio: [{ voice: 'alloy', format: 'wav' }],
    prediction: [{ type: 'content', content: 'x' }],
    web_search_options: [{}],
    user: [123, {}],
    metadata: [{ a: 1 }, 'x'],
    store: ['yes'],
    parallel_tool_calls: ['x'],
    frob: [1],
    prototype: [{}],
    constructor: [{ prototype: { polluted: true } }],
  };
  const wrongPairs: [string, unknown][] = Object.entries(wrong).flatMap(([k, vs]) => vs.map((v) => [k, v] as [string, unknown]));
  for (const [k, v] of wrongPairs) add('wrong-type', `${k}=${JSON.stringify(v)?.slice(0, 40)}`, { body: { ...base(), [k]: v } });
  add('wrong-type', 'max_tokens=1e400 (JSON Infinity)', { raw: json.replace('"max_tokens":4', '"max_tokens":1e400') });
  add('wrong-type', 'temperature=-1e400', { raw: json.replace('"max_tokens":4', '"max_tokens":4,"temperature":-1e400') });
  add('wrong-type', '__proto__ key', { raw: json.replace('{"model"', '{"__proto__":{"admin":true},"model"') });
  add('wrong-type', 'nested __proto__ in message', { raw: json.replace('{"role":"user"', '{"__proto__":{"x":1},"role":"user"') });
  add('wrong-type', '__proto__ in response_format', { raw: json.replace('{"model"', '{"response_format":{"__proto__":{"type":"json_object"}},"model"') });
  add('wrong-type', 'no messages', { body: { model: 'test-model' } });
  add('wrong-type', 'empty object', { body: {} });

  // 3. malformed messages
  const msgCases: [string, unknown][] = [
    ['no content', [{ role: 'user' }]], ['no role', [{ content: 'x' }]], ['role tool', [{ role: 'tool', content: 'x', tool_call_id: '1' }]],
    ['role function', [{ role: 'function', name: 'f', content: 'x' }]], ['role USER', [{ role: 'USER', content: 'x' }]], ['role number', [{ role: 1, content: 'x' }]],
    ['content number', [{ role: 'user', content: 5 }]], ['content null', [{ role: 'user', content: null }]], ['content object', [{ role: 'user', content: { text: 'x' } }]],
    ['input_audio part', [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] }]],
    ['file part', [{ role: 'user', content: [{ type: 'file', file: { file_data: 'x' } }] }]], ['image part', [{ role: 'user', content: [{ type: 'image', image: 'x' }] }]],
    ['text without text', [{ role: 'user', content: [{ type: 'text' }] }]], ['text number', [{ role: 'user', content: [{ type: 'text', text: 5 }] }]],
    ['image_url missing', [{ role: 'user', content: [{ type: 'image_url' }] }]], ['image_url empty object', [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }]],
    ['image url empty', [{ role: 'user', content: [{ type: 'image_url', image_url: { url: '' } }] }]], ['image url number', [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 5 } }] }]],
    ['detail ultra', [{ role: 'user', content: [{ type: 'image_url', image_url: { url: env.image, detail: 'ultra' } }] }]], ['refusal part', [{ role: 'user', content: [{ type: 'refusal', refusal: 'x' }] }]],
    ['part null', [{ role: 'user', content: [null] }]], ['part string', [{ role: 'user', content: ['x'] }]], ['part without type', [{ role: 'user', content: [{ text: 'x' }] }]],
    ['system with image', [{ role: 'system', content: [imgPart] }, user]], ['assistant with image', [user, { role: 'assistant', content: [imgPart] }, user]],
    ['ends with assistant', [user, { role: 'assistant', content: 'a' }]], ['only system', [{ role: 'system', content: 's' }]], ['system second', [user, { role: 'system', content: 's' }, user]],
    ['system after user', [user, { role: 'developer', content: 'b' }, user]], ['assistant tool_calls', [user, { role: 'assistant', content: null, tool_calls: [{ id: '1', type: 'function', function: { name: 'f', arguments: '{}' } }] }, user]],
    ['assistant function_call', [user, { role: 'assistant', content: 'x', function_call: { name: 'f', arguments: '{}' } }, user]], ['extra key', [{ role: 'user', content: 'x', foo: 1 }]],
    ['name too long', [{ role: 'user', content: 'x', name: 'n'.repeat(300) }]], ['only assistant', [{ role: 'assistant', content: 'x' }]], ['messages of arrays', [[user]]],
    ['content part array nested', [{ role: 'user', content: [[{ type: 'text', text: 'x' }]] }]], ['image_url array', [{ role: 'user', content: [{ type: 'image_url', image_url: [env.image] }] }]],
  ];
  for (const [name, messages] of msgCases) add('messages', name, { body: withMessages(messages) });

  // 4. huge strings
  add('huge', 'text over max-prompt-chars', { body: withMessages([{ role: 'user', content: 'x'.repeat(env.maxPromptChars + 1) }]) });
  add('huge', 'text parts over max-prompt-chars', { body: withMessages([{ role: 'user', content: Array.from({ length: 20 }, () => ({ type: 'text', text: 'y'.repeat(Math.ceil(env.maxPromptChars / 19)) })) }]) });
  add('huge', 'text over the body limit', { body: withMessages([{ role: 'user', content: 'z'.repeat(env.maxBodyBytes + 10) }]) });
  add('huge', 'model 1M chars', { body: { ...base(), model: 'm'.repeat(1_000_000) } });
  add('huge', 'stop 100k chars', { body: { ...base(), stop: 's'.repeat(100_000) } });
  add('huge', 'user 1M chars', { body: { ...base(), user: 'u'.repeat(1_000_000) } });
  add('huge', 'key 100k chars', { body: { ...base(), ['k'.repeat(100_000)]: 1 } });
  add('huge', 'image url over the body limit', { body: withImage(`data:image/png;base64,${'A'.repeat(env.maxBodyBytes)}`) });
  add('huge', 'prompt over the context', { body: withMessages([{ role: 'user', content: 'word '.repeat(Math.floor(env.maxPromptChars / 6)) }]) });
  add('huge', 'many messages over the context', { body: withMessages([...Array.from({ length: 400 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'talk '.repeat(10) })), user]) });
  add('huge', '20000 messages', { body: withMessages(Array.from({ length: 20_000 }, () => user)) });
  add('huge', 'image tokens over the context', { body: withMessages([{ role: 'user', content: [imgPart, { type: 'text', text: 'word '.repeat(Math.floor(env.maxPromptChars / 6)) }] }]) });

  // 5. bad base64 / bad data URLs
  const badUrls = [
    'data:image/png;base64,', 'data:image/png;base64,@@@@', 'data:image/png;base64,YQ=', 'data:image/png;base64,YQ===', 'data:image/png;base64,a', 'data:image/png;base64,ab=c',
    'data:image/png;base64,-_-_', 'data:image/png;base64,%41%42', 'data:image/png,rawbytes', 'data:text/plain;base64,aGVsbG8=', 'data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=',
    'data:image/tiff;base64,SUkqAA==', 'data:;base64,aGVsbG8=', 'data:image/png;base64', 'data:', 'DATA:IMAGE/PNG;BASE64,@@', 'data:image/png;base64,ü', 'data:image/png;base64,\u0000AAA',
    'data:image/png;charset=utf-8,abc', 'data:application/octet-stream;base64,AAAA', 'data:image/bmp;base64,Qk0=', 'data:image/x-icon;base64,AAABAA==', 'data:image/png;base64,' + '!'.repeat(5000),
    'data:image/png;base64,' + Buffer.from('A').toString('base64') + '====',
  ];
  for (const u of badUrls) add('bad-base64', u.slice(0, 40), { body: withImage(u) });
  for (let i = 0; i < 16; i++) {
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&*-_.~ =\n';
    add('bad-base64', `random garbage ${i}`, { body: withImage(`data:image/png;base64,${Array.from({ length: 20 + i * 13 }, () => pick([...chars])).join('')}`) });
  }

  // 6. bytes that are not an image
  const notImages: [string, Buffer | string][] = [
    ['text', 'hello world'], ['pdf', '%PDF-1.4\n1 0 obj<<>>endobj'], ['svg', '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'], ['gif header only', 'GIF89a'],
    ['tiff', Buffer.from([0x49, 0x49, 0x2a, 0x00, 8, 0, 0, 0])], ['bmp', Buffer.from('BM' + '\0'.repeat(60), 'latin1')], ['zip', Buffer.from([0x50, 0x4b, 3, 4, 0, 0])],
    ['elf', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1])], ['json', '{"not":"an image"}'], ['png signature only', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])],
    ['png signature + garbage', Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randBytes(200)])], ['jpeg SOI only', Buffer.from([0xff, 0xd8, 0xff])],
    ['jpeg SOI + garbage', Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randBytes(300)])], ['webp header only', Buffer.from('RIFF\x10\0\0\0WEBPVP8 ', 'latin1')],
    ['html', '<html><script>alert(1)</script></html>'], ['zero byte', Buffer.from([0])],
  ];
  for (const [name, bytes] of notImages) add('not-an-image', name, { body: withImage(b64url('image/png', bytes)) });
  for (let i = 0; i < 8; i++) add('not-an-image', `random bytes ${i}`, { body: withImage(b64url(pick(['image/png', 'image/jpeg', 'image/webp', 'image/gif']), randBytes(16 + i * 97))) });

  // 7. decompression bombs: headers claiming far more pixels than the limit
  const bombs: [string, Buffer][] = [
    ['png 100000x100000', bombPng(100_000, 100_000)], ['png 20000x20000', bombPng(20_000, 20_000)], ['png 7000x7000 all rows (49M px, ~50 KB)', bombPng(7000, 7000, 7000)],
    ['png 2^31-1 x 1', bombPng(2 ** 31 - 1, 1)], ['png 0x0', bombPng(0, 0)], ['png 1x60000000', bombPng(1, 60_000_000)],
    ['gif 65535x65535', Buffer.concat([Buffer.from('GIF89a', 'latin1'), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0, 0]), Buffer.from(';', 'latin1')])],
    ['jpeg 65500x65500', Buffer.from([0xff, 0xd8, 0xff, 0xc0, 0, 17, 8, 0xff, 0xdc, 0xff, 0xdc, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xff, 0xd9])],
    ['webp vp8x 16384x16384', Buffer.concat([Buffer.from('RIFF', 'latin1'), Buffer.from([22, 0, 0, 0]), Buffer.from('WEBPVP8X', 'latin1'), Buffer.from([10, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x3f, 0, 0xff, 0x3f, 0])])],
  ];
  for (const [name, bytes] of bombs) add('bomb', name, { body: withImage(b64url('image/png', bytes)) });

  // 8. SSRF and local files
  const p = env.port;
  const ssrf = [
    'http://127.0.0.1/', `http://127.0.0.1:${p}/v1/models`, 'http://169.254.169.254/latest/meta-data/iam/security-credentials/', 'http://[::1]/', `http://[::1]:${p}/health`,
    'http://[::ffff:127.0.0.1]/', 'http://[::ffff:a9fe:a9fe]/', `http://0.0.0.0:${p}/`, 'http://0/', 'http://127.1/', 'http://2130706433/', 'http://0x7f000001/', 'http://017700000001/',
    `http://localhost:${p}/health`, 'http://LOCALHOST/', 'http://10.0.0.1/', 'http://172.16.0.1/', 'http://192.168.0.1/', 'http://100.64.0.1/', 'http://[fe80::1]/', 'http://[fc00::1]/',
    'http://[::]/', `https://127.0.0.1:${p}/`, 'http://example.invalid/x.png', 'http://user:pass@127.0.0.1/', 'http://example.com@127.0.0.1/', 'http://127.0.0.1#@example.com/',
    'http://[::ffff:10.0.0.1]/', 'http://[64:ff9b::a9fe:a9fe]/', 'http://224.0.0.1/', 'http://255.255.255.255/',
    'file:///etc/passwd', 'file:///etc/shadow', 'file://localhost/etc/passwd', 'file:///proc/self/environ', 'file:///dev/zero', 'file:///dev/urandom',
    `file://${env.fileRoot}/../../../etc/passwd`, `file://${env.fileRoot}/passwd.png`, `file://${env.fileRoot}/`, `file://${env.fileRoot}/%2e%2e/%2e%2e/etc/passwd`, `file://${env.fileRoot}/..%2f..%2fetc/passwd`,
    `file://${env.fileRoot}/missing.png`, 'file://remote-host/share/x.png',
    'gopher://127.0.0.1:6379/_INFO', 'ftp://127.0.0.1/x.png', 'dict://127.0.0.1:11211/stat', 'ldap://127.0.0.1/', 'javascript:alert(1)', 'jar:http://x/!/', '\\\\server\\share\\x.png',
    '/etc/passwd', '../etc/passwd', '//127.0.0.1/x.png', 'about:blank', 'blob:http://127.0.0.1/uuid',
  ];
  for (const u of ssrf) add('ssrf', u.slice(0, 60), { body: withImage(u) });

  // 9. thousands of image parts, thousands of messages
  const parts = (n: number, url = env.image) => Array.from({ length: n }, () => ({ type: 'image_url', image_url: { url } }));
  add('many-images', `${env.maxImages + 1} images`, { body: withMessages([{ role: 'user', content: parts(env.maxImages + 1) }]) });
  add('many-images', '1000 images', { body: withMessages([{ role: 'user', content: parts(1000) }]) });
  add('many-images', '5000 images (tiny url)', { body: withMessages([{ role: 'user', content: parts(5000, 'data:image/png;base64,AAAA') }]) });
  add('many-images', '60000 images (short url)', { body: withMessages([{ role: 'user', content: parts(60_000, 'x') }]) });
  const spread = Array.from({ length: 2 * env.maxImages }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: i % 2 ? 'ok' : [imgPart] }));
  add('many-images', 'images spread over messages', { body: withMessages([...spread, { role: 'user', content: [imgPart] }]) });
  add('many-images', '150000 parts', { body: withMessages([{ role: 'user', content: Array.from({ length: 150_000 }, () => ({ type: 'text', text: '' })) }]) });

  // 10. HTTP level: content types, encodings, methods, routes
  const ok = JSON.stringify(base());
  add('http', 'text/plain', { raw: ok, headers: { 'content-type': 'text/plain' } });
  add('http', 'form', { raw: 'messages=hi', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  add('http', 'multipart', { raw: '--b\r\n\r\nx\r\n--b--', headers: { 'content-type': 'multipart/form-data; boundary=b' } });
  add('http', 'no content-type', { raw: ok, headers: { 'content-type': '' } });
  add('http', 'charset latin1', { raw: ok, headers: { 'content-type': 'application/json; charset=latin1' } });
  add('http', 'charset utf-16', { raw: ok, headers: { 'content-type': 'application/json; charset=utf-16' } });
  add('http', 'gzip garbage', { raw: randBytes(100), headers: { 'content-encoding': 'gzip' } });
  add('http', 'unknown encoding', { raw: ok, headers: { 'content-encoding': 'compress' } });
  add('http', 'gzip bomb (64 MiB of zeros)', { raw: gzipSync(Buffer.alloc(64 * 1024 * 1024)), headers: { 'content-encoding': 'gzip' } });
  add('http', 'deflate bomb of spaces', { raw: deflateSync(Buffer.alloc(32 * 1024 * 1024, 0x20)), headers: { 'content-encoding': 'deflate' } });
  add('http', 'gzip of broken JSON', { raw: gzipSync(Buffer.from('{"messages": [')), headers: { 'content-encoding': 'gzip' } });
  add('http', 'raw body over the limit', { raw: Buffer.alloc(env.maxBodyBytes + 1, 0x20) });
  for (const [method, path] of [
    ['GET', '/v1/chat/completions'], ['PUT', '/v1/chat/completions'], ['DELETE', '/v1/models'], ['POST', '/v1/models'], ['GET', '/v1/completions'], ['POST', '/v1/embeddings'],
    ['GET', '/v1/models/gpt-4'], ['GET', '/%2e%2e/%2e%2e/etc/passwd'], ['GET', '/..%2f..%2fetc%2fpasswd'], ['GET', '/%'], ['PATCH', '/health'], ['GET', '/v1/../../etc/passwd'],
    ['GET', '/.env'], ['GET', '/index.html/../../package.json'], ['POST', '/'], ['GET', '/v2/chat/completions'],
  ] as const) {
    add('http', `${method} ${path}`, { method, path, ...(method === 'GET' || method === 'DELETE' ? {} : { raw: ok }) });
  }
  add('http', 'unknown model', { body: { ...base(), model: 'gpt-4o' } });
  add('http', 'empty model name', { body: { ...base(), model: '' } });

  // 11. random combinations of two wrong fields
  for (let i = 0; i < 120; i++) {
    const [k1, v1] = pick(wrongPairs);
    const [k2, v2] = pick(wrongPairs);
    add('combined', `${k1}+${k2}`, { body: { ...base(), [k2]: v2, [k1]: v1 } });
  }
  return cases;
}
