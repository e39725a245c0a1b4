// The image URL policy on its own (no model): address classification, host allow-list, downloads with
// redirects re-checked at every hop, size and time caps, connecting to the checked address, and file://
// containment.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ChatError } from '../../src/chat/index.js';
import { policyImageLoader, type ImagePolicy } from '../../server/image-loader.js';
import { hostAllowed, nonPublicReason } from '../../server/net-policy.js';
import { pngBytes } from '../chat/fixtures.js';

let png: Buffer;
let server: http.Server;
let base: string;
let port: number;
const hosts: string[] = [];
let dir: string;

beforeAll(async () => {
  png = await pngBytes(1, 2, 3);
  server = http.createServer((req, res) => {
    hosts.push(req.headers.host ?? '');
    const u = new URL(req.url ?? '/', 'http://x');
    const hop = Number(u.searchParams.get('hops') ?? 0);
    if (u.pathname === '/img.png') return void res.writeHead(200, { 'content-type': 'image/png' }).end(png);
    if (u.pathname === '/redirect') return void res.writeHead(302, { location: hop > 1 ? `/redirect?hops=${hop - 1}` : '/img.png' }).end();
    if (u.pathname === '/to') return void res.writeHead(301, { location: u.searchParams.get('url')! }).end();
    if (u.pathname === '/big') return void res.writeHead(200, { 'content-length': String(50 * 1024 * 1024) }).end();
    if (u.pathname === '/chunked') {
      res.writeHead(200, { 'content-type': 'image/png' });
      const chunk = Buffer.alloc(64 * 1024, 1);
      let n = 0;
      const t = setInterval(() => (n++ < 64 && !res.destroyed ? res.write(chunk) : (clearInterval(t), res.end())), 1);
      return;
    }
    if (u.pathname === '/slow') return void setTimeout(() => res.destroyed || res.end(png), 5000);
    if (u.pathname === '/host') return void (req.headers.host?.startsWith('img.test') ? res.writeHead(200).end(png) : res.writeHead(421).end());
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm2clip-files-'));
  fs.mkdirSync(path.join(dir, 'root', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'root', 'sub', 'a.png'), png);
  fs.writeFileSync(path.join(dir, 'root', 'big.png'), Buffer.alloc(2048));
  fs.writeFileSync(path.join(dir, 'outside.png'), png);
  fs.symlinkSync('/etc/passwd', path.join(dir, 'root', 'passwd.png'));
  fs.symlinkSync(path.join(dir, 'outside.png'), path.join(dir, 'root', 'escape.png'));
  fs.symlinkSync(path.join(dir, 'root', 'sub', 'a.png'), path.join(dir, 'root', 'inner-link.png'));
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  fs.rmSync(dir, { recursive: true, force: true });
});

const policy = (p: Partial<ImagePolicy> = {}): ImagePolicy => ({ maxBytes: 1024 * 1024, fetchHosts: [], allowPrivate: false, timeoutMs: 2000, maxRedirects: 2, ...p });

async function refused(p: Partial<ImagePolicy>, url: string): Promise<string> {
  try {
    await policyImageLoader(policy(p))(url, 3);
  } catch (e) {
    expect(e).toBeInstanceOf(ChatError);
    expect((e as ChatError).code).toBe('IMAGE');
    expect((e as ChatError).message).toMatch(/^image 3: /);
    return (e as ChatError).message;
  }
  throw new Error(`${url} was not refused`);
}

describe('address classification', () => {
  it('refuses loopback, private, link-local, unspecified and IPv4-embedding addresses', () => {
    for (const a of [
      '127.0.0.1', '127.255.0.9', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '0.0.0.0', '100.64.0.1', '224.0.0.1',
      '255.255.255.255', '198.18.0.1', '::', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:169.254.169.254', '::127.0.0.1', 'fe80::1', 'fc00::1',
      'fd12:3456::1', 'ff02::1', '64:ff9b::7f00:1', '2002:7f00:1::1', '2001:0:4136:e378::1',
    ]) {
      expect([a, nonPublicReason(a)]).toEqual([a, expect.any(String)]);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '93.184.216.34', '172.32.0.1', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e']) expect([a, nonPublicReason(a)]).toEqual([a, undefined]);
    expect(nonPublicReason('localhost')).toBe('not an IP address');
  });

  it('matches the host allow-list exactly or by *.suffix', () => {
    expect(hostAllowed('images.example.com', ['*.example.com'])).toBe(true);
    expect(hostAllowed('example.com', ['*.example.com'])).toBe(false);
    expect(hostAllowed('evilexample.com', ['*.example.com'])).toBe(false);
    expect(hostAllowed('Example.COM.', ['example.com'])).toBe(true);
    expect(hostAllowed('::1', ['[::1]'])).toBe(true);
    expect(hostAllowed('anything', ['*'])).toBe(true);
    expect(hostAllowed('a.com', [])).toBe(false);
  });
});

describe('downloads', () => {
  it('are off unless hosts are allowed; other schemes are refused', async () => {
    expect(await refused({}, `${base}/img.png`)).toMatch(/not enabled/);
    for (const u of ['ftp://example.com/a.png', 'gopher://127.0.0.1:70/', 'javascript:alert(1)', 'blob:http://x/1', '/etc/passwd', 'img.png']) {
      expect(await refused({ fetchHosts: ['*'] }, u)).toMatch(/not a supported image URL/);
    }
  });

  it('fetch an allowed host, following redirects up to the limit, each hop re-checked', async () => {
    const load = policyImageLoader(policy({ fetchHosts: ['127.0.0.1'], allowPrivate: true }));
    expect(Buffer.from(await load(`${base}/img.png`, 0))).toEqual(png);
    expect(Buffer.from(await load(`${base}/redirect?hops=2`, 0))).toEqual(png);
    expect(await refused({ fetchHosts: ['127.0.0.1'], allowPrivate: true }, `${base}/redirect?hops=3`)).toMatch(/more than 2 redirect/);
    expect(await refused({ fetchHosts: ['127.0.0.1'], allowPrivate: true }, `${base}/to?url=${encodeURIComponent(`http://localhost:${port}/img.png`)}`)).toMatch(/"localhost" \(redirect 1\) is not on/);
    expect(await refused({ fetchHosts: ['127.0.0.1'], allowPrivate: true }, `${base}/to?url=${encodeURIComponent('file:///etc/passwd')}`)).toMatch(/only http and https/);
    expect(await refused({ fetchHosts: ['127.0.0.1'], allowPrivate: true }, `${base}/missing`)).toMatch(/HTTP 404/);
    expect(await refused({ fetchHosts: ['*'], allowPrivate: true }, `http://user:pw@127.0.0.1:${port}/img.png`)).toMatch(/credentials/);
  });

  it('refuse private targets by resolved address, at the first hop and after redirects', async () => {
    for (const u of ['http://127.0.0.1/', 'http://169.254.169.254/latest/meta-data/', 'http://[::1]/', 'http://[::ffff:127.0.0.1]/', 'http://0.0.0.0/', 'http://2130706433/', 'http://0x7f.1/', 'http://10.0.0.1/']) {
      expect(await refused({ fetchHosts: ['*'] }, u)).toMatch(/resolves to .*refused/);
    }
    const resolve = async () => [{ address: '127.0.0.1', family: 4 as const }];
    expect(await refused({ fetchHosts: ['*'], resolve }, 'http://rebind.test/img.png')).toMatch(/"rebind.test" resolves to 127.0.0.1/);
    const mixed = async () => [{ address: '93.184.216.34', family: 4 as const }, { address: '10.0.0.5', family: 4 as const }];
    expect(await refused({ fetchHosts: ['*'], resolve: mixed }, 'http://mixed.test/')).toMatch(/10.0.0.5/);
    // only 127.0.0.1 is exempt: its redirects to other private targets are refused at the hop
    const p = { fetchHosts: ['*'], allowAddresses: ['127.0.0.1/32'] };
    expect(Buffer.from(await policyImageLoader(policy(p))(`${base}/img.png`, 0))).toEqual(png);
    for (const target of ['http://169.254.169.254/latest/meta-data/', 'http://[::1]/', `http://[::ffff:127.0.0.1]:${port}/img.png`, 'http://10.0.0.7/']) {
      const m = await refused(p, `${base}/to?url=${encodeURIComponent(target)}`);
      expect(m).toMatch(/\(redirect 1\) resolves to .*refused/);
    }
  });

  it('connect to the address that was checked, with the URL host in the Host header', async () => {
    let calls = 0;
    const resolve = async (h: string) => {
      calls++;
      expect(h).toBe('img.test');
      return [{ address: '127.0.0.1', family: 4 as const }];
    };
    // img.test does not exist in DNS: success proves no second lookup happened
    const load = policyImageLoader(policy({ fetchHosts: ['img.test'], allowPrivate: true, resolve }));
    expect(Buffer.from(await load(`http://img.test:${port}/host`, 0))).toEqual(png);
    expect(calls).toBe(1);
    expect(hosts.at(-1)).toBe(`img.test:${port}`);
  });

  it('cap size (declared and streamed) and time', async () => {
    const p = { fetchHosts: ['127.0.0.1'], allowPrivate: true, maxBytes: 1024 * 1024 };
    expect(await refused(p, `${base}/big`)).toMatch(/52428800 bytes, over the 1048576-byte limit/);
    expect(await refused(p, `${base}/chunked`)).toMatch(/over the 1048576-byte limit/);
    const t0 = Date.now();
    expect(await refused({ ...p, timeoutMs: 300 }, `${base}/slow`)).toMatch(/longer than 300 ms/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('file:// URLs', () => {
  const root = () => path.join(dir, 'root');
  const url = (p: string) => pathToFileURL(p).href;

  it('are off without a root, and read only regular files inside it (after resolving symlinks)', async () => {
    expect(await refused({}, url(path.join(root(), 'sub', 'a.png')))).toMatch(/not enabled/);
    const load = policyImageLoader(policy({ fileRoot: root() }));
    expect(Buffer.from(await load(url(path.join(root(), 'sub', 'a.png')), 0))).toEqual(png);
    expect(Buffer.from(await load(url(path.join(root(), 'inner-link.png')), 0))).toEqual(png);
    const p = { fileRoot: root(), maxBytes: 1024 };
    expect(await refused(p, 'file:///etc/passwd')).toMatch(/outside the folder/);
    expect(await refused(p, `file://${root()}/../outside.png`)).toMatch(/outside the folder/);
    expect(await refused(p, `file://${root()}/sub/..%2f..%2foutside.png`)).toMatch(/not a valid local file URL/);
    expect(await refused(p, url(path.join(root(), 'passwd.png')))).toMatch(/outside the folder/);
    expect(await refused(p, url(path.join(root(), 'escape.png')))).toMatch(/outside the folder/);
    expect(await refused(p, url(path.join(root(), 'sub')))).toMatch(/not a regular file/);
    expect(await refused(p, url(path.join(root(), 'nope.png')))).toMatch(/no such file/);
    expect(await refused(p, url(path.join(root(), 'big.png')))).toMatch(/2048 bytes, over the 1024-byte limit/);
    expect(await refused(p, 'file://otherhost/etc/passwd')).toMatch(/not a valid local file URL/);
    expect(await refused(p, url(root()))).toMatch(/outside the folder/);
  });
});
