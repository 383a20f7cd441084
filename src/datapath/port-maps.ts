/** Codecs for the port maps (bpf/include/stm_abi.h: struct stm_port, stm_profile_key,
 * stm_profile, stm_drop_key, stm_local_key, stm_local, stm_iface, stm_subnet). Layouts are ABI: append only;
 * test/unit/abi.test.ts checks every offset here against the C header. */

import { parseIp, parseSubnet } from "../model/ip";
import { linkLocal } from "../model/network";
import { bytesToIp, bytesToMac, ipToBytes, macToBytes } from "../netlink/codec";
import type { BpfMap } from "../sys/bpf";

/** Field offsets of struct stm_port. */
export const PORT_LAYOUT = {
  net_id: 0,
  ip4: 4,
  mac: 8,
  flags: 14,
  gw4: 16,
  net4: 20,
  mask4: 24,
  slot: 28,
  ip6: 32,
  ll6: 48,
  net6: 64,
  mask6: 80,
  gw6: 96,
} as const;
export const PORT_SIZE = 112;
export const PORT_F = { IP6: 1, SHAPED: 2, LAN: 4 } as const;

export const PROFILE_KEY_SIZE = 8;
export const PROFILE_SIZE = 8;
export const PROFILE_F = { CLAIMED: 1, GATEWAY: 2 } as const;

export const LOCAL_KEY_SIZE = 20;
export const LOCAL_SIZE = 8;
export const LOCAL_KIND = { MAC: 1, IP4: 4, IP6: 6 } as const;

/** What a port's programs check, as the agent knows it. */
export interface PortConfig {
  netId: number;
  /** Profile IPv4 address. */
  ip4: string;
  /** Profile MAC. */
  mac: string;
  /** The network's IPv4 subnet and gateway. */
  cidr4: string;
  gw4: string;
  /** Profile IPv6 address and the network's IPv6 subnet, when it has one. */
  ip6?: string;
  cidr6?: string;
  /** The network's IPv6 gateway (its DNS server), when it has one. */
  gw6?: string;
  /** The port's row in stm_port_stats (assigned by the agent; 0: the shared row). */
  slot?: number;
  /** The endpoint has an egress cap (an stm_shape_cfg entry for this ifindex). */
  shaped?: boolean;
  /** The port's network is extended onto the uplink's LAN (frames bridged between them pass). */
  lan?: boolean;
}

export function encodeIfindex(ifindex: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(ifindex);
  return b;
}

/** Network address and mask of a CIDR, as bytes in network order. */
function netAndMask(cidr: string): { net: Buffer; mask: Buffer } {
  const s = parseSubnet(cidr);
  const bytes = s.family === 4 ? 4 : 16;
  const bits = BigInt(bytes * 8);
  const maskVal = ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(s.prefixLen))) - 1n);
  const toBuf = (v: bigint) => {
    const b = Buffer.alloc(bytes);
    for (let i = bytes - 1; i >= 0; i--, v >>= 8n) b[i] = Number(v & 0xffn);
    return b;
  };
  return { net: toBuf(s.network), mask: toBuf(maskVal) };
}

export function encodePort(p: PortConfig): Buffer {
  const b = Buffer.alloc(PORT_SIZE);
  const L = PORT_LAYOUT;
  b.writeUInt32LE(p.netId, L.net_id);
  ipToBytes(p.ip4).copy(b, L.ip4);
  macToBytes(p.mac).copy(b, L.mac);
  b.writeUInt16LE((p.ip6 ? PORT_F.IP6 : 0) | (p.shaped ? PORT_F.SHAPED : 0) | (p.lan ? PORT_F.LAN : 0), L.flags);
  b.writeUInt32LE(p.slot ?? 0, L.slot);
  ipToBytes(p.gw4).copy(b, L.gw4);
  const n4 = netAndMask(p.cidr4);
  n4.net.copy(b, L.net4);
  n4.mask.copy(b, L.mask4);
  ipToBytes(linkLocal(p.mac)).copy(b, L.ll6);
  if (p.ip6) ipToBytes(p.ip6).copy(b, L.ip6);
  if (p.cidr6) {
    const n6 = netAndMask(p.cidr6);
    n6.net.copy(b, L.net6);
    n6.mask.copy(b, L.mask6);
  }
  if (p.gw6) ipToBytes(p.gw6).copy(b, L.gw6);
  return b;
}

/** Prefix length of a contiguous mask. */
function prefixOf(mask: Uint8Array): number {
  let n = 0;
  for (const x of mask) for (let i = 7; i >= 0; i--) if ((x >> i) & 1) n++;
  return n;
}

export function decodePort(b: Buffer): PortConfig {
  const L = PORT_LAYOUT;
  const flags = b.readUInt16LE(L.flags);
  const mask6 = b.subarray(L.mask6, L.mask6 + 16);
  const hasNet6 = mask6.some((x) => x !== 0);
  return {
    netId: b.readUInt32LE(L.net_id),
    ip4: bytesToIp(b.subarray(L.ip4, L.ip4 + 4)),
    mac: bytesToMac(b.subarray(L.mac, L.mac + 6)),
    gw4: bytesToIp(b.subarray(L.gw4, L.gw4 + 4)),
    cidr4: `${bytesToIp(b.subarray(L.net4, L.net4 + 4))}/${prefixOf(b.subarray(L.mask4, L.mask4 + 4))}`,
    ...(flags & PORT_F.IP6 ? { ip6: bytesToIp(b.subarray(L.ip6, L.ip6 + 16)) } : {}),
    ...(hasNet6 ? { cidr6: `${bytesToIp(b.subarray(L.net6, L.net6 + 16))}/${prefixOf(mask6)}` } : {}),
    ...(b.subarray(L.gw6, L.gw6 + 16).some((x) => x !== 0) ? { gw6: bytesToIp(b.subarray(L.gw6, L.gw6 + 16)) } : {}),
    ...(b.readUInt32LE(L.slot) ? { slot: b.readUInt32LE(L.slot) } : {}),
    ...(flags & PORT_F.SHAPED ? { shaped: true } : {}),
    ...(flags & PORT_F.LAN ? { lan: true } : {}),
  };
}

/** A device on the user bridge that is not a workload port (struct stm_iface). */
export interface IfaceConfig {
  kind: "uplink";
}
export const IFACE_KIND = { uplink: 1 } as const;
export const IFACE_SIZE = 8;

export function encodeIface(i: IfaceConfig): Buffer {
  const b = Buffer.alloc(IFACE_SIZE);
  b.writeUInt32LE(IFACE_KIND[i.kind], 0);
  return b;
}

/** A network's subnet in stm_subnets (struct stm_subnet): which network, extended onto the LAN or not. */
export interface SubnetConfig {
  netId: number;
  lan: boolean;
}
export const SUBNET_SIZE = 8;
export const SUBNET_F = { LAN: 1 } as const;

export function encodeSubnet(n: SubnetConfig): Buffer {
  const b = Buffer.alloc(SUBNET_SIZE);
  b.writeUInt32LE(n.netId, 0);
  b.writeUInt32LE(n.lan ? SUBNET_F.LAN : 0, 4);
  return b;
}

export function decodeSubnet(b: Buffer): SubnetConfig {
  return { netId: b.readUInt32LE(0), lan: (b.readUInt32LE(4) & SUBNET_F.LAN) !== 0 };
}

/** A stm_subnets key as a CIDR (IPv4 for ::ffff:0:0/96 prefixes). */
export function formatSubnetKey(k: Buffer): string {
  const len = k.readUInt32LE(0);
  const a = k.subarray(4, 20);
  const mapped = len >= 96 && a.subarray(0, 10).every((x) => x === 0) && a[10] === 0xff && a[11] === 0xff;
  return mapped ? `${bytesToIp(a.subarray(12, 16))}/${len - 96}` : `${bytesToIp(a)}/${len}`;
}

/** The stm_subnets key of a subnet (struct stm_lpm6_key; IPv4 as ::ffff:a.b.c.d/96+len). */
export function encodeSubnetKey(cidr: string): Buffer {
  const s = parseSubnet(cidr);
  const b = Buffer.alloc(20);
  if (s.family === 6) {
    b.writeUInt32LE(s.prefixLen, 0);
    ipToBytes(cidr.split("/")[0] as string).copy(b, 4);
  } else {
    b.writeUInt32LE(96 + s.prefixLen, 0);
    b[14] = 0xff;
    b[15] = 0xff;
    ipToBytes(cidr.split("/")[0] as string).copy(b, 16);
  }
  return b;
}

/** Traffic a port's programs saw, summed over CPUs (struct stm_port_stats). */
export interface PortStats {
  fromEndpoint: { packets: number; bytes: number };
  toEndpoint: { packets: number; bytes: number };
}
export const PORT_STATS_SIZE = 32;

/** Reads row `slot` of stm_port_stats and sums it over CPUs. */
export function sumPortStats(map: BpfMap, slot: number): PortStats {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(slot);
  const s: PortStats = { fromEndpoint: { packets: 0, bytes: 0 }, toEndpoint: { packets: 0, bytes: 0 } };
  for (const v of map.lookupPerCpu(k) ?? []) {
    s.fromEndpoint.packets += Number(v.readBigUInt64LE(0));
    s.fromEndpoint.bytes += Number(v.readBigUInt64LE(8));
    s.toEndpoint.packets += Number(v.readBigUInt64LE(16));
    s.toEndpoint.bytes += Number(v.readBigUInt64LE(24));
  }
  return s;
}

/** Writes the profile key of (netId, ip) at `off` of `out` (for batch buffers). */
export function writeProfileKey(out: Buffer, off: number, netId: number, ip4: Uint8Array): void {
  out.writeUInt32LE(netId, off);
  out.set(ip4, off + 4);
}

export function writeProfile(out: Buffer, off: number, mac: Uint8Array, flags: number): void {
  out.set(mac, off);
  out.writeUInt16LE(flags, off + 6);
}

/** Key of the drop counter of (device, reason number). */
export function encodeDropKey(ifindex: number, reason: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(ifindex, 0);
  b.writeUInt32LE(reason, 4);
  return b;
}

/** Key of one local address: a MAC ("aa:bb:…") or an IPv4/IPv6 address. */
export function encodeLocalKey(addr: string): Buffer {
  const b = Buffer.alloc(LOCAL_KEY_SIZE);
  if (/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(addr)) {
    b.writeUInt32LE(LOCAL_KIND.MAC, 0);
    macToBytes(addr).copy(b, 4);
  } else {
    const ip = parseIp(addr);
    b.writeUInt32LE(ip.family === 4 ? LOCAL_KIND.IP4 : LOCAL_KIND.IP6, 0);
    ipToBytes(addr).copy(b, 4);
  }
  return b;
}

export function encodeLocal(ifindex: number, netId: number): Buffer {
  const b = Buffer.alloc(LOCAL_SIZE);
  b.writeUInt32LE(ifindex, 0);
  b.writeUInt32LE(netId, 4);
  return b;
}

export function decodeLocalKey(b: Buffer): string {
  const kind = b.readUInt32LE(0);
  if (kind === LOCAL_KIND.MAC) return bytesToMac(b.subarray(4, 10));
  return bytesToIp(b.subarray(4, kind === LOCAL_KIND.IP4 ? 8 : 20));
}
