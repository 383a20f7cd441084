/** Codecs for the port maps (bpf/include/stm_abi.h: struct stm_port, stm_profile_key,
 * stm_profile, stm_drop_key) and the drop reasons. Reason numbers are ABI: append only. */

import { bytesToMac, ipToBytes, macToBytes } from "../netlink/codec";

export const DROP_REASONS = {
  0: "unspecified",
  1: "port-unconfigured",
  2: "other-network",
} as const;
export type DropReason = (typeof DROP_REASONS)[keyof typeof DROP_REASONS];

export const PORT_SIZE = 16;
export const PROFILE_KEY_SIZE = 8;
export const PROFILE_SIZE = 8;
export const PROFILE_F = { CLAIMED: 1, GATEWAY: 2 } as const;

export interface PortConfig {
  netId: number;
  ip4: string;
  mac: string;
  flags?: number;
}

export function encodeIfindex(ifindex: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(ifindex);
  return b;
}

export function encodePort(p: PortConfig): Buffer {
  const b = Buffer.alloc(PORT_SIZE);
  b.writeUInt32LE(p.netId, 0);
  ipToBytes(p.ip4).copy(b, 4); // network byte order, as the datapath compares it
  macToBytes(p.mac).copy(b, 8);
  b.writeUInt16LE(p.flags ?? 0, 14);
  return b;
}

export function decodePort(b: Buffer): PortConfig {
  return {
    netId: b.readUInt32LE(0),
    ip4: Array.from(b.subarray(4, 8)).join("."),
    mac: bytesToMac(b.subarray(8, 14)),
    flags: b.readUInt16LE(14),
  };
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

export function decodeDropKey(b: Buffer): { ifindex: number; reason: DropReason | `reason${number}` } {
  const r = b.readUInt32LE(4);
  return { ifindex: b.readUInt32LE(0), reason: DROP_REASONS[r as keyof typeof DROP_REASONS] ?? `reason${r}` };
}
