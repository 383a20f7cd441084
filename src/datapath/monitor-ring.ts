/** Codecs and the reader of the datapath's monitoring events (bpf/include/stm_mon.h): the
 * lease a monitor writes to stm_mon_cfg (what it wants, until when, how fast), the events it
 * reads from stm_mon_ring, and the counters of what was held back. Layouts are ABI and checked
 * against the C header by test/unit/abi.test.ts. */

import { bytesToIp } from "../netlink/codec";
import { type BpfMap, RingBuffer } from "../sys/bpf";
import { bytes, encode, get, getBig } from "../sys/layout";
import { monotonicNs } from "../sys/os";
import { stmLayout } from "./abi-layouts";
import { readStatArray } from "./counters";
import { dropReasonName } from "./drops";
import { decodeFrame, type FrameSummary } from "./packet";

export const MON_KIND = { drop: 1, log: 2, flow: 3 } as const;
export type MonKind = keyof typeof MON_KIND;
const KIND_NAMES = Object.fromEntries(Object.entries(MON_KIND).map(([k, v]) => [v, k])) as Record<number, MonKind>;

/** struct stm_mon_cfg: a monitor's lease. */
export const MON_CFG = stmLayout("stm_mon_cfg", 40, {
  until_ns: [0, "u64"],
  interval_ns: [8, "u64"],
  burst_ns: [16, "u64"],
  kinds: [24, "u32"],
  ifindex: [28, "u32"],
  net_id: [32, "u32"],
  owner: [36, "u32"],
});
export const MON_CFG_SIZE = MON_CFG.size;

/** struct stm_mon_event: one event of the ring. */
export const MON_EVENT = stmLayout("stm_mon_event", 200, {
  ts_ns: [0, "u64"],
  ifindex: [8, "u32"],
  kind: [12, "u8"],
  hook: [13, "u8"],
  dir: [14, "u8"],
  action: [15, "u8"],
  reason: [16, "u32"],
  rule_id: [20, "u32"],
  len: [24, "u32"],
  snap_len: [28, "u32"],
  family: [32, "u8"],
  proto: [33, "u8"],
  sport: [34, "u16"],
  dport: [36, "u16"],
  src: [40, "u8"],
  dst: [56, "u8"],
  data: [72, "u8"],
});
export const MON_EVENT_SIZE = MON_EVENT.size;
export const MON_SNAP = 128;

/** stm_mon_stats indexes. */
export const MON_STATS = ["emitted", "paced", "ring-full"] as const;

const HOOK_NAMES: Record<number, string> = { 1: "tc-ingress", 2: "tc-egress", 3: "xdp" };
const ACTION_NAMES: Record<number, string> = { 1: "allow", 2: "deny", 3: "reject" };

export interface MonLease {
  kinds: MonKind[];
  /** Lease length: events stop this long after the last renewal. */
  leaseMs?: number;
  /** Events per second per CPU, and how many may come at once. */
  rate: number;
  burst: number;
  ifindex?: number;
  netId?: number;
  owner?: number;
}

export function encodeMonCfg(l: MonLease, nowNs = monotonicNs()): Buffer {
  const interval = BigInt(Math.max(1, Math.round(1e9 / l.rate)));
  return encode(MON_CFG, {
    until_ns: nowNs + BigInt(l.leaseMs ?? 3000) * 1_000_000n,
    interval_ns: interval,
    burst_ns: interval * BigInt(Math.max(0, l.burst - 1)),
    kinds: l.kinds.reduce((m, k) => m | (1 << MON_KIND[k]), 0),
    ifindex: l.ifindex ?? 0,
    net_id: l.netId ?? 0,
    owner: l.owner ?? process.pid,
  });
}

export function decodeMonCfg(b: Buffer): { untilNs: bigint; kinds: number; owner: number } {
  return { untilNs: getBig(b, MON_CFG, "until_ns"), kinds: get(b, MON_CFG, "kinds"), owner: get(b, MON_CFG, "owner") };
}

export interface MonEvent {
  /** bpf_ktime_get_ns() of the event. */
  tsNs: bigint;
  kind: MonKind;
  ifindex: number;
  /** Drops: the hook and the reason. */
  hook?: string;
  reason?: string;
  /** Log and flow events: the rule (or default) that decided, and the direction. */
  ruleId?: number;
  action?: string;
  dir?: "ingress" | "egress";
  len: number;
  packet: FrameSummary;
}

export function decodeMonEvent(b: Buffer): MonEvent {
  const f = (field: keyof typeof MON_EVENT.fields) => get(b, MON_EVENT, field);
  const kind = KIND_NAMES[f("kind")] ?? "drop";
  const ev: MonEvent = { tsNs: getBig(b, MON_EVENT, "ts_ns"), kind, ifindex: f("ifindex"), len: f("len"), packet: {} };
  if (kind === "drop") {
    ev.hook = HOOK_NAMES[f("hook")] ?? String(f("hook"));
    ev.reason = dropReasonName(f("reason"));
    ev.packet = decodeFrame(bytes(b, MON_EVENT, "data", Math.min(f("snap_len"), MON_SNAP)));
    return ev;
  }
  ev.ruleId = f("rule_id");
  ev.action = ACTION_NAMES[f("action")] ?? String(f("action"));
  ev.dir = f("dir") === 1 ? "egress" : "ingress";
  const family = f("family") === 6 ? 6 : 4;
  const proto = f("proto");
  const sport = f("sport");
  const dport = f("dport");
  const n = family === 4 ? 4 : 16;
  ev.packet = {
    family,
    src: bytesToIp(bytes(b, MON_EVENT, "src", n)),
    dst: bytesToIp(bytes(b, MON_EVENT, "dst", n)),
    proto,
    ...(proto === 1 || proto === 58 ? { icmpType: sport, icmpCode: dport } : { sport, dport }),
  };
  return ev;
}

/** Sums of stm_mon_stats over CPUs, by name. */
export function readMonStats(m: BpfMap): Record<(typeof MON_STATS)[number], number> {
  return readStatArray(m, MON_STATS);
}

const ZERO = Buffer.alloc(4);

/** Holds the monitoring lease on a set of pinned maps and reads their events: the lease is
 * renewed by renew() (call it about every second) and given up by close(). One monitor at a
 * time: the ring buffer has one reader. */
export class MonitorSession implements Disposable {
  readonly #cfg: BpfMap;
  readonly #ring: RingBuffer;
  readonly #lease: MonLease;

  constructor(cfg: BpfMap, ring: BpfMap, lease: MonLease, onEvent: (e: MonEvent, raw: Buffer) => void) {
    this.#cfg = cfg;
    this.#lease = lease;
    this.#ring = new RingBuffer(ring.fd, (d) => onEvent(decodeMonEvent(d), d));
  }

  /** Who holds the lease now, when it is someone else and still valid. */
  static holder(cfg: BpfMap): number | undefined {
    const v = cfg.lookup(ZERO);
    if (!v) return undefined;
    const c = decodeMonCfg(v);
    return c.untilNs > monotonicNs() && c.owner !== process.pid && c.kinds !== 0 ? c.owner : undefined;
  }

  renew(): void {
    this.#cfg.update(ZERO, encodeMonCfg(this.#lease));
  }

  /** Waits up to `ms` for events and hands them to the callback; returns how many. */
  poll(ms: number): number {
    return this.#ring.poll(ms);
  }

  get epollFd(): number {
    return this.#ring.epollFd;
  }

  consume(): number {
    return this.#ring.consume();
  }

  close(): void {
    try {
      this.#cfg.update(ZERO, Buffer.alloc(MON_CFG_SIZE));
    } finally {
      this.#ring.close();
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
