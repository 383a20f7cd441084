/** Codecs for the egress-cap maps (bpf/include/stm_abi.h: struct stm_shape_key,
 * stm_shape_cfg, stm_shape_state; the source trie's key is stm_lpm6_key). Layouts are ABI; test/unit/abi.test.ts
 * checks the sizes and offsets against the C header. */

import { bucketConfig, type EgressCap } from "../model/egress-cap";
import { parseSubnet } from "../model/ip";
import { decode, encode, get, getBig } from "../sys/layout";
import { stmLayout } from "./abi-layouts";
import { blockKey } from "./firewall-maps";

export const SHAPE_KIND = { ENDPOINT: 1, NETWORK: 2 } as const;
export type ShapeKind = (typeof SHAPE_KIND)[keyof typeof SHAPE_KIND];

export const SHAPE_KEY = stmLayout("stm_shape_key", 8, { kind: [0, "u32"], id: [4, "u32"] });
export const SHAPE_CFG = stmLayout("stm_shape_cfg", 16, { ns_per_byte: [0, "u64"], burst_ns: [8, "u64"] });
export const SHAPE_STATE = stmLayout("stm_shape_state", 56, {
  credit_ns: [8, "u64"],
  last_ns: [16, "u64"],
  passed_pkts: [24, "u64"],
  passed_bytes: [32, "u64"],
  dropped_pkts: [40, "u64"],
  dropped_bytes: [48, "u64"],
});
export const SHAPE_KEY_SIZE = SHAPE_KEY.size;
export const SHAPE_CFG_SIZE = SHAPE_CFG.size;
export const SHAPE_STATE_SIZE = SHAPE_STATE.size;

/** What a bucket let through and dropped since it was created. */
export interface BucketCounts {
  passed: { packets: number; bytes: number };
  dropped: { packets: number; bytes: number };
}

export function encodeShapeKey(kind: ShapeKind, id: number): Buffer {
  return encode(SHAPE_KEY, { kind, id });
}

export function decodeShapeKey(b: Buffer): { kind: number; id: number } {
  return decode<"kind" | "id">(SHAPE_KEY, b);
}

export function encodeShapeCfg(c: EgressCap): Buffer {
  const { nsPerByte, burstNs } = bucketConfig(c);
  return encode(SHAPE_CFG, { ns_per_byte: nsPerByte, burst_ns: burstNs });
}

export function decodeShapeState(b: Buffer): BucketCounts & { creditNs: bigint; lastNs: bigint } {
  const n = (f: keyof typeof SHAPE_STATE.fields) => get(b, SHAPE_STATE, f);
  return {
    creditNs: getBig(b, SHAPE_STATE, "credit_ns"),
    lastNs: getBig(b, SHAPE_STATE, "last_ns"),
    passed: { packets: n("passed_pkts"), bytes: n("passed_bytes") },
    dropped: { packets: n("dropped_pkts"), bytes: n("dropped_bytes") },
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
