/** Address math for IPv4 and IPv6 on bigints: parse, format, subnets, containment,
 * overlap, host enumeration. Pure; errors are StratumError INVALID with a message that
 * says what is wrong with the input. */
import { StratumError } from "../errors";

export type Family = 4 | 6;

/** An address text or byte string that is no address (from the byte codecs below). */
export class AddressFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AddressFormatError";
  }
}

/** MAC "aa:bb:cc:dd:ee:ff" ↔ 6 bytes. */
export function macToBytes(mac: string): Buffer {
  const parts = mac.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p)))
    throw new AddressFormatError(`invalid MAC address "${mac}"`);
  return Buffer.from(parts.map((p) => Number.parseInt(p, 16)));
}

export function bytesToMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

/** IPv4 or IPv6 text ↔ 4 or 16 bytes. */
export function ipToBytes(ip: string): Buffer {
  if (ip.includes(":")) return ipv6ToBytes(ip);
  const parts = ip.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255))
    throw new AddressFormatError(`invalid IPv4 address "${ip}"`);
  return Buffer.from(parts.map(Number));
}

function ipv6ToBytes(ip: string): Buffer {
  let s = ip;
  const out = Buffer.alloc(16);
  // Embedded IPv4 tail (::ffff:1.2.3.4)
  const v4 = s.match(/^(.*:)(\d+\.\d+\.\d+\.\d+)$/);
  let tail: Buffer | null = null;
  if (v4) {
    tail = ipToBytes(v4[2] as string);
    s = `${v4[1]}0:0`;
  }
  const halves = s.split("::");
  if (halves.length > 2) throw new AddressFormatError(`invalid IPv6 address "${ip}"`);
  const head = halves[0] ? (halves[0] as string).split(":") : [];
  const rest = halves.length === 2 && halves[1] ? (halves[1] as string).split(":") : [];
  if (halves.length === 1 && head.length !== 8) throw new AddressFormatError(`invalid IPv6 address "${ip}"`);
  if (head.length + rest.length > (halves.length === 2 ? 7 : 8))
    throw new AddressFormatError(`invalid IPv6 address "${ip}"`);
  const groups = [...head, ...Array(8 - head.length - rest.length).fill("0"), ...rest];
  groups.forEach((g, i) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new AddressFormatError(`invalid IPv6 address "${ip}"`);
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  if (tail) tail.copy(out, 12);
  return out;
}

export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  if (b.length !== 16) throw new AddressFormatError(`address of ${b.length} bytes`);
  const groups = Array.from({ length: 8 }, (_, i) => ((b[i * 2] as number) << 8) | (b[i * 2 + 1] as number));
  // RFC 5952: compress the longest run (>= 2) of zero groups, the first on a tie.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

export interface Ip {
  family: Family;
  value: bigint;
}

export interface Subnet {
  family: Family;
  /** Network address (host bits zero). */
  network: bigint;
  prefixLen: number;
}

const bits = (f: Family): number => (f === 4 ? 32 : 128);

export function parseIp(text: string): Ip {
  let b: Buffer;
  try {
    b = ipToBytes(text.trim());
  } catch {
    throw new StratumError("INVALID", `"${text}" is not an IPv4 or IPv6 address`);
  }
  let value = 0n;
  for (const x of b) value = (value << 8n) | BigInt(x);
  return { family: b.length === 4 ? 4 : 6, value };
}

export function formatIp(ip: Ip): string {
  const n = bits(ip.family) / 8;
  const b = Buffer.alloc(n);
  let v = ip.value;
  for (let i = n - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return bytesToIp(b);
}

const mask = (f: Family, prefixLen: number): bigint =>
  ((1n << BigInt(bits(f))) - 1n) ^ ((1n << BigInt(bits(f) - prefixLen)) - 1n);

/** Plain dotted IPv4 with a length, no leading zeros: the common case, read without the
 * general parser (a rule set or blocklist of a million prefixes reads each one). */
const PLAIN_V4_CIDR = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\/(0|[1-9]\d?)$/;

/** Parses "10.20.0.0/24"; with `strict` (the default) host bits must be zero. */
export function parseSubnet(text: string, strict = true): Subnet {
  const f = PLAIN_V4_CIDR.exec(text);
  if (f) {
    const [a, b, c, d, len] = [f[1], f[2], f[3], f[4], f[5]].map(Number) as [number, number, number, number, number];
    if (a < 256 && b < 256 && c < 256 && d < 256 && len <= 32) {
      const v = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
      // (A shift by 32 is a shift by 0 in JavaScript: /0 and /32 are spelled out.)
      const network = len === 0 ? 0 : len === 32 ? v : (v & ~(0xffffffff >>> len)) >>> 0;
      // Anything else (host bits set under `strict`) takes the general path for its message.
      if (!strict || network === v) return { family: 4, network: BigInt(network), prefixLen: len };
    }
  }
  const m = text.trim().match(/^([^/]+)\/(\d{1,3})$/);
  if (!m) throw new StratumError("INVALID", `"${text}" is not a CIDR (address/prefix-length, e.g. 10.20.0.0/24)`);
  const ip = parseIp(m[1] as string);
  const prefixLen = Number(m[2]);
  if (prefixLen > bits(ip.family))
    throw new StratumError("INVALID", `"${text}": prefix length ${prefixLen} is longer than ${bits(ip.family)} bits`);
  const network = ip.value & mask(ip.family, prefixLen);
  if (strict && network !== ip.value)
    throw new StratumError(
      "INVALID",
      `"${text}" has host bits set (the network is ${formatSubnet({ family: ip.family, network, prefixLen })})`,
    );
  return { family: ip.family, network, prefixLen };
}

export function formatSubnet(s: Subnet): string {
  return `${formatIp({ family: s.family, value: s.network })}/${s.prefixLen}`;
}

export function size(s: Subnet): bigint {
  return 1n << BigInt(bits(s.family) - s.prefixLen);
}

export function last(s: Subnet): bigint {
  return s.network + size(s) - 1n;
}

export function contains(s: Subnet, ip: Ip): boolean {
  return ip.family === s.family && ip.value >= s.network && ip.value <= last(s);
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  return a.family === b.family && a.network <= last(b) && b.network <= last(a);
}

/** First and last usable host address: IPv4 excludes the network and broadcast addresses,
 * IPv6 excludes the subnet-router anycast address (the all-zero host). */
export function hostRange(s: Subnet): { first: bigint; last: bigint } {
  if (s.family === 4) return { first: s.network + 1n, last: last(s) - 1n };
  return { first: s.network + 1n, last: last(s) };
}

export function usableHosts(s: Subnet): bigint {
  const r = hostRange(s);
  return r.last >= r.first ? r.last - r.first + 1n : 0n;
}
