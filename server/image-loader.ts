/**
 * The server's image URL policy, plugged into the library as its ImageLoader:
 * - `data:image/...;base64,` always (size-capped);
 * - `http(s)://` only for hosts on the allow-list. Every hop (redirects included, at most N) is re-checked:
 *   scheme, host, and the DNS answer — the download then connects to the very address that was checked
 *   (Host header and TLS SNI/certificate name stay the URL's), so a second, different DNS answer cannot
 *   slip a private target in between check and connect. Size and time caps; no content decoding;
 * - `file://` only inside a configured folder, checked both on the path and after resolving symlinks.
 */
import { constants as fsc } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { resolve as resolvePath, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ChatError, dataUrlLoader, type ImageLoader } from '../src/chat/index.js';
import { addressList, hostAllowed, nonPublicReason } from './net-policy.js';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export interface ImagePolicy {
  maxBytes: number;
  /** hosts http(s) URLs may name; empty: no downloads */
  fetchHosts: readonly string[];
  /** allow loopback/private/link-local targets */
  allowPrivate: boolean;
  /** addresses / CIDR blocks exempt from the private-target refusal */
  allowAddresses?: readonly string[];
  timeoutMs: number;
  maxRedirects: number;
  /** folder file:// URLs may read from; undefined: none */
  fileRoot?: string;
  /** DNS resolution (tests substitute it); default: the system resolver, all addresses */
  resolve?: (hostname: string) => Promise<ResolvedAddress[]>;
}

type Fail = (message: string, cause?: unknown) => ChatError;

const short = (url: string): string => JSON.stringify(url.length > 80 ? `${url.slice(0, 77)}...` : url);

export function policyImageLoader(p: ImagePolicy): ImageLoader {
  const data = dataUrlLoader({ maxBytes: p.maxBytes });
  const exempt = addressList(p.allowAddresses ?? []);
  let root: Promise<string> | undefined;
  return async (url, index) => {
    const fail: Fail = (message, cause) => new ChatError('IMAGE', `image ${index}: ${message}`, cause === undefined ? undefined : { cause });
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
    if (scheme === 'data') return data(url, index);
    if (scheme === 'http' || scheme === 'https') return fetchImage(url, p, exempt, fail);
    if (scheme === 'file') {
      if (p.fileRoot === undefined) throw fail('file:// image URLs are not enabled on this server; send the image as a data: URL');
      root ??= realpath(p.fileRoot);
      return readFileImage(url, p.fileRoot, await root, p.maxBytes, fail);
    }
    throw fail(`${short(url)} is not a supported image URL: send data:image/<png|jpeg|webp|gif>;base64,...${p.fetchHosts.length > 0 ? ' or an http(s) URL' : ''}`);
  };
}

async function fetchImage(first: string, p: ImagePolicy, exempt: (a: string) => boolean, fail: Fail): Promise<Uint8Array> {
  if (p.fetchHosts.length === 0) throw fail('downloading image URLs is not enabled on this server; send the image as a data: URL');
  const deadline = AbortSignal.timeout(p.timeoutMs);
  let url = first;
  for (let hop = 0; ; hop++) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw fail(`${short(url)} is not a valid URL`);
    }
    const where = hop === 0 ? '' : ` (redirect ${hop})`;
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw fail(`${short(url)}${where}: only http and https URLs are downloaded`);
    if (u.username || u.password) throw fail(`${short(url)}${where}: URLs with credentials are refused`);
    const host = u.hostname.replace(/^\[|\]$/g, '');
    if (!hostAllowed(host, p.fetchHosts)) throw fail(`host ${JSON.stringify(host)}${where} is not on this server's allow-list for image URLs`);
    const target = await pickAddress(host, p, exempt, fail, deadline, where);
    const r = await get(u, host, target, deadline, p, fail);
    if (r.location !== undefined) {
      if (hop >= p.maxRedirects) throw fail(`${short(first)}: more than ${p.maxRedirects} redirect(s)`);
      url = new URL(r.location, u).href;
      continue;
    }
    return r.body!;
  }
}

async function pickAddress(host: string, p: ImagePolicy, exempt: (a: string) => boolean, fail: Fail, deadline: AbortSignal, where: string): Promise<ResolvedAddress> {
  let addresses: ResolvedAddress[];
  const v = isIP(host);
  if (v !== 0) addresses = [{ address: host, family: v as 4 | 6 }];
  else {
    const resolver = p.resolve ?? ((h: string) => lookup(h, { all: true, verbatim: true }) as Promise<ResolvedAddress[]>);
    try {
      addresses = await Promise.race([
        resolver(host),
        new Promise<never>((_, reject) => {
          if (deadline.aborted) reject(deadline.reason);
          deadline.addEventListener('abort', () => reject(deadline.reason), { once: true });
        }),
      ]);
    } catch (e) {
      throw fail(deadline.aborted ? `resolving ${host}${where} timed out` : `cannot resolve host ${JSON.stringify(host)}${where}`, e);
    }
  }
  if (addresses.length === 0) throw fail(`host ${JSON.stringify(host)}${where} has no address`);
  if (!p.allowPrivate) {
    for (const a of addresses) {
      const why = nonPublicReason(a.address);
      if (why && !exempt(a.address)) throw fail(`host ${JSON.stringify(host)}${where} resolves to ${a.address}, ${why}; refused`);
    }
  }
  return addresses[0]!;
}

function get(
  u: URL,
  host: string,
  target: ResolvedAddress,
  deadline: AbortSignal,
  p: ImagePolicy,
  fail: Fail,
): Promise<{ location?: string; body?: Uint8Array }> {
  const tls = u.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const req = (tls ? https : http).request(
      {
        protocol: u.protocol,
        host: target.address, // connect to the checked address, no second lookup
        family: target.family,
        port: u.port || (tls ? 443 : 80),
        path: `${u.pathname}${u.search}`,
        method: 'GET',
        headers: { host: u.host, 'user-agent': 'llm2clip-server', accept: 'image/*' },
        ...(tls && isIP(host) === 0 ? { servername: host } : {}),
        agent: false,
        signal: deadline,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if ([301, 302, 303, 307, 308].includes(status)) {
          res.resume();
          const loc = res.headers.location;
          if (!loc) return reject(fail(`${short(u.href)}: HTTP ${status} without a Location`));
          return resolve({ location: loc });
        }
        if (status < 200 || status > 299) {
          res.resume();
          return reject(fail(`${short(u.href)}: the download failed with HTTP ${status}`));
        }
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > p.maxBytes) {
          res.destroy();
          return reject(fail(`${short(u.href)}: the image is ${declared} bytes, over the ${p.maxBytes}-byte limit`));
        }
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > p.maxBytes) {
            res.destroy();
            reject(fail(`${short(u.href)}: the image is over the ${p.maxBytes}-byte limit`));
          } else chunks.push(c);
        });
        res.on('end', () => resolve({ body: Buffer.concat(chunks) }));
        res.on('error', (e) => reject(fail(`${short(u.href)}: the download failed (${e.message})`, e)));
      },
    );
    req.on('error', (e) =>
      reject(deadline.aborted ? fail(`${short(u.href)}: the download took longer than ${p.timeoutMs} ms`, e) : fail(`${short(u.href)}: the download failed (${e.message})`, e)),
    );
    req.end();
  });
}

async function readFileImage(url: string, rootGiven: string, root: string, maxBytes: number, fail: Fail): Promise<Uint8Array> {
  let path: string;
  try {
    path = resolvePath(fileURLToPath(url));
  } catch (e) {
    throw fail(`${short(url)} is not a valid local file URL`, e);
  }
  const inside = (p: string, r: string): boolean => p.startsWith(r.endsWith(sep) ? r : r + sep);
  const outside = (): ChatError => fail(`${short(url)} is outside the folder file:// URLs may read from`);
  // lexical check first (no file-system probing outside the root), then after resolving symlinks
  if (!inside(path, resolvePath(rootGiven)) && !inside(path, root)) throw outside();
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    throw fail(`${short(url)}: no such file`);
  }
  if (!inside(real, root)) throw outside();
  let fh;
  try {
    fh = await open(real, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOFOLLOW);
  } catch (e) {
    throw fail(`${short(url)}: cannot open the file`, e);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw fail(`${short(url)} is not a regular file`);
    if (st.size > maxBytes) throw fail(`${short(url)}: the image is ${st.size} bytes, over the ${maxBytes}-byte limit`);
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}
