/** Codecs and the reader of the datapath's monitoring events (bpf/include/stm_mon.h): the
 * lease a monitor writes to stm_mon_cfg (what it wants, until when, how fast), the events it
 * reads from stm_mon_ring, and the counters of what was held back. Layouts are ABI and checked
 * against the C header by test/unit/abi.test.ts. */
import { bytesToIp } from "../netlink/codec";
import { type BpfMap, RingBuffer } from "../sys/bpf";
import { monotonicNs } from "../sys/os";
import { dropReasonName } from "./drops";
import { decodeFrame, type FrameSummary } from "./packet";

export const MON_KIND = { drop: 1, log: 2, flow: 3 } as const;
export type MonKind = keyof typeof MON_KIND;
const KIND_NAMES = Object.fromEntries(Object.entries(MON_KIND).map(([k, v]) => [v, k])) as Record<number, MonKind>;

export const MON_CFG_SIZE = 40;
export const MON_CFG_LAYOUT = {
  until_ns: 0,
  interval_ns: 8,
  burst_ns: 16,
  kinds: 24,
  ifindex: 28,
  net_id: 32,
  owner: 36,
} as const;

export const MON_EVENT_SIZE = 200;
export const MON_EVENT_LAYOUT = {
  ts_ns: 0,
  ifindex: 8,
  kind: 12,
  hook: 13,
  dir: 14,
  action: 15,
  reason: 16,
  rule_id: 20,
  len: 24,
  snap_len: 28,
  family: 32,
  proto: 33,
  sport: 34,
  dport: 36,
  src: 40,
  dst: 56,
  data: 72,
} as const;
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
  const b = Buffer.alloc(MON_CFG_SIZE);
  const L = MON_CFG_LAYOUT;
  const interval = BigInt(Math.max(1, Math.round(1e9 / l.rate)));
  b.writeBigUInt64LE(nowNs + BigInt(l.leaseMs ?? 3000) * 1_000_000n, L.until_ns);
  b.writeBigUInt64LE(interval, L.interval_ns);
  b.writeBigUInt64LE(interval * BigInt(Math.max(0, l.burst - 1)), L.burst_ns);
  b.writeUInt32LE(
    l.kinds.reduce((m, k) => m | (1 << MON_KIND[k]), 0),
    L.kinds,
  );
  b.writeUInt32LE(l.ifindex ?? 0, L.ifindex);
  b.writeUInt32LE(l.netId ?? 0, L.net_id);
  b.writeUInt32LE(l.owner ?? process.pid, L.owner);
  return b;
}

export function decodeMonCfg(b: Buffer): { untilNs: bigint; kinds: number; owner: number } {
  return {
    untilNs: b.readBigUInt64LE(MON_CFG_LAYOUT.until_ns),
    kinds: b.readUInt32LE(MON_CFG_LAYOUT.kinds),
    owner: b.readUInt32LE(MON_CFG_LAYOUT.owner),
  };
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
  const L = MON_EVENT_LAYOUT;
  const kind = KIND_NAMES[b[L.kind] as number] ?? "drop";
  const ev: MonEvent = {
    tsNs: b.readBigUInt64LE(L.ts_ns),
    kind,
    ifindex: b.readUInt32LE(L.ifindex),
    len: b.readUInt32LE(L.len),
    packet: {},
  };
  if (kind === "drop") {
    ev.hook = HOOK_NAMES[b[L.hook] as number] ?? String(b[L.hook]);
    ev.reason = dropReasonName(b.readUInt32LE(L.reason));
    const n = Math.min(b.readUInt32LE(L.snap_len), MON_SNAP);
    ev.packet = decodeFrame(b.subarray(L.data, L.data + n));
    return ev;
  }
  ev.ruleId = b.readUInt32LE(L.rule_id);
  ev.action = ACTION_NAMES[b[L.action] as number] ?? String(b[L.action]);
  ev.dir = b[L.dir] === 1 ? "egress" : "ingress";
  const family = b[L.family] === 6 ? 6 : 4;
  const proto = b[L.proto] as number;
  const sport = b.readUInt16LE(L.sport);
  const dport = b.readUInt16LE(L.dport);
  ev.packet = {
    family,
    src: bytesToIp(b.subarray(L.src, L.src + (family === 4 ? 4 : 16))),
    dst: bytesToIp(b.subarray(L.dst, L.dst + (family === 4 ? 4 : 16))),
    proto,
    ...(proto === 1 || proto === 58 ? { icmpType: sport, icmpCode: dport } : { sport, dport }),
  };
  return ev;
}

/** Sums of stm_mon_stats over CPUs, by name. */
export function readMonStats(m: BpfMap): Record<(typeof MON_STATS)[number], number> {
  const out = {} as Record<(typeof MON_STATS)[number], number>;
  MON_STATS.forEach((name, i) => {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(i);
    out[name] = (m.lookupPerCpu(k) ?? []).reduce((a, v) => a + Number(v.readBigUInt64LE(0)), 0);
  });
  return out;
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
