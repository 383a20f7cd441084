/** Address math for IPv4 and IPv6 on bigints: parse, format, subnets, containment,
 * overlap, host enumeration. Pure; errors are StratumError INVALID with a message that
 * says what is wrong with the input. */
import { StratumError } from "../errors";
import { bytesToIp, ipToBytes } from "../netlink/codec";

export type Family = 4 | 6;

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

/** Parses "10.20.0.0/24"; with `strict` (the default) host bits must be zero. */
export function parseSubnet(text: string, strict = true): Subnet {
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
