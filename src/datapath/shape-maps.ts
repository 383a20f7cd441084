/** Codecs for the egress-cap maps (bpf/include/stm_abi.h: struct stm_shape_key,
 * stm_shape_cfg, stm_shape_state; the source trie's key is stm_lpm6_key). Layouts are ABI; test/unit/abi.test.ts
 * checks the sizes and offsets against the C header. */

import { bucketConfig, type EgressCap } from "../model/egress-cap";
import { parseSubnet } from "../model/ip";
import { blockKey } from "./firewall-maps";

export const SHAPE_KIND = { ENDPOINT: 1, NETWORK: 2 } as const;
export type ShapeKind = (typeof SHAPE_KIND)[keyof typeof SHAPE_KIND];

export const SHAPE_KEY_SIZE = 8;
export const SHAPE_CFG_SIZE = 16;
export const SHAPE_STATE_SIZE = 56;
/** Offsets in struct stm_shape_state. */
export const SHAPE_STATE_LAYOUT = {
  credit_ns: 8,
  last_ns: 16,
  passed_pkts: 24,
  passed_bytes: 32,
  dropped_pkts: 40,
  dropped_bytes: 48,
} as const;

/** What a bucket let through and dropped since it was created. */
export interface BucketCounts {
  passed: { packets: number; bytes: number };
  dropped: { packets: number; bytes: number };
}

export function encodeShapeKey(kind: ShapeKind, id: number): Buffer {
  const b = Buffer.alloc(SHAPE_KEY_SIZE);
  b.writeUInt32LE(kind, 0);
  b.writeUInt32LE(id, 4);
  return b;
}

export function decodeShapeKey(b: Buffer): { kind: number; id: number } {
  return { kind: b.readUInt32LE(0), id: b.readUInt32LE(4) };
}

export function encodeShapeCfg(c: EgressCap): Buffer {
  const { nsPerByte, burstNs } = bucketConfig(c);
  const b = Buffer.alloc(SHAPE_CFG_SIZE);
  b.writeBigUInt64LE(nsPerByte, 0);
  b.writeBigUInt64LE(burstNs, 8);
  return b;
}

export function decodeShapeState(b: Buffer): BucketCounts & { creditNs: bigint; lastNs: bigint } {
  const L = SHAPE_STATE_LAYOUT;
  const n = (o: number) => Number(b.readBigUInt64LE(o));
  return {
    creditNs: b.readBigUInt64LE(L.credit_ns),
    lastNs: b.readBigUInt64LE(L.last_ns),
    passed: { packets: n(L.passed_pkts), bytes: n(L.passed_bytes) },
    dropped: { packets: n(L.dropped_pkts), bytes: n(L.dropped_bytes) },
  };
}

/** The source-prefix key (struct stm_lpm6_key) of a subnet: IPv6 as is, IPv4 as
 * ::ffff:a.b.c.d/(96 + len). */
export function encodeShapeSrc(cidr: string): Buffer {
  const s = parseSubnet(cidr);
  return blockKey(
    s.family === 6 ? s : { family: 6, prefixLen: 96 + s.prefixLen, network: (0xffffn << 32n) | s.network },
  );
}
