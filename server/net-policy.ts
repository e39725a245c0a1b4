/**
 * Which network addresses an image download may reach. Loopback, private, link-local, unspecified,
 * shared (CGNAT), benchmark, multicast and reserved ranges are refused unless the server explicitly
 * allows private targets; IPv6 forms that embed an IPv4 address (IPv4-mapped/-compatible, NAT64, 6to4,
 * Teredo) are refused too, since they could tunnel to a private IPv4 host.
 */
import { BlockList, isIP } from 'node:net';

// Two lists: node's BlockList matches IPv4 addresses against IPv4-mapped IPv6 rules and vice versa.
const blocked4 = new BlockList();
const blocked6 = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // shared address space (CGNAT)
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  blocked4.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['::', 96], // IPv4-compatible (deprecated)
  ['::ffff:0:0', 96], // IPv4-mapped
  ['64:ff9b::', 96], // NAT64
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001::', 32], // Teredo
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  blocked6.addSubnet(net, prefix, 'ipv6');
}

/** Why an address is not a public unicast one, or undefined when it is. */
export function nonPublicReason(address: string): string | undefined {
  const v = isIP(address);
  if (v === 0) return 'not an IP address';
  if (v === 4) return blocked4.check(address, 'ipv4') ? 'a loopback, private, link-local or reserved IPv4 address' : undefined;
  return blocked6.check(address, 'ipv6') ? 'a loopback, private, link-local, reserved or IPv4-embedding IPv6 address' : undefined;
}

/** Host allow-list entries: exact names or IP literals, `*.example.com` (subdomains only), or `*` (any host). */
export function hostAllowed(hostname: string, allow: readonly string[]): boolean {
  const h = hostname.toLowerCase().replace(/\.$/, '');
  return allow.some((a) => {
    if (a === '*') return true;
    if (a.startsWith('*.')) return h.endsWith(a.slice(1)) && h.length > a.length - 1;
    return h === a.replace(/^\[|\]$/g, '').replace(/\.$/, '');
  });
}

/** An allow-list of addresses and CIDR blocks ("192.168.1.10", "10.0.0.0/8", "fd00::/8"); throws on bad entries. */
export function addressList(entries: readonly string[]): (address: string) => boolean {
  // per family, as above: an IPv4 entry does not exempt its IPv4-mapped IPv6 form
  const lists = { 4: new BlockList(), 6: new BlockList() };
  for (const e of entries) {
    const [addr, bits, extra] = e.split('/');
    const v = isIP(addr ?? '');
    const n = bits === undefined ? (v === 4 ? 32 : 128) : Number(bits);
    if (v === 0 || extra !== undefined || !Number.isInteger(n) || n < 0 || n > (v === 4 ? 32 : 128)) throw new RangeError(`${JSON.stringify(e)} is not an IP address or CIDR block`);
    lists[v as 4 | 6].addSubnet(addr!, n, v === 4 ? 'ipv4' : 'ipv6');
  }
  return (address) => {
    const v = isIP(address);
    return v !== 0 && lists[v as 4 | 6].check(address, v === 4 ? 'ipv4' : 'ipv6');
  };
}
