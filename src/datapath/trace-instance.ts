/** The datapath half of `trace`: a second instance of the port programs, loaded from the same
 * object bytes as the live one. It shares the live configuration maps through their pins
 * (ports, profiles, local addresses, blocklist, firewall scopes and generations: read only by
 * the programs) and has its own small state maps (drop and hit counters, conntrack, fragments,
 * port and monitoring counters). A traced packet therefore runs the real code against the real
 * configuration with BPF_PROG_TEST_RUN, and nothing live traffic sees or counts changes: the
 * conntrack entries a trace needs are copied in from the live table first. */
import { existsSync } from "node:fs";
import { StratumError } from "../errors";
import { ipToBytes } from "../netlink/codec";
import { BpfMap, type BpfObject, Fd, objGet, progInfo, testRun } from "../sys/bpf";
import { alloc, get, SK_BUFF } from "../sys/layout";
import { dropReasonName } from "./drops";
import { decodeScope, encodeU32 } from "./firewall-maps";
import { TRACE_SHARED_MAPS, TRACE_SIZES } from "./map-roles";
import { loadObject } from "./objects";

export { TRACE_SHARED_MAPS };

export type TraceProgram = "stm_port_in" | "stm_port_out" | "stm_uplink_out" | "stm_overlay_out";

/** tc verdicts a traced program returns. */
export const TC = { NEXT: -1, OK: 0, SHOT: 2, REDIRECT: 7 } as const;

export const CT_STATES: Record<number, string> = {
  1: "syn-sent",
  2: "established",
  3: "closing",
  4: "closed",
  5: "open",
};

export interface CtEntry {
  state: string;
  /** The rule that allowed the flow (FW_DEFAULT_ID | scope: the default action). */
  ruleId: number;
  replied: boolean;
  expiresNs: bigint;
}

export interface StageRun {
  retval: number;
  /** The frame after the program (a reject turns it into the answer). */
  dataOut: Buffer;
  /** Drop reasons counted, by name. */
  drops: string[];
  /** Firewall hit counters that moved: rule ids (or FW_DEFAULT_ID | scope). */
  hits: number[];
  /** stm_fw_stats indexes that moved. */
  fwStats: number[];
  /** skb->mark as the program left it (a port's microsegmentation stamp). */
  mark: number;
  /** Microsegmentation hit counters that moved: entry ids (0: no entry, denied). */
  msegHits: number[];
}

/** The key of a flow in stm_ct (struct stm_ct_key): the two sides in the datapath's canonical
 * order (the smaller address, read as two little-endian words, then the smaller port, first). */
export function ctKey(
  ifindex: number,
  family: 4 | 6,
  proto: number,
  src: string,
  dst: string,
  sport: number,
  dport: number,
): Buffer {
  const a16 = Buffer.alloc(16);
  const b16 = Buffer.alloc(16);
  ipToBytes(src).copy(a16);
  ipToBytes(dst).copy(b16);
  const [s0, s1, d0, d1] = [
    a16.readBigUInt64LE(0),
    a16.readBigUInt64LE(8),
    b16.readBigUInt64LE(0),
    b16.readBigUInt64LE(8),
  ];
  const srcA = s0 < d0 || (s0 === d0 && (s1 < d1 || (s1 === d1 && sport <= dport)));
  const k = Buffer.alloc(44);
  k.writeUInt32LE(ifindex, 0);
  k.writeUInt8(family, 4);
  k.writeUInt8(proto, 5);
  (srcA ? a16 : b16).copy(k, 8);
  (srcA ? b16 : a16).copy(k, 24);
  k.writeUInt16LE(srcA ? sport : dport, 40);
  k.writeUInt16LE(srcA ? dport : sport, 42);
  return k;
}

export function decodeCt(v: Buffer): CtEntry {
  return {
    expiresNs: v.readBigUInt64LE(0),
    ruleId: v.readUInt32LE(12),
    state: CT_STATES[v[16] as number] ?? String(v[16]),
    replied: ((v[17] as number) & 2) !== 0,
  };
}

export class TraceDatapath implements Disposable {
  readonly #obj: BpfObject;
  readonly #liveCt: BpfMap | undefined;
  readonly #liveMsegCt: BpfMap | undefined;

  private constructor(obj: BpfObject, liveCt: BpfMap | undefined, liveMsegCt: BpfMap | undefined) {
    this.#obj = obj;
    this.#liveCt = liveCt;
    this.#liveMsegCt = liveMsegCt;
  }

  /** Loads the trace instance against the maps pinned under `pinRoot`. */
  static open(pinRoot: string): TraceDatapath {
    const dir = `${pinRoot}/maps`;
    const missing = TRACE_SHARED_MAPS.filter((m) => !existsSync(`${dir}/${m}`));
    if (missing.length)
      throw new StratumError(
        "NOT_FOUND",
        `no Stratum datapath pinned at ${pinRoot} (missing ${missing.join(", ")}): has the agent run on this node? (--pin-root)`,
      );
    const held: Fd[] = [];
    try {
      const obj = loadObject("port", {
        prepare: (o) => {
          for (const m of TRACE_SHARED_MAPS) {
            const fd = new Fd(objGet(`${dir}/${m}`, "map"));
            held.push(fd);
            o.reuseMap(m, fd.fd);
          }
          for (const [m, n] of Object.entries(TRACE_SIZES)) if (o.mapNames().includes(m)) o.setMaxEntries(m, n);
        },
      });
      const liveCt = existsSync(`${dir}/stm_ct`) ? BpfMap.openPinned(`${dir}/stm_ct`) : undefined;
      const liveMsegCt = existsSync(`${dir}/stm_mseg_ct`) ? BpfMap.openPinned(`${dir}/stm_mseg_ct`) : undefined;
      return new TraceDatapath(obj, liveCt, liveMsegCt);
    } finally {
      for (const f of held) f.close();
    }
  }

  /** Forgets what earlier traces left in the trace's own maps (flows, fragments, counters). */
  reset(): void {
    for (const name of ["stm_ct", "stm_frags", "stm_drops", "stm_fw_hits", "stm_mseg_ct", "stm_mseg_hits"]) {
      const m = this.#obj.map(name);
      for (const k of [...m.keys()]) m.delete(k);
    }
  }

  /** Whether a firewall scope enforces (has rules or denies by default), as the kernel has it. */
  scopeOn(scopeId: number): boolean {
    const v = this.#obj.map("stm_fw_scopes").lookup(encodeU32(scopeId));
    return !!v && decodeScope(v).on;
  }

  /** Tag (instruction hash) of one of the trace's programs. */
  tag(prog: TraceProgram): string {
    return progInfo(this.#obj.program(prog).fd).tag;
  }

  /** Copies the live conntrack entry of a flow (if any) into the trace's table; returns it. */
  seedFlow(key: Buffer): CtEntry | undefined {
    const v = this.#liveCt?.lookup(key);
    if (!v) return undefined;
    this.#obj.map("stm_ct").update(key, v);
    return decodeCt(v);
  }

  /** Copies the live microsegmentation flow entry (if any) into the trace's table; whether there was one. */
  seedMsegFlow(key: Buffer): boolean {
    const v = this.#liveMsegCt?.lookup(key);
    if (v) this.#obj.map("stm_mseg_ct").update(key, v);
    return !!v;
  }

  /** The trace's own conntrack entry of a flow, after a stage. */
  flow(key: Buffer): CtEntry | undefined {
    const v = this.#obj.map("stm_ct").lookup(key);
    return v ? decodeCt(v) : undefined;
  }

  /** Runs one program on `frame` as it would run on device `ifindex` (for port egress,
   * `ingressIfindex` is the device the frame entered the host on) and reports what it
   * counted. The trace's counters are emptied first. */
  run(prog: TraceProgram, frame: Buffer, ifindex: number, ingressIfindex = 0, mark = 0): StageRun {
    const drops = this.#obj.map("stm_drops");
    const hits = this.#obj.map("stm_fw_hits");
    const msegHits = this.#obj.map("stm_mseg_hits");
    for (const m of [drops, hits, msegHits]) for (const k of [...m.keys()]) m.delete(k);
    const stats = this.#obj.map("stm_fw_stats");
    const statsBefore = this.#statValues(stats);
    const r = testRun(this.#obj.program(prog).fd, {
      data: frame,
      ctx: alloc(SK_BUFF, { ifindex, ingress_ifindex: ingressIfindex, mark }),
    });
    const statsAfter = this.#statValues(stats);
    return {
      retval: r.retval,
      dataOut: r.dataOut,
      drops: [...drops.keys()].map((k) => dropReasonName(k.readUInt32LE(4))),
      hits: [...hits.keys()].map((k) => k.readUInt32LE(0)),
      fwStats: statsAfter.flatMap((v, i) => (v !== statsBefore[i] ? [i] : [])),
      mark: r.ctxOut ? get(r.ctxOut, SK_BUFF, "mark") : mark,
      msegHits: [...msegHits.keys()].map((k) => k.readUInt32LE(0)),
    };
  }

  #statValues(m: BpfMap): number[] {
    const out: number[] = [];
    for (let i = 0; i < m.info.maxEntries; i++) {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(i);
      out.push((m.lookupPerCpu(k) ?? []).reduce((a, v) => a + Number(v.readBigUInt64LE(0)), 0));
    }
    return out;
  }

  close(): void {
    this.#liveCt?.close();
    this.#liveMsegCt?.close();
    this.#obj.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
