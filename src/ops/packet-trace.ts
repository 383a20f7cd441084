/** `trace`: what happens to a packet an endpoint sends, answered by running it through the
 * port programs in the order a real packet meets them (the source's port ingress, then the
 * bridge, the host's routing or the uplink, then the destination's port egress or the
 * uplink's egress) with BPF_PROG_TEST_RUN on a trace instance of the datapath
 * (src/datapath/trace.ts: the live configuration, private counters and conntrack). Each
 * stage reports its verdict, the drop reason, the firewall rule or default that decided and
 * the flow's conntrack state. Runs in the agent (API) or straight from the pins and the state
 * database when the agent is stopped; either way it must run in the node's network namespace.
 *
 * What it does not model: the host's own netfilter rules, and the contents of the workloads'
 * neighbour caches (a destination outside the node is addressed to a placeholder MAC: the
 * programs on its way do not look at it). */

import { existsSync, readFileSync } from "node:fs";
import type { TraceRequest, TraceResult, TraceStage } from "../api/contract";
import { clsProgId, pinnedLinkInfo, progTag } from "../datapath/attach";
import { DROP_REASON_LIST } from "../datapath/drops";
import { FW_DEFAULT_ID, FW_GLOBAL_SCOPE, FW_STATS } from "../datapath/firewall-maps";
import { ETH_P, ethernet, IPPROTO, icmp, ipv4, ipv6, TCP_FLAGS, tcp, udp } from "../datapath/packet";
import { decodeRemote, encodeMacKey, type RemoteEndpoint } from "../datapath/port-maps";
import { type CtEntry, ctKey, TC, TraceDatapath, type TraceProgram } from "../datapath/trace-instance";
import { StratumError } from "../errors";
import type { StoredRule } from "../model/firewall-rule";
import { contains, parseIp, parseSubnet } from "../model/ip";
import { MSEG } from "../model/microseg";
import { profileIp6 } from "../model/network";
import { OVERLAY_DEVICE, USER_BRIDGE } from "../model/topology";
import { getLink, type Rtnl, rtnl } from "../netlink";
import { bytesToIp } from "../netlink/codec";
import { ruleFields } from "../services/firewall-service";
import type { Endpoint, Store, StoredNetwork } from "../store/store";
import { BpfMap } from "../sys/bpf";
import { TRACE_PROTOS, type TraceProto } from "./trace-protos";

export { TRACE_PROTOS, type TraceProto, type TraceRequest, type TraceResult, type TraceStage };

type TraceFirewall = NonNullable<TraceStage["firewall"]>;
type TraceMicroseg = NonNullable<TraceStage["microseg"]>;

/** A stage with every key present: what it does not say is null. */
function stageOf(s: Pick<TraceStage, "step" | "stage" | "verdict"> & Partial<TraceStage>): TraceStage {
  return {
    step: s.step,
    stage: s.stage,
    device: s.device ?? null,
    program: s.program ?? null,
    verdict: s.verdict,
    reason: s.reason ?? null,
    firewall: s.firewall ?? null,
    conntrack: s.conntrack ?? null,
    translation: s.translation ?? null,
    microseg: s.microseg ?? null,
    note: s.note ?? null,
  };
}

/** The source address and port (ICMP echo: identifier) of an Ethernet frame's IP packet, as
 * "a:p" ("[a]:p" for IPv6); null when it is not one. */
function sourceOf(f: Buffer): string | null {
  if (f.length < 34) return null;
  const et = f.readUInt16BE(12);
  let src: string;
  let proto: number;
  let l4: number;
  if (et === 0x0800) {
    src = [...f.subarray(26, 30)].join(".");
    proto = f[23] as number;
    l4 = 14 + ((f[14] as number) & 0xf) * 4;
  } else if (et === 0x86dd && f.length >= 54) {
    src = `[${bytesToIp(f.subarray(22, 38))}]`;
    proto = f[20] as number;
    l4 = 54;
  } else return null;
  if (f.length < l4 + 8) return src;
  const port = proto === 1 || proto === 58 ? f.readUInt16BE(l4 + 4) : f.readUInt16BE(l4);
  return `${src}:${port}`;
}

const FLAG_BITS: Record<string, number> = {
  syn: TCP_FLAGS.SYN,
  ack: TCP_FLAGS.ACK,
  fin: TCP_FLAGS.FIN,
  rst: TCP_FLAGS.RST,
  psh: TCP_FLAGS.PSH,
  urg: 32,
};
const ICMP_ECHO_ID = 0x5354;
/** Placeholder MAC of a destination beyond the uplink (resolved by ARP/ND in real life). */
const OUTSIDE_MAC = "02:00:00:00:00:fe";
const FW_REASONS = new Set(["fw-rule", "fw-default", "fw-reject", "fw-fragment"]);

export function parseFlags(text: string): string[] {
  const flags = text
    .toLowerCase()
    .split(/[,|+ ]+/)
    .filter(Boolean);
  for (const f of flags)
    if (!(f in FLAG_BITS))
      throw new StratumError("INVALID", `unknown TCP flag "${f}" (use ${Object.keys(FLAG_BITS).join(", ")})`);
  return flags;
}

interface Place {
  ep?: Endpoint;
  net?: StoredNetwork;
  ifindex?: number;
}

export class Tracer {
  readonly #store: Store;
  readonly #pinRoot: string;
  readonly #nl: Rtnl;
  /** Kept loaded between traces (the agent): loading the programs is most of a trace's cost. */
  readonly #keep: boolean;
  #dp: TraceDatapath | undefined;
  /** The networks, read once per trace. */
  #nets: StoredNetwork[] = [];

  constructor(store: Store, pinRoot: string, o: { nl?: Rtnl; keepLoaded?: boolean } = {}) {
    this.#store = store;
    this.#pinRoot = pinRoot;
    this.#nl = o.nl ?? rtnl();
    this.#keep = !!o.keepLoaded;
  }

  close(): void {
    this.#dp?.close();
    this.#dp = undefined;
  }

  #datapath(): TraceDatapath {
    if (!this.#dp) this.#dp = TraceDatapath.open(this.#pinRoot);
    else this.#dp.reset();
    return this.#dp;
  }

  trace(req: TraceRequest): TraceResult {
    try {
      return this.#trace(req, this.#datapath());
    } finally {
      if (!this.#keep) this.close();
    }
  }

  #epIp(ep: Endpoint, n: StoredNetwork, v6: boolean): string {
    if (!v6) return ep.ip;
    if (!n.cidr6) throw new StratumError("INVALID", `network ${n.name} of ${ep.name} has no IPv6 subnet`);
    return profileIp6(n.cidr6, ep.mac);
  }

  /** This node's overlay entry for another node's endpoint (read from the live map). */
  #remoteEntry(mac: string): RemoteEndpoint | undefined {
    const path = `${this.#pinRoot}/maps/stm_remote`;
    if (!existsSync(path)) return undefined;
    const m = BpfMap.openPinned(path);
    try {
      const v = m.lookup(encodeMacKey(mac));
      return v ? decodeRemote(v) : undefined;
    } finally {
      m.close();
    }
  }

  #ifindex(ep: Endpoint): number {
    const l = getLink(ep.hostIf, this.#nl);
    if (!l)
      throw new StratumError(
        "NOT_FOUND",
        `port ${ep.hostIf} of endpoint ${ep.name} does not exist here (run trace in the node's network namespace)`,
      );
    return l.index;
  }

  /** The endpoint holding `ip` on this node, if any. */
  #endpointAt(ip: string, nets: Map<string, StoredNetwork>): Endpoint | undefined {
    const want = parseIp(ip);
    for (const ep of this.#store.listEndpoints()) {
      const n = nets.get(ep.network);
      if (!n) continue;
      if (want.family === 4 && ep.ip === ip) return ep;
      if (want.family === 6 && n.cidr6 && parseIp(profileIp6(n.cidr6, ep.mac)).value === want.value) return ep;
    }
    return undefined;
  }

  #ruleOf(id: number): { scope: string; rule?: StoredRule } {
    if (id & FW_DEFAULT_ID) {
      const scope = (id & ~FW_DEFAULT_ID) >>> 0;
      return { scope: this.#scopeName(scope) };
    }
    for (const s of [FW_GLOBAL_SCOPE, ...this.#nets.map((n) => n.id)]) {
      const r = this.#store.listRules(s).find((x) => x.id === id);
      if (r) return { scope: this.#scopeName(s), rule: r };
    }
    return { scope: "?" };
  }

  #scopeName(id: number): string {
    return id === FW_GLOBAL_SCOPE ? "global" : (this.#nets.find((n) => n.id === id)?.name ?? `#${id}`);
  }

  #uplink(): { name: string; ifindex: number } | undefined {
    const ifindex = pinnedLinkInfo(`${this.#pinRoot}/links/uplink-tc-out`)?.ifindex;
    const l = ifindex ? getLink(ifindex, this.#nl) : null;
    return l && ifindex ? { name: l.name, ifindex } : undefined;
  }

  #liveTag(ifindex: number): { id?: number; tag?: string } {
    const id = clsProgId(ifindex, "ingress");
    if (!id) return {};
    const tag = progTag(id);
    return tag ? { id, tag } : { id };
  }

  /** `viaVip`: a trace of a VIP's translated packet (the load balancer ran at the first port).
   * `dsr`: the backend a DSR VIP's frame goes to (its MAC), the VIP kept as destination. */
  #trace(req: TraceRequest, dp: TraceDatapath, viaVip = false, dsr?: Endpoint): TraceResult {
    this.#nets = this.#store.listNetworks();
    const nets = new Map(this.#nets.map((n) => [n.name, n]));
    const srcEp = this.#store.getEndpoint(req.from);
    if (!srcEp) throw new StratumError("NOT_FOUND", `endpoint ${req.from} does not exist`);
    const srcNet = nets.get(srcEp.network) as StoredNetwork;
    if (!req.to === !req.toEndpoint) throw new StratumError("INVALID", "give one of --to IP or --to-endpoint NAME");
    let v6 = !!req.ipv6;
    let dstIp: string;
    let dst: Place = {};
    if (req.toEndpoint) {
      const ep = this.#store.getEndpoint(req.toEndpoint);
      if (!ep) throw new StratumError("NOT_FOUND", `endpoint ${req.toEndpoint} does not exist`);
      if (ep.name === srcEp.name) throw new StratumError("INVALID", "--from and --to-endpoint are the same endpoint");
      dst = { ep, net: nets.get(ep.network) };
      dstIp = this.#epIp(ep, dst.net as StoredNetwork, v6);
    } else {
      dstIp = req.to as string;
      try {
        v6 = parseIp(dstIp).family === 6;
      } catch {
        throw new StratumError("INVALID", `--to ${dstIp} is not an IP address`);
      }
      const ep = dsr ?? this.#endpointAt(dstIp, nets);
      if (ep) dst = { ep, net: nets.get(ep.network) };
    }
    const proto: TraceProto = req.proto ?? (req.dport !== undefined ? "tcp" : v6 ? "icmpv6" : "icmp");
    if (proto === "icmp" && v6) throw new StratumError("INVALID", "icmp is IPv4: use --proto icmpv6 with IPv6");
    if (proto === "icmpv6" && !v6) throw new StratumError("INVALID", "icmpv6 needs IPv6 addresses (-6)");
    const srcIp = req.src ?? this.#epIp(srcEp, srcNet, v6);
    if (parseIp(srcIp).family !== (v6 ? 6 : 4))
      throw new StratumError("INVALID", `source ${srcIp} and destination ${dstIp} are of different families`);
    const srcIfindex = this.#ifindex(srcEp);
    const bridge = getLink(USER_BRIDGE, this.#nl);
    if (!bridge)
      throw new StratumError(
        "NOT_FOUND",
        `${USER_BRIDGE} does not exist here (run trace in the node's network namespace)`,
      );
    const bridgeMac = bridge.mac ?? "00:00:00:00:00:00";
    // Another node's endpoint has its port there: here it is reached through the overlay.
    const remote = dst.ep && dst.ep.node !== undefined && dst.ep.node !== this.#store.node;
    if (dst.ep && !remote) dst.ifindex = this.#ifindex(dst.ep);

    // L2: the source addresses a neighbour on its subnet directly, anything else via its gateway.
    const srcCidr = v6 ? srcNet.cidr6 : srcNet.cidr;
    // A DSR frame goes to its backend's MAC: bridged, whatever the addresses say.
    const onLink = !!dsr || (!!srcCidr && contains(parseSubnet(srcCidr), parseIp(dstIp)));
    const gateways = [...nets.values()].flatMap((n) => [n.gateway, n.gateway6].filter((g): g is string => !!g));
    const toGateway = gateways.some(
      (g) => parseIp(g).family === parseIp(dstIp).family && parseIp(g).value === parseIp(dstIp).value,
    );
    const dstMac = dsr ? dsr.mac : onLink ? (dst.ep ? dst.ep.mac : toGateway ? bridgeMac : OUTSIDE_MAC) : bridgeMac;

    const sport = proto === "tcp" || proto === "udp" ? (req.sport ?? 40000) : undefined;
    const dport = proto === "tcp" || proto === "udp" ? (req.dport ?? 80) : undefined;
    for (const [n, p] of [
      ["--sport", sport],
      ["--dport", dport],
    ] as const)
      if (p !== undefined && (!Number.isInteger(p) || p < 0 || p > 65535))
        throw new StratumError("INVALID", `${n} ${p} is not a port (0-65535)`);
    const flagNames = proto === "tcp" ? (req.flags?.length ? req.flags : ["syn"]) : [];
    const flagBits = flagNames.reduce((m, f) => m | (FLAG_BITS[f] ?? 0), 0);
    const srcMac = req.srcMac ?? srcEp.mac;
    const frame = (sMac: string, dMac: string) => {
      const ipProto = { tcp: IPPROTO.TCP, udp: IPPROTO.UDP, icmp: IPPROTO.ICMP, icmpv6: IPPROTO.ICMPV6 }[proto];
      const l4 =
        proto === "tcp"
          ? tcp({
              src: srcIp,
              dst: dstIp,
              sport: sport as number,
              dport: dport as number,
              flags: flagBits,
              seq: 1000,
              ack: flagBits & TCP_FLAGS.ACK ? 1 : 0,
            })
          : proto === "udp"
            ? udp({ src: srcIp, dst: dstIp, sport: sport as number, dport: dport as number }, Buffer.alloc(16))
            : icmp({ src: srcIp, dst: dstIp, type: v6 ? 128 : 8, id: ICMP_ECHO_ID, seq: 1 }, Buffer.alloc(16));
      const l3 = v6
        ? ipv6({ src: srcIp, dst: dstIp, next: ipProto }, l4)
        : ipv4({ src: srcIp, dst: dstIp, proto: ipProto }, l4);
      return ethernet({ src: sMac, dst: dMac, type: v6 ? ETH_P.IPV6 : ETH_P.IP }, l3);
    };
    const ipProtoNum = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 }[proto];
    const key = (ifindex: number) =>
      ctKey(ifindex, v6 ? 6 : 4, ipProtoNum, srcIp, dstIp, sport ?? ICMP_ECHO_ID, dport ?? ICMP_ECHO_ID);

    const stages: TraceStage[] = [];
    const live = this.#liveTag(srcIfindex);
    const tag = dp.tag("stm_port_in");
    const result = (verdict: TraceResult["verdict"], summary: string, to?: string): TraceResult => ({
      packet: {
        family: v6 ? 6 : 4,
        proto,
        srcMac,
        dstMac,
        src: srcIp,
        dst: dstIp,
        sport: sport ?? null,
        dport: dport ?? null,
        flags: flagNames.length ? flagNames.join("|").toUpperCase() : null,
        bytes: frame(srcMac, dstMac).length,
      },
      stages,
      verdict,
      to: to ?? null,
      summary,
      programs: { tag, liveTag: live.tag ?? null, same: !live.tag || live.tag === tag },
    });

    /** The frame the last stage's program let out, and whether it sent it to a gateway node. */
    let lastOut: Buffer | undefined;
    let toGatewayNode = false;
    /** The mark the source's port put on the packet (its microsegmentation stamp). */
    let mark = 0;
    const mseg = this.#store.getMicroseg();
    const groupOf = (id: number) => ({ group: mseg.groups.find((g) => g.id === id)?.name ?? null, id });
    const runStage = (
      stage: TraceStage["stage"],
      prog: TraceProgram,
      f: Buffer,
      device: NonNullable<TraceStage["device"]>,
      ingressIfindex: number,
      scopeId: number,
    ): TraceStage => {
      const k = key(device.ifindex);
      const before = dp.seedFlow(k);
      const msegTracked = dp.seedMsegFlow(k);
      const r = dp.run(prog, f, device.ifindex, ingressIfindex, stage === "port-egress" ? mark : 0);
      if (stage === "port-ingress") mark = r.mark;
      lastOut = r.dataOut;
      toGatewayNode = r.retval === TC.REDIRECT && r.dataOut.equals(f);
      const after = dp.flow(k);
      const s = stageOf({
        step: stages.length + 1,
        stage,
        device,
        program: {
          name: prog,
          liveId:
            prog !== "stm_uplink_out"
              ? clsProgId(device.ifindex, prog === "stm_port_in" ? "ingress" : "egress") || null
              : null,
        },
        // A redirect of the frame as it came (not an answer): north-south to a gateway node.
        verdict: r.retval === TC.SHOT ? "drop" : r.retval === TC.REDIRECT && !r.dataOut.equals(f) ? "reject" : "pass",
      });
      const reason = r.drops.find((d) => d !== "fw-reject") ?? r.drops[0];
      if (reason && s.verdict !== "pass") {
        s.reason = { name: reason, description: DROP_REASON_LIST.find((d) => d.name === reason)?.description ?? "" };
      }
      s.firewall = this.#firewallOf(r.hits, scopeId, dp.scopeOn(scopeId), before, after, s.verdict, reason) ?? null;
      s.microseg = this.#msegOf(stage, r, mark, device, s.verdict, reason, msegTracked, groupOf) ?? null;
      const events = r.fwStats.map((i) => FW_STATS[i] ?? String(i)).filter((e) => e !== "reject-sent");
      s.conntrack =
        before || after || events.length
          ? {
              before: before?.state ?? null,
              after: after?.state ?? null,
              event: events.length ? events.join(", ") : null,
            }
          : null;
      if (s.verdict === "reject") s.note = `answered: ${describeReply(r.dataOut)} goes back to the sender`;
      stages.push(s);
      return s;
    };

    // The overlay: the bridge's FDB entry to cnv-vxlan0, its egress program (remote node, VNI),
    // then the other node's port, which only that node can trace.
    const overlayHop = (ep: Endpoint, net: StoredNetwork): TraceResult => {
      const dev = getLink(OVERLAY_DEVICE, this.#nl);
      const entry = this.#remoteEntry(ep.mac);
      stages.push(
        stageOf({
          step: stages.length + 1,
          stage: "bridge",
          verdict: "forward",
          note: `${USER_BRIDGE}: FDB entry ${ep.mac} → ${OVERLAY_DEVICE} (${ep.name} runs on node ${ep.node})`,
        }),
      );
      if (!dev) {
        stages.push(
          stageOf({
            step: stages.length + 1,
            stage: "overlay",
            verdict: "drop",
            note: `${OVERLAY_DEVICE} does not exist on this node: ${ep.name} (node ${ep.node}) is out of reach`,
          }),
        );
        return result("dropped", `dropped: no overlay on this node to reach ${ep.name} on node ${ep.node}`);
      }
      const s = runStage(
        "overlay",
        "stm_overlay_out",
        frame(srcMac, dstMac),
        { name: OVERLAY_DEVICE, ifindex: dev.index, endpoint: null, network: net.name },
        srcIfindex,
        net.id,
      );
      if (s.verdict !== "pass") return this.#stop(s, result);
      s.note = entry
        ? `to node ${ep.node} at ${entry.node}, VNI ${entry.vni}, through ${OVERLAY_DEVICE}; its port's programs judge it there (trace on node ${ep.node})`
        : `to node ${ep.node} through ${OVERLAY_DEVICE}`;
      const carried = msegGroup(mark);
      if (carried)
        s.microseg = {
          source: groupOf(carried),
          destination: null,
          decision: "carried",
          action: null,
          entry: null,
        };
      return result(
        "delivered",
        `sent to node ${ep.node} (${entry?.node ?? "?"}, VNI ${entry?.vni ?? "?"}) for ${ep.name} (${dstIp}); its port there decides the rest`,
        `node ${ep.node}`,
      );
    };

    // 1. The source's port, ingress: port security, then its network's firewall (its egress rules).
    const srcDev = { name: srcEp.hostIf, ifindex: srcIfindex, endpoint: srcEp.name, network: srcNet.name };
    const first = runStage("port-ingress", "stm_port_in", frame(srcMac, dstMac), srcDev, 0, srcNet.id);
    if (first.verdict !== "pass") return this.#stop(first, result);
    // A VIP's packet leaves the port with its backend's address: the rest of the path is that
    // packet's (its first stage, the port again, judges it as the firewall did).
    const out = lastOut && !viaVip && (proto === "tcp" || proto === "udp") ? readDst(lastOut) : undefined;
    if (out && (out.ip !== dstIp || out.port !== dport)) {
      const vip = this.#store.getLb().vips.find((v) => v.address === dstIp && v.port === dport && v.proto === proto);
      const backend = [...this.#store.listEndpoints()].find(
        (e) => this.#epIp(e, nets.get(e.network) as StoredNetwork, v6) === out.ip,
      );
      const rest = this.#trace({ ...req, to: out.ip, toEndpoint: undefined, dport: out.port }, dp, true);
      const what = `load balancer: VIP ${vip?.name ?? dstIp} (${dstIp}:${dport}/${proto}) → backend ${backend?.name ?? out.ip} (${out.ip}:${out.port})`;
      const head = rest.stages[0];
      if (head) head.note = head.note ? `${what}; ${head.note}` : what;
      return { ...rest, packet: result("delivered", "").packet, summary: `${what}; ${rest.summary}` };
    }
    // A DSR VIP's frame leaves the port to its backend's MAC, the VIP kept.
    const dsrVip =
      lastOut && !viaVip && out && out.ip === dstIp
        ? this.#store
            .getLb()
            .vips.find((v) => v.mode === "dsr" && v.address === dstIp && v.port === dport && v.proto === proto)
        : undefined;
    if (dsrVip && lastOut) {
      const mac = [...lastOut.subarray(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");
      const backend = [...this.#store.listEndpoints()].find((e) => e.mac === mac);
      if (backend && mac !== dstMac) {
        const rest = this.#trace(req, dp, true, backend);
        const what = `load balancer (DSR): VIP ${dsrVip.name} (${dstIp}:${dport}/${proto}) → backend ${backend.name} (${mac}), the VIP kept`;
        const head = rest.stages[0];
        if (head) head.note = head.note ? `${what}; ${head.note}` : what;
        return { ...rest, summary: `${what}; ${rest.summary}` };
      }
    }
    if (toGatewayNode) {
      stages.push(
        stageOf({
          step: stages.length + 1,
          stage: "overlay",
          verdict: "forward",
          note: `north-south: this node is not a gateway; to a gateway node through ${OVERLAY_DEVICE} (chosen per flow among the live gateways)`,
        }),
      );
      return result(
        "delivered",
        `sent to a gateway node over the overlay towards ${dstIp}; its uplink decides the rest (trace on that node)`,
        "a gateway node",
      );
    }

    // 2. Where the frame goes next.
    const uplink = this.#uplink();
    const toUplink = (f: Buffer, via: string): TraceResult => {
      if (!uplink) {
        stages.push(
          stageOf({
            step: stages.length + 1,
            stage: via === "bridge" ? "bridge" : "host",
            verdict: "drop",
            note: `no endpoint of this node has ${dstIp} and the node has no uplink`,
          }),
        );
        return result("dropped", `dropped: nothing on this node has ${dstIp} and there is no uplink`);
      }
      const s = runStage(
        "uplink-egress",
        "stm_uplink_out",
        f,
        { name: uplink.name, ifindex: uplink.ifindex, endpoint: null, network: null },
        0,
        FW_GLOBAL_SCOPE,
      );
      if (s.verdict !== "pass") return this.#stop(s, result);
      const from = sourceOf(f);
      const to = lastOut ? sourceOf(lastOut) : null;
      if (from && to && from !== to) {
        s.translation = { kind: "masquerade", from, to };
        s.note = `masquerade: ${from} → ${to} (a new flow's port; a live flow keeps the one it has)`;
      }
      return result(
        "delivered",
        `leaves the node on the uplink ${uplink.name} towards ${dstIp}${s.translation ? `, masqueraded to ${to}` : ""}`,
        `uplink ${uplink.name}`,
      );
    };

    if (onLink) {
      if (remote && dst.ep && dst.net?.name === srcNet.name) return overlayHop(dst.ep, dst.net);
      // Bridged to the port: a peer of the network, or a DSR backend of any network here.
      if (dst.ep && dst.net && (dst.net.name === srcNet.name || (dsr && !remote))) {
        stages.push(
          stageOf({
            step: stages.length + 1,
            stage: "bridge",
            verdict: "forward",
            note: `${USER_BRIDGE}: static FDB entry ${dst.ep.mac} → ${dst.ep.hostIf} (${dst.ep.name})`,
          }),
        );
        const dev = {
          name: dst.ep.hostIf,
          ifindex: dst.ifindex as number,
          endpoint: dst.ep.name,
          network: dst.net.name,
        };
        const s = runStage("port-egress", "stm_port_out", frame(srcMac, dstMac), dev, srcIfindex, dst.net.id);
        if (s.verdict !== "pass") return this.#stop(s, result);
        return result("delivered", `delivered to ${dst.ep.name} (${dstIp})`, dst.ep.name);
      }
      if (toGateway) {
        stages.push(
          stageOf({
            step: stages.length + 1,
            stage: "bridge",
            verdict: "deliver",
            note: `${USER_BRIDGE}: to the node itself (gateway ${dstIp})`,
          }),
        );
        return result("delivered", `delivered to the node (gateway ${dstIp})`, "node");
      }
      stages.push(
        stageOf({
          step: stages.length + 1,
          stage: "bridge",
          verdict: "forward",
          note: `${USER_BRIDGE}: ${dstIp} is no endpoint of this node: towards the uplink`,
        }),
      );
      return toUplink(frame(srcMac, dstMac), "bridge");
    }

    // Off-link: to the gateway, then the node's routing.
    stages.push(
      stageOf({
        step: stages.length + 1,
        stage: "bridge",
        verdict: "forward",
        note: `${USER_BRIDGE}: to the gateway (the node routes what is not on ${srcCidr ?? "the subnet"})`,
      }),
    );
    if (toGateway) {
      stages.push(
        stageOf({
          step: stages.length + 1,
          stage: "host",
          verdict: "deliver",
          note: `${dstIp} is a gateway address of this node`,
        }),
      );
      return result("delivered", `delivered to the node (gateway ${dstIp})`, "node");
    }
    const sysctl = v6 ? "/proc/sys/net/ipv6/conf/all/forwarding" : "/proc/sys/net/ipv4/ip_forward";
    const name = v6 ? "net.ipv6.conf.all.forwarding" : "net.ipv4.ip_forward";
    if (readSysctl(sysctl) !== "1") {
      stages.push(
        stageOf({
          step: stages.length + 1,
          stage: "host",
          verdict: "drop",
          reason: { name: "not-forwarded", description: `the node does not route between networks (${name} = 0)` },
        }),
      );
      return result("dropped", `dropped by the node: it does not forward (${name} = 0)`);
    }
    if (remote && dst.ep) {
      stages.push(
        stageOf({
          step: stages.length + 1,
          stage: "host",
          verdict: "drop",
          reason: {
            name: "overlay-routed",
            description: DROP_REASON_LIST.find((d) => d.name === "overlay-routed")?.description ?? "",
          },
          note: `${dst.ep.name} runs on node ${dst.ep.node}: the overlay carries a network's own frames, not routed ones`,
        }),
      );
      return result("dropped", `dropped: ${dst.ep.name} is on node ${dst.ep.node}, reached by its own network only`);
    }
    if (dst.ep && dst.net) {
      stages.push(
        stageOf({
          step: stages.length + 1,
          stage: "host",
          verdict: "forward",
          note: `routed by the node to ${dst.net.name}, out ${USER_BRIDGE} to ${dst.ep.name}`,
        }),
      );
      const dev = { name: dst.ep.hostIf, ifindex: dst.ifindex as number, endpoint: dst.ep.name, network: dst.net.name };
      const s = runStage("port-egress", "stm_port_out", frame(bridgeMac, dst.ep.mac), dev, bridge.index, dst.net.id);
      if (s.verdict !== "pass") return this.#stop(s, result);
      return result("delivered", `delivered to ${dst.ep.name} (${dstIp}), routed by the node`, dst.ep.name);
    }
    stages.push(
      stageOf({
        step: stages.length + 1,
        stage: "host",
        verdict: "forward",
        note: `routed by the node (${name} = 1) towards ${dstIp}`,
      }),
    );
    return toUplink(frame(bridgeMac, OUTSIDE_MAC), "host");
  }

  #stop(s: TraceStage, result: (v: TraceResult["verdict"], summary: string) => TraceResult): TraceResult {
    const where = `${stageName(s.stage)} of ${s.device?.endpoint ?? s.device?.name}`;
    if (s.verdict === "reject")
      return result("rejected", `rejected at ${where}: ${s.note?.replace(/^answered: /, "") ?? ""}`.trim());
    return result(
      "dropped",
      `dropped at ${where}: ${s.reason?.name ?? "unknown"}${s.reason?.description ? ` (${s.reason.description})` : ""}`,
    );
  }

  /** Microsegmentation at a stage: the stamp at the source's port, the policy's decision at the
   * destination's. */
  #msegOf(
    stage: TraceStage["stage"],
    r: { msegHits: number[] },
    mark: number,
    device: { ifindex: number; endpoint: string | null },
    verdict: TraceStage["verdict"],
    reason: string | undefined,
    tracked: boolean,
    groupOf: (id: number) => { group: string | null; id: number },
  ): TraceMicroseg | undefined {
    const doc = this.#store.getMicroseg();
    const on = doc.groups.length > 0;
    const source = groupOf(msegGroup(mark));
    if (stage === "port-ingress")
      return on ? { source, destination: null, decision: "stamped", action: null, entry: null } : undefined;
    if (stage !== "port-egress" || !device.endpoint) return undefined;
    const ep = this.#store.getEndpoint(device.endpoint);
    const dst = ep?.group ? (doc.groups.find((g) => g.name === ep.group)?.id ?? 0) : 0;
    const destination = groupOf(dst);
    const base = { source, destination, entry: null };
    if (!on) return { ...base, decision: "off", action: null };
    if (reason && reason !== "microseg-deny" && verdict !== "pass") return undefined; // stopped before it
    if (!dst) return { ...base, decision: "not-segmented", action: null };
    const id = r.msegHits[0];
    if (id !== undefined) {
      const e = doc.rules.find((x) => x.id === id);
      if (!e) return { ...base, decision: "default", action: "deny" };
      return {
        ...base,
        decision: "entry",
        action: e.action,
        entry: { id: e.id, from: e.from, to: e.to, action: e.action, proto: e.proto ?? null, dport: e.dport ?? null },
      };
    }
    if (verdict === "pass") return { ...base, decision: tracked ? "tracked" : "failsafe", action: "allow" };
    return { ...base, decision: "tracked", action: "deny" };
  }

  #firewallOf(
    hits: number[],
    scopeId: number,
    enforces: boolean,
    before: CtEntry | undefined,
    after: CtEntry | undefined,
    verdict: TraceStage["verdict"],
    reason: string | undefined,
  ): TraceFirewall | undefined {
    const scope = this.#scopeName(scopeId);
    const id = hits[0];
    if (id !== undefined) {
      const { scope: s, rule } = this.#ruleOf(id);
      if (rule)
        return {
          scope: s,
          decision: "rule",
          action: rule.action,
          rule: { id: rule.id, priority: rule.priority, spec: ruleFields(rule) },
        };
      return {
        scope: s,
        decision: "default",
        action: this.#store.scopeDefault((id & ~FW_DEFAULT_ID) >>> 0),
        rule: null,
      };
    }
    if (reason && !FW_REASONS.has(reason)) return undefined; // stopped before the firewall
    if (reason && FW_REASONS.has(reason)) {
      // Decided without a hit: a tracked flow the rules now deny, or a fragment.
      const r = before ? this.#ruleOf(before.ruleId) : undefined;
      return {
        scope,
        decision: before ? "tracked" : "default",
        action: "deny",
        rule: r?.rule ? { id: r.rule.id, priority: r.rule.priority, spec: ruleFields(r.rule) } : null,
      };
    }
    const allow = (decision: TraceFirewall["decision"]): TraceFirewall => ({
      scope,
      decision,
      action: "allow",
      rule: null,
    });
    if (verdict === "pass" && before) return allow("tracked");
    if (verdict === "pass" && !after && enforces) return allow("failsafe");
    if (verdict === "pass" && !enforces) return allow("no-policy");
    return allow("tracked");
  }
}

/** The group a mark carries (0: untagged). */
function msegGroup(mark: number): number {
  return mark >>> MSEG.MARK_SHIFT === MSEG.MARK_TAG ? mark & MSEG.GROUP_MASK : MSEG.UNTAGGED;
}

function readSysctl(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return "0";
  }
}

export function stageName(s: TraceStage["stage"]): string {
  return {
    "port-ingress": "port ingress",
    bridge: "bridge",
    host: "host",
    "port-egress": "port egress",
    "uplink-egress": "uplink egress",
    overlay: "overlay",
  }[s];
}

/** "a TCP reset" / "an ICMP administratively-prohibited" from the answer a reject built. */
/** The destination address and port of a frame's TCP or UDP packet (no IPv4 options, no IPv6
 * extension headers: what the trace builds). */
function readDst(f: Buffer): { ip: string; port: number } | undefined {
  const v6 = f.readUInt16BE(12) === ETH_P.IPV6;
  const l4 = 14 + (v6 ? 40 : 20);
  if (f.length < l4 + 4) return undefined;
  return { ip: bytesToIp(f.subarray(v6 ? 38 : 30, v6 ? 54 : 34)), port: f.readUInt16BE(l4 + 2) };
}

function describeReply(f: Buffer): string {
  const type = f.length >= 14 ? f.readUInt16BE(12) : 0;
  const proto = type === ETH_P.IP ? f[23] : type === ETH_P.IPV6 ? f[20] : undefined;
  if (proto === IPPROTO.TCP) return "a TCP reset";
  if (proto === IPPROTO.ICMP) return "an ICMP unreachable (administratively prohibited)";
  if (proto === IPPROTO.ICMPV6) return "an ICMPv6 unreachable (administratively prohibited)";
  return "an answer";
}
