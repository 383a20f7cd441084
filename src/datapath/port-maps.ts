/** Codecs for the port maps (bpf/include/stm_abi.h: struct stm_port, stm_profile_key,
 * stm_profile, stm_drop_key, stm_local_key, stm_local, stm_iface, stm_subnet). Layouts are ABI: append only;
 * test/unit/abi.test.ts checks every offset here against the C header. */

import { parseIp, parseSubnet } from "../model/ip";
import { linkLocal } from "../model/network";
import { bytesToIp, bytesToMac, ipToBytes, macToBytes } from "../netlink/codec";
import type { BpfMap } from "../sys/bpf";
import { bytes, encode, get, put, putBytes } from "../sys/layout";
import { stmLayout } from "./abi-layouts";

/** struct stm_port: what a port's programs check. Arrays (addresses, MAC) by their first byte. */
export const PORT = stmLayout("stm_port", 116, {
  net_id: [0, "u32"],
  ip4: [4, "u8"],
  mac: [8, "u8"],
  flags: [14, "u16"],
  gw4: [16, "u8"],
  net4: [20, "u8"],
  mask4: [24, "u8"],
  slot: [28, "u32"],
  ip6: [32, "u8"],
  ll6: [48, "u8"],
  net6: [64, "u8"],
  mask6: [80, "u8"],
  gw6: [96, "u8"],
  group: [112, "u16"],
});
export const PORT_SIZE = PORT.size;
export const PORT_F = { IP6: 1, SHAPED: 2, LAN: 4, MACVTAP: 8, VM_PRIVATE: 16 } as const;

export const PROFILE_KEY = stmLayout("stm_profile_key", 8, { net_id: [0, "u32"], ip4: [4, "u8"] });
export const PROFILE = stmLayout("stm_profile", 8, { mac: [0, "u8"], flags: [6, "u16"] });
export const PROFILE_KEY_SIZE = PROFILE_KEY.size;
const PROFILE_KEY_NET_ID = PROFILE_KEY.fields.net_id[0];
const PROFILE_KEY_IP4 = PROFILE_KEY.fields.ip4[0];
const PROFILE_MAC = PROFILE.fields.mac[0];
const PROFILE_FLAGS = PROFILE.fields.flags[0];
export const PROFILE_SIZE = PROFILE.size;
export const PROFILE_F = { CLAIMED: 1, GATEWAY: 2 } as const;

export const DROP_KEY = stmLayout("stm_drop_key", 8, { ifindex: [0, "u32"], reason: [4, "u32"] });
export const LOCAL_KEY = stmLayout("stm_local_key", 20, { kind: [0, "u32"], addr: [4, "u8"] });
export const LOCAL = stmLayout("stm_local", 8, { ifindex: [0, "u32"], net_id: [4, "u32"] });
export const LOCAL_KEY_SIZE = LOCAL_KEY.size;
export const LOCAL_SIZE = LOCAL.size;
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
  /** A VM's macvtap (its programs the other way round); `vmPrivate`: in private mode. */
  macvtap?: boolean;
  vmPrivate?: boolean;
  /** The endpoint has an egress cap (an stm_shape_cfg entry for this ifindex). */
  shaped?: boolean;
  /** The port's network is extended onto the uplink's LAN (frames bridged between them pass). */
  lan?: boolean;
  /** The endpoint's microsegmentation group id (absent or 0: untagged). */
  group?: number;
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
  const b = encode(PORT, {
    net_id: p.netId,
    flags:
      (p.ip6 ? PORT_F.IP6 : 0) |
      (p.shaped ? PORT_F.SHAPED : 0) |
      (p.lan ? PORT_F.LAN : 0) |
      (p.macvtap ? PORT_F.MACVTAP : 0) |
      (p.vmPrivate ? PORT_F.VM_PRIVATE : 0),
    slot: p.slot ?? 0,
    group: p.group ?? 0,
  });
  putBytes(b, PORT, "ip4", ipToBytes(p.ip4));
  putBytes(b, PORT, "mac", macToBytes(p.mac));
  putBytes(b, PORT, "gw4", ipToBytes(p.gw4));
  const n4 = netAndMask(p.cidr4);
  putBytes(b, PORT, "net4", n4.net);
  putBytes(b, PORT, "mask4", n4.mask);
  putBytes(b, PORT, "ll6", ipToBytes(linkLocal(p.mac)));
  if (p.ip6) putBytes(b, PORT, "ip6", ipToBytes(p.ip6));
  if (p.cidr6) {
    const n6 = netAndMask(p.cidr6);
    putBytes(b, PORT, "net6", n6.net);
    putBytes(b, PORT, "mask6", n6.mask);
  }
  if (p.gw6) putBytes(b, PORT, "gw6", ipToBytes(p.gw6));
  return b;
}

/** Prefix length of a contiguous mask. */
function prefixOf(mask: Uint8Array): number {
  let n = 0;
  for (const x of mask) for (let i = 7; i >= 0; i--) if ((x >> i) & 1) n++;
  return n;
}

export function decodePort(b: Buffer): PortConfig {
  const flags = get(b, PORT, "flags");
  const slot = get(b, PORT, "slot");
  const group = get(b, PORT, "group");
  const ip = (f: keyof typeof PORT.fields, n: number) => bytes(b, PORT, f, n);
  const mask6 = ip("mask6", 16);
  const gw6 = ip("gw6", 16);
  return {
    netId: get(b, PORT, "net_id"),
    ip4: bytesToIp(ip("ip4", 4)),
    mac: bytesToMac(ip("mac", 6)),
    gw4: bytesToIp(ip("gw4", 4)),
    cidr4: `${bytesToIp(ip("net4", 4))}/${prefixOf(ip("mask4", 4))}`,
    ...(flags & PORT_F.IP6 ? { ip6: bytesToIp(ip("ip6", 16)) } : {}),
    ...(mask6.some((x) => x !== 0) ? { cidr6: `${bytesToIp(ip("net6", 16))}/${prefixOf(mask6)}` } : {}),
    ...(gw6.some((x) => x !== 0) ? { gw6: bytesToIp(gw6) } : {}),
    ...(slot ? { slot } : {}),
    ...(flags & PORT_F.SHAPED ? { shaped: true } : {}),
    ...(flags & PORT_F.LAN ? { lan: true } : {}),
    ...(flags & PORT_F.MACVTAP ? { macvtap: true } : {}),
    ...(flags & PORT_F.VM_PRIVATE ? { vmPrivate: true } : {}),
    ...(group ? { group } : {}),
  };
}

/** A device on the user bridge that is not a workload port (struct stm_iface). */
export interface IfaceConfig {
  kind: "uplink" | "overlay" | "link" | "macvtap";
}
export const IFACE_KIND = { uplink: 1, overlay: 2, link: 3, macvtap: 4 } as const;
export const IFACE = stmLayout("stm_iface", 8, { kind: [0, "u32"], flags: [4, "u32"] });
export const IFACE_SIZE = IFACE.size;

export function encodeIface(i: IfaceConfig): Buffer {
  return encode(IFACE, { kind: IFACE_KIND[i.kind] });
}

/** A network's subnet in stm_subnets (struct stm_subnet): which network, extended onto the LAN or not. */
export interface SubnetConfig {
  netId: number;
  lan: boolean;
}
export const SUBNET = stmLayout("stm_subnet", 8, { net_id: [0, "u32"], flags: [4, "u32"] });
export const SUBNET_SIZE = SUBNET.size;
export const SUBNET_F = { LAN: 1 } as const;

export function encodeSubnet(n: SubnetConfig): Buffer {
  return encode(SUBNET, { net_id: n.netId, flags: n.lan ? SUBNET_F.LAN : 0 });
}

export function decodeSubnet(b: Buffer): SubnetConfig {
  return { netId: get(b, SUBNET, "net_id"), lan: (get(b, SUBNET, "flags") & SUBNET_F.LAN) !== 0 };
}

/** A stm_subnets key as a CIDR (IPv4 for ::ffff:0:0/96 prefixes). */
export function formatSubnetKey(k: Buffer): string {
  const len = k.readUInt32LE(0);
  const a = k.subarray(4, 20);
  const addr = unmappedAddr(a);
  return len >= 96 && !addr.includes(":") ? `${addr}/${len - 96}` : `${bytesToIp(a)}/${len}`;
}

/** The stm_subnets key of a subnet (struct stm_lpm6_key; IPv4 as ::ffff:a.b.c.d/96+len). */
export function encodeSubnetKey(cidr: string): Buffer {
  const s = parseSubnet(cidr);
  const b = Buffer.alloc(20);
  b.writeUInt32LE(s.family === 6 ? s.prefixLen : 96 + s.prefixLen, 0);
  mappedAddr(cidr.split("/")[0] as string).copy(b, 4);
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
/** Writes the profile key at `off` of a batch buffer. */
export function writeProfileKey(out: Buffer, off: number, netId: number, ip4: Uint8Array): void {
  const k = out.subarray(off, off + PROFILE_KEY.size);
  put(k, PROFILE_KEY, "net_id", netId);
  putBytes(k, PROFILE_KEY, "ip4", ip4);
}

/** writeProfileKey with the address as a number (a reconcile writes hundreds of thousands). */
export function writeProfileKeyU32(out: Buffer, off: number, netId: number, ip4: number): void {
  out.writeUInt32LE(netId >>> 0, off + PROFILE_KEY_NET_ID);
  out.writeUInt32BE(ip4 >>> 0, off + PROFILE_KEY_IP4);
}

/** The profile of host `index` of network `netId` at `off`: its MAC (profileMac, as bytes:
 * 02, the id, the index) and flags. */
export function writeProfileOf(out: Buffer, off: number, netId: number, index: number, flags: number): void {
  const m = off + PROFILE_MAC;
  out[m] = 0x02;
  out[m + 1] = (netId >> 8) & 0xff;
  out[m + 2] = netId & 0xff;
  out[m + 3] = (index >> 16) & 0xff;
  out[m + 4] = (index >> 8) & 0xff;
  out[m + 5] = index & 0xff;
  out.writeUInt16LE(flags, off + PROFILE_FLAGS);
}

/** Writes the profile at `off` of a batch buffer. */
export function writeProfile(out: Buffer, off: number, mac: Uint8Array, flags: number): void {
  const v = out.subarray(off, off + PROFILE.size);
  putBytes(v, PROFILE, "mac", mac);
  put(v, PROFILE, "flags", flags);
}

/** Key of the drop counter of (device, reason number). */
export function encodeDropKey(ifindex: number, reason: number): Buffer {
  return encode(DROP_KEY, { ifindex, reason });
}

/** Key of one local address: a MAC ("aa:bb:…") or an IPv4/IPv6 address. */
export function encodeLocalKey(addr: string): Buffer {
  const mac = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(addr);
  const kind = mac ? LOCAL_KIND.MAC : parseIp(addr).family === 4 ? LOCAL_KIND.IP4 : LOCAL_KIND.IP6;
  const b = encode(LOCAL_KEY, { kind });
  putBytes(b, LOCAL_KEY, "addr", mac ? macToBytes(addr) : ipToBytes(addr));
  return b;
}

export function encodeLocal(ifindex: number, netId: number): Buffer {
  return encode(LOCAL, { ifindex, net_id: netId });
}

export function decodeLocalKey(b: Buffer): string {
  const kind = get(b, LOCAL_KEY, "kind");
  if (kind === LOCAL_KIND.MAC) return bytesToMac(bytes(b, LOCAL_KEY, "addr", 6));
  return bytesToIp(bytes(b, LOCAL_KEY, "addr", kind === LOCAL_KIND.IP4 ? 4 : 16));
}

// ---- overlay --------------------------------------------------------------------------------

/** struct stm_vtep_key / stm_mac_key / stm_remote: the overlay's maps (docs/overlay.md). */
export const VTEP_KEY = stmLayout("stm_vtep_key", 16, { addr: [0, "u8"] });
export const VTEP = stmLayout("stm_vtep", 8, { flags: [0, "u32"], mtu: [4, "u32"] });
export const VTEP_F = { SELF: 1, GATEWAY: 2 } as const;
export const MAC_KEY = stmLayout("stm_mac_key", 8, { mac: [0, "u8"], pad: [6, "u16"] });
export const REMOTE = stmLayout("stm_remote", 48, {
  net_id: [0, "u32"],
  vni: [4, "u32"],
  ip4: [8, "u8"],
  flags: [12, "u32"],
  ip6: [16, "u8"],
  vtep: [32, "u8"],
});
export const REMOTE_F = { IP6: 1, VTEP6: 2 } as const;

/** An address as 16 bytes, IPv4 as ::ffff:a.b.c.d. */
export function mappedAddr(addr: string): Buffer {
  const ip = ipToBytes(addr);
  if (ip.length === 16) return Buffer.from(ip);
  const b = Buffer.alloc(16);
  b[10] = 0xff;
  b[11] = 0xff;
  Buffer.from(ip).copy(b, 12);
  return b;
}

/** The address of a 16-byte key or field (::ffff:a.b.c.d back to IPv4). */
export function unmappedAddr(b: Uint8Array): string {
  const v4 = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return bytesToIp(v4 ? b.subarray(12, 16) : b.subarray(0, 16));
}

/** The key of a node's address in stm_vteps; "" is the switch (the overlay is on). */
export function encodeVtepKey(addr: string): Buffer {
  return addr === "" ? Buffer.alloc(16) : mappedAddr(addr);
}

/** A node's entry; the switch's carries the overlay's MTU. */
export function encodeVtep(o: { self: boolean; gateway?: boolean; mtu?: number }): Buffer {
  return encode(VTEP, { flags: (o.self ? VTEP_F.SELF : 0) | (o.gateway ? VTEP_F.GATEWAY : 0), mtu: o.mtu ?? 0 });
}

/** struct stm_gw_cfg: north-south over the overlay (bpf/include/stm_ns.h). */
export const GW_CFG = stmLayout("stm_gw_cfg", 80, {
  count: [0, "u32"],
  flags: [4, "u32"],
  overlay_ifindex: [8, "u32"],
  addr: [16, "u8"],
});
export const GW_MAX = 4;
export const GW_F_SELF = 1;

/** The gateway nodes' underlay addresses (at most GW_MAX, in order), whether this node is one,
 * and the overlay device. */
export function encodeGwCfg(o: { gateways: string[]; self: boolean; overlayIfindex: number }): Buffer {
  const b = encode(GW_CFG, {
    count: Math.min(o.gateways.length, GW_MAX),
    flags: o.self ? GW_F_SELF : 0,
    overlay_ifindex: o.overlayIfindex,
  });
  o.gateways.slice(0, GW_MAX).forEach((a, i) => {
    mappedAddr(a).copy(b, (GW_CFG.fields.addr as readonly [number, string])[0] + 16 * i);
  });
  return b;
}

export function encodeMacKey(mac: string): Buffer {
  const b = Buffer.alloc(8);
  macToBytes(mac).copy(b, 0);
  return b;
}

export function decodeMacKey(b: Buffer): string {
  return bytesToMac(b.subarray(0, 6));
}

/** An endpoint of another node, as stm_remote holds it. */
export interface RemoteEndpoint {
  netId: number;
  vni: number;
  ip4: string;
  ip6?: string;
  /** The underlay address of the node it runs on. */
  node: string;
}

export function encodeRemote(r: RemoteEndpoint): Buffer {
  const b = Buffer.alloc(REMOTE.size);
  b.writeUInt32LE(r.netId, 0);
  b.writeUInt32LE(r.vni, 4);
  ipToBytes(r.ip4).copy(b, 8);
  const vtep = mappedAddr(r.node);
  b.writeUInt32LE((r.ip6 ? REMOTE_F.IP6 : 0) | (parseIp(r.node).family === 6 ? REMOTE_F.VTEP6 : 0), 12);
  if (r.ip6) ipToBytes(r.ip6).copy(b, 16);
  vtep.copy(b, 32);
  return b;
}

export function decodeRemote(b: Buffer): RemoteEndpoint {
  const flags = b.readUInt32LE(12);
  return {
    netId: b.readUInt32LE(0),
    vni: b.readUInt32LE(4),
    ip4: bytesToIp(b.subarray(8, 12)),
    ...(flags & REMOTE_F.IP6 ? { ip6: bytesToIp(b.subarray(16, 32)) } : {}),
    node: unmappedAddr(b.subarray(32, 48)),
  };
}

// ---- masquerading ---------------------------------------------------------------------------

/** struct stm_nat_net: a masqueraded network's NAT address per family (docs/gateway.md). */
export const NAT_NET = stmLayout("stm_nat_net", 24, { addr6: [0, "u8"], addr4: [16, "u8"], flags: [20, "u32"] });
export const NAT_NET_F = { V4: 1, V6: 2 } as const;
/** struct stm_nat_cfg: the NAT port range, and whether any network is masqueraded. */
export const NAT_CFG = stmLayout("stm_nat_cfg", 8, { port_lo: [0, "u16"], port_hi: [2, "u16"], flags: [4, "u32"] });
export const NAT_CFG_F_ON = 1;
/** stm_nat_stats indexes (enum stm_nat_stat), by the name metrics use. */
export const NAT_STATS = ["translated", "exhausted", "reclaimed", "socket-skip", "icmp-error", "fragment"] as const;

export interface NatNetConfig {
  addr4?: string;
  addr6?: string;
}

export function encodeNatNet(n: NatNetConfig): Buffer {
  const b = encode(NAT_NET, {
    flags: (n.addr4 ? NAT_NET_F.V4 : 0) | (n.addr6 ? NAT_NET_F.V6 : 0),
  });
  if (n.addr6) putBytes(b, NAT_NET, "addr6", ipToBytes(n.addr6));
  if (n.addr4) putBytes(b, NAT_NET, "addr4", ipToBytes(n.addr4));
  return b;
}

export function decodeNatNet(b: Buffer): NatNetConfig {
  const f = get(b, NAT_NET, "flags");
  return {
    ...(f & NAT_NET_F.V4 ? { addr4: bytesToIp(bytes(b, NAT_NET, "addr4", 4)) } : {}),
    ...(f & NAT_NET_F.V6 ? { addr6: bytesToIp(bytes(b, NAT_NET, "addr6", 16)) } : {}),
  };
}

export function encodeNatCfg(c: { lo: number; hi: number; on: boolean }): Buffer {
  return encode(NAT_CFG, { port_lo: c.lo, port_hi: c.hi, flags: c.on ? NAT_CFG_F_ON : 0 });
}
