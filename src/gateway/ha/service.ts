/** The gateway HA engine of a node (docs/gateway.md#how-a-group-fails-over): one GroupMachine
 * per gateway group this node is in, their heartbeat over UDP on cnv-mgmt-br0 (port 7480,
 * each advert signed with the group's HMAC key), their lease in etcd (a client of its own with
 * deadlines shorter than a hold), and what taking or losing a group does to this node: the
 * VIPs on cnv-user-br0 (IFA_PROTO "VIP"), their deadline in the datapath (stm_vip) and their
 * announcement (gratuitous ARP, unsolicited NA; at once, then again after 0.1, 0.25, 0.5, 1, 2
 * and 5 s, as VRRP routers repeat theirs). */

import { createHmac, timingSafeEqual } from "node:crypto";
import type { udp } from "bun";
import type { HaMaps } from "../../datapath/ha-maps";
import { announcement } from "../../datapath/packet";
import type { GatewayGroup } from "../../model/gateway-group";
import { MGMT_BRIDGE, USER_BRIDGE } from "../../model/topology";
import { addAddress, deleteAddress, getLink, listAddresses, type Rtnl, VIP_ADDR_PROTO } from "../../netlink";
import type { StoredGatewayGroup } from "../../store/mirror";
import { monotonicNs, PacketSocket } from "../../sys/os";
import { tieToDevice } from "../../sys/socket-buffer";
import { type Advert, type Counters, type FenceOps, GroupMachine, type VipOps, zeroCounters } from "./machine";

export const HA_PORT = 7480;
/** NAT state to the standbys: every changed translation, every translation again this often. */
const NAT_SYNC_MS = 250;
const NAT_REFRESH_MS = 2000;
const NAT_KEY = 40;
const NAT_VAL = 32;
const NAT_SEEN = 24; // stm_nat_entry.seen: sent as the entry's age
const NAT_PER_DATAGRAM = 18;
const NAT_MAGIC = 0x02; // a heartbeat advert is JSON: it starts with "{"
export const STANDBY_PREPEND = 3;
const ANNOUNCE_AGAIN_MS = [100, 250, 500, 1000, 2000, 5000];
const MAC_LEN = 32;

/** What the engine reads of the cluster: its gateway groups (with their heartbeat keys), the
 * holder of each as recorded, the nodes' management addresses. */
export interface GroupSource {
  groups(): StoredGatewayGroup[];
  active(group: string): { node: string; since: string; why: string; epoch: number } | null;
}

export interface HaOptions {
  source: GroupSource;
  /** Every node's address on its management bridge (null: none). */
  mgmtAddresses(): Map<string, string | null>;
  /** This node's: where the heartbeat listens. */
  mgmtAddress: string | null;
  /** The group's lease in etcd (cluster/ha-lease.ts). */
  fence(group: string): FenceOps;
  node: string;
  /** Called after any group's role changed on this node. */
  changed?: () => void;
  dp: HaMaps;
  nl: Rtnl;
  log(level: "info" | "warn" | "error", msg: string): void;
}

/** The machine's clock: CLOCK_MONOTONIC in ms, the clock of bpf_ktime_get_ns. */
const nowMs = () => Number(monotonicNs()) / 1e6;
const nsOf = (ms: number) => (ms <= 0 ? 0n : BigInt(Math.floor(ms * 1e6)));

interface Running {
  g: StoredGatewayGroup;
  key: Buffer;
  m: GroupMachine;
  vip: GroupVips;
}

export class HaService {
  readonly #o: HaOptions;
  readonly #groups = new Map<string, Running>();
  #sock: udp.Socket<"buffer"> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #tickMs = 0;
  #stopped = false;
  /** Adverts that named no group of this node, or did not parse. */
  rejected = 0;
  /** ICMP errors for sent adverts (a peer not listening). */
  sendErrors = 0;
  /** NAT translations sent to standbys and taken from the active node. */
  readonly nat = { sent: 0, received: 0 };
  #natTimer: ReturnType<typeof setInterval> | undefined;
  /** What was last sent of each translation (its value without the timestamp) and when. */
  #natSent = new Map<string, { v: string; at: number }>();
  mgmtAddress: string | null = null;

  constructor(o: HaOptions) {
    this.#o = o;
  }

  async start(): Promise<void> {
    const addr = this.#o.mgmtAddress;
    this.mgmtAddress = addr;
    if (!addr)
      this.#o.log(
        "warn",
        `no address on ${MGMT_BRIDGE}: gateway groups run without a heartbeat (failover waits for the lease alone)`,
      );
    else {
      try {
        const sock = await Bun.udpSocket({
          hostname: addr,
          port: HA_PORT,
          socket: {
            data: (_s, buf) => this.#receive(Buffer.from(buf)),
            // An ICMP error for an earlier advert (the peer's agent is not listening): the
            // peer's silence is the machine's to judge, not the socket's.
            error: () => {
              this.sendErrors++;
            },
          },
        });
        this.#sock = sock;
        tieToDevice(sock, MGMT_BRIDGE);
      } catch (e) {
        this.#o.log("error", `gateway HA heartbeat on ${addr}:${HA_PORT}: ${(e as Error).message}`);
      }
    }
    this.sync();
    this.#natTimer = setInterval(() => this.#natSync(), NAT_SYNC_MS);
  }

  /** While this node is active in a group, its NAT translations go to the group's other nodes
   * (docs/gateway.md#masquerading-in-a-group): the new ones and the changed ones at once, all
   * of them every 2 s, each with its age rather than this node's clock. */
  #natSync(): void {
    const active = [...this.#groups.values()].filter((r) => r.m.role === "active");
    if (!active.length || !this.#sock) {
      this.#natSent.clear();
      return;
    }
    const now = nowMs();
    const nowNs = monotonicNs();
    const out: Buffer[] = [];
    const seen = new Set<string>();
    try {
      for (const b of this.#o.dp.natEntries())
        for (let i = 0; i < b.count; i++) {
          const key = b.keys.subarray(i * NAT_KEY, (i + 1) * NAT_KEY);
          const val = b.values.subarray(i * NAT_VAL, (i + 1) * NAT_VAL);
          const k = key.toString("hex");
          const v = val.subarray(0, NAT_SEEN).toString("hex");
          seen.add(k);
          const last = this.#natSent.get(k);
          if (last && last.v === v && now - last.at < NAT_REFRESH_MS) continue;
          this.#natSent.set(k, { v, at: now });
          const rec = Buffer.alloc(NAT_KEY + NAT_VAL);
          key.copy(rec, 0);
          val.copy(rec, NAT_KEY);
          const age = nowNs - val.readBigUInt64LE(NAT_SEEN);
          rec.writeBigUInt64LE(age > 0n ? age : 0n, NAT_KEY + NAT_SEEN);
          out.push(rec);
        }
    } catch (e) {
      this.#o.log("warn", `NAT state to the standbys: ${(e as Error).message}`);
      return;
    }
    for (const k of this.#natSent.keys()) if (!seen.has(k)) this.#natSent.delete(k);
    if (!out.length) return;
    const addrs = this.#mgmt();
    for (const r of active) {
      const name = Buffer.from(r.g.name);
      const to = r.g.nodes
        .filter((n) => n !== this.#o.node)
        .map((n) => addrs.get(n))
        .filter((a): a is string => !!a);
      for (let i = 0; i < out.length; i += NAT_PER_DATAGRAM) {
        const recs = out.slice(i, i + NAT_PER_DATAGRAM);
        const head = Buffer.alloc(4);
        head[0] = NAT_MAGIC;
        head[1] = name.length;
        head.writeUInt16BE(recs.length, 2);
        const body = Buffer.concat([head, name, ...recs]);
        const pkt = Buffer.concat([createHmac("sha256", r.key).update(body).digest(), body]);
        for (const a of to) this.#sock.send(pkt, HA_PORT, a);
      }
    }
    this.nat.sent += out.length;
  }

  /** Translations from a group's active node: taken while this node stands by in the group. */
  #natReceive(buf: Buffer): void {
    const body = buf.subarray(MAC_LEN);
    if (body.length < 4) return void this.rejected++;
    const nameLen = body[1] as number;
    const count = body.readUInt16BE(2);
    const name = body.subarray(4, 4 + nameLen).toString();
    const r = this.#groups.get(name);
    if (!r || body.length !== 4 + nameLen + count * (NAT_KEY + NAT_VAL)) return void this.rejected++;
    if (!timingSafeEqual(createHmac("sha256", r.key).update(body).digest(), buf.subarray(0, MAC_LEN))) {
      r.m.counters.advertsRejected++;
      return;
    }
    if (r.m.role === "active") return; // this node's own translations are the ones that count
    const nowNs = monotonicNs();
    for (let i = 0; i < count; i++) {
      const off = 4 + nameLen + i * (NAT_KEY + NAT_VAL);
      const key = body.subarray(off, off + NAT_KEY);
      const val = Buffer.from(body.subarray(off + NAT_KEY, off + NAT_KEY + NAT_VAL));
      const age = val.readBigUInt64LE(NAT_SEEN);
      val.writeBigUInt64LE(nowNs > age ? nowNs - age : 0n, NAT_SEEN);
      try {
        this.#o.dp.putNat(key, val);
        this.nat.received++;
      } catch (e) {
        this.#o.log("warn", `NAT state from the active node: ${(e as Error).message}`);
        return;
      }
    }
  }

  /** Follows the groups in the cluster: a machine for each group this node is in. */
  sync(): void {
    if (this.#stopped) return;
    const had = new Set(this.#groups.keys());
    const want = new Map(
      this.#o.source
        .groups()
        .filter((g) => g.nodes.includes(this.#o.node))
        .map((g) => [g.name, g]),
    );
    for (const [name, r] of this.#groups)
      if (want.get(name)?.createdAt !== r.g.createdAt) {
        this.#groups.delete(name);
        void r.m.stop("the group was deleted, or this node left it");
      }
    for (const [name, g] of want) if (!this.#groups.has(name)) this.#groups.set(name, this.#run(g));
    this.#prune();
    // Joining or leaving groups changes what the BGP speaker's path says.
    if ([...had].join() !== [...this.#groups.keys()].join()) this.#o.changed?.();
    this.#peers = undefined;
    const tick = Math.max(5, Math.min(...[...this.#groups.values()].map((r) => r.g.advertIntervalMs / 4)));
    if (!this.#groups.size) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.#tickMs = 0;
    } else if (tick !== this.#tickMs) {
      clearInterval(this.#timer);
      this.#tickMs = tick;
      this.#timer = setInterval(() => {
        for (const r of this.#groups.values()) r.m.tick();
      }, tick);
    }
  }

  /** VIPs of groups this node no longer runs (deleted while its agent was down, or left):
   * their addresses off the bridge, their deadlines out of the datapath. */
  #prune(): void {
    const mine = new Set(
      [...this.#groups.values()].flatMap((r) => [r.g.vips.ipv4, r.g.vips.ipv6].filter((x): x is string => !!x)),
    );
    try {
      for (const a of listAddresses({ dev: USER_BRIDGE }, this.#o.nl))
        if (a.proto === VIP_ADDR_PROTO && !mine.has(a.ip)) {
          deleteAddress(USER_BRIDGE, a.cidr, this.#o.nl);
          this.#o.log("info", `VIP ${a.cidr} of no group of this node removed from ${USER_BRIDGE}`);
        }
      for (const ip of this.#o.dp.vips().keys()) if (!mine.has(ip)) this.#o.dp.deleteVip(ip);
    } catch (e) {
      this.#o.log("warn", `VIPs of former groups: ${(e as Error).message}`);
    }
  }

  /** The other nodes' management addresses, read again at most every second (every advert
   * would walk the cluster's nodes). */
  #peers: { at: number; map: Map<string, string | null> } | undefined;
  #mgmt(): Map<string, string | null> {
    const now = nowMs();
    if (!this.#peers || now - this.#peers.at > 1000) this.#peers = { at: now, map: this.#o.mgmtAddresses() };
    return this.#peers.map;
  }

  #run(g: StoredGatewayGroup): Running {
    const key = Buffer.from(g.key, "base64");
    const vip = new GroupVips(g, this.#o);
    const self = this.#o.node;
    const m = new GroupMachine(g, self, {
      now: nowMs,
      send: (a) => this.#send(g, key, a),
      fence: this.#o.fence(g.name),
      vip,
      log: (level, msg) => this.#o.log(level, msg),
      changed: () => this.#o.changed?.(),
    });
    return { g, key, m, vip };
  }

  #send(g: GatewayGroup, key: Buffer, a: Advert): void {
    const sock = this.#sock;
    if (!sock) return;
    const body = Buffer.from(JSON.stringify(a));
    const pkt = Buffer.concat([createHmac("sha256", key).update(body).digest(), body]);
    const nodes = this.#mgmt();
    for (const n of g.nodes) {
      const to = n === this.#o.node ? null : nodes.get(n);
      if (to) sock.send(pkt, HA_PORT, to);
    }
  }

  #receive(buf: Buffer): void {
    if (buf.length <= MAC_LEN) {
      this.rejected++;
      return;
    }
    if (buf[MAC_LEN] === NAT_MAGIC) {
      this.#natReceive(buf);
      return;
    }
    const body = buf.subarray(MAC_LEN);
    let a: Advert;
    try {
      a = JSON.parse(body.toString()) as Advert;
    } catch {
      this.rejected++;
      return;
    }
    const r = typeof a?.group === "string" ? this.#groups.get(a.group) : undefined;
    if (!r || !validAdvert(a)) {
      this.rejected++;
      return;
    }
    const mac = createHmac("sha256", r.key).update(body).digest();
    if (!timingSafeEqual(mac, buf.subarray(0, MAC_LEN))) {
      r.m.counters.advertsRejected++;
      return;
    }
    r.m.onAdvert(a);
  }

  /** A standby gateway's BGP announcements carry a worse path (the AS three more times): this
   * node is in groups and holds none of them. */
  prepend(): number {
    const ms = [...this.#groups.values()].map((r) => r.m);
    return ms.length && !ms.some((m) => m.role === "active") ? STANDBY_PREPEND : 0;
  }

  /** This node's view of every group: its machine's where it is a member. */
  status(): GroupStatus[] {
    return groupStatus(this.#o.source, this.#o.node, (name) => this.#groups.get(name)?.m);
  }

  /** The agent stops: every active group lets go and releases its lease (a standby takes
   * over at once), within a second at the most. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearInterval(this.#natTimer);
    const stops = [...this.#groups.values()].map((r) => r.m.stop("the agent stopped"));
    await Promise.race([Promise.all(stops), Bun.sleep(1000)]);
    this.#sock?.close();
  }
}

/** Every group as `node` sees it: the holder the cluster records, and where this node runs the
 * group's machine (`machine`), its role, its peers as last heard and its counters. */
export function groupStatus(
  source: GroupSource,
  node: string,
  machine: (group: string) => GroupMachine | undefined = () => undefined,
): GroupStatus[] {
  const now = nowMs();
  return source.groups().map((g) => {
    const m = machine(g.name);
    const held = source.active(g.name);
    return {
      name: g.name,
      vips: { ipv4: g.vips.ipv4 ?? null, ipv6: g.vips.ipv6 ?? null },
      member: g.nodes.includes(node),
      role: m?.role ?? "none",
      active: held?.node ?? null,
      epoch: held?.epoch ?? null,
      since: m ? new Date(Date.now() - (now - m.since)).toISOString() : (held?.since ?? null),
      why: m ? m.why : (held?.why ?? null),
      holdMs: m?.role === "active" ? Math.max(0, Math.round(m.holdUntil() - now)) : null,
      nodes: g.nodes.map((n) => {
        const p = m?.peers.get(n);
        return {
          name: n,
          priority: g.priority[n] ?? 0,
          role: n === node ? (m?.role ?? null) : (p?.role ?? null),
          lastHeardMs: p ? Math.round(now - p.lastHeard) : null,
          etcd: n === node ? (m?.etcdOk ?? null) : (p?.etcd ?? null),
          self: n === node,
        };
      }),
      counters: m ? { ...m.counters } : zeroCounters(),
    };
  });
}

export interface GroupStatus {
  name: string;
  vips: { ipv4: string | null; ipv6: string | null };
  member: boolean;
  role: "active" | "standby" | "init" | "none";
  active: string | null;
  epoch: number | null;
  since: string | null;
  why: string | null;
  holdMs: number | null;
  nodes: Array<{
    name: string;
    priority: number;
    role: "active" | "standby" | "init" | null;
    lastHeardMs: number | null;
    etcd: boolean | null;
    self: boolean;
  }>;
  counters: Counters;
}

const ROLES = new Set(["init", "standby", "active"]);
function validAdvert(a: Advert): boolean {
  return (
    a.v === 1 &&
    typeof a.node === "string" &&
    ROLES.has(a.role) &&
    Number.isSafeInteger(a.seq) &&
    Number.isSafeInteger(a.epoch) &&
    Number.isSafeInteger(a.prio) &&
    typeof a.etcd === "boolean" &&
    typeof a.acks === "object" &&
    a.acks !== null &&
    Object.values(a.acks).every((s) => Number.isSafeInteger(s))
  );
}

/** A group's VIPs on this node: addresses on the user bridge, deadlines in the datapath. */
class GroupVips implements VipOps {
  readonly #addrs: Array<{ ip: string; cidr: string; v6: boolean }>;
  readonly #o: HaOptions;
  #again: Array<ReturnType<typeof setTimeout>> = [];

  constructor(g: GatewayGroup, o: HaOptions) {
    this.#o = o;
    this.#addrs = [
      ...(g.vips.ipv4 ? [{ ip: g.vips.ipv4, cidr: `${g.vips.ipv4}/32`, v6: false }] : []),
      ...(g.vips.ipv6 ? [{ ip: g.vips.ipv6, cidr: `${g.vips.ipv6}/128`, v6: true }] : []),
    ];
  }

  up(untilMs: number): void {
    this.hold(untilMs);
    for (const a of this.#addrs)
      try {
        addAddress(USER_BRIDGE, a.cidr, { replace: true, noDad: a.v6, proto: VIP_ADDR_PROTO }, this.#o.nl);
      } catch (e) {
        this.#o.log("error", `VIP ${a.cidr} on ${USER_BRIDGE}: ${(e as Error).message}`);
      }
    this.#announce();
    this.#again = ANNOUNCE_AGAIN_MS.map((ms) => setTimeout(() => this.#announce(), ms));
  }

  hold(untilMs: number): void {
    for (const a of this.#addrs) this.#o.dp.setVip(a.ip, nsOf(untilMs));
  }

  down(): void {
    for (const t of this.#again) clearTimeout(t);
    this.#again = [];
    for (const a of this.#addrs) this.#o.dp.setVip(a.ip, 0n);
    let have: Set<string>;
    try {
      have = new Set(listAddresses({ dev: USER_BRIDGE }, this.#o.nl).map((x) => x.cidr));
    } catch {
      return; // no bridge: no address either
    }
    for (const a of this.#addrs)
      if (have.has(a.cidr))
        try {
          deleteAddress(USER_BRIDGE, a.cidr, this.#o.nl);
        } catch (e) {
          this.#o.log("error", `VIP ${a.cidr} stays on ${USER_BRIDGE}: ${(e as Error).message}`);
        }
  }

  #announce(): void {
    try {
      const mac = getLink(USER_BRIDGE, this.#o.nl)?.mac;
      if (!mac) return;
      const v4 = this.#addrs.find((a) => !a.v6)?.ip;
      const v6 = this.#addrs.find((a) => a.v6)?.ip;
      const sock = new PacketSocket(USER_BRIDGE, { sendOnly: true });
      try {
        for (const f of announcement({ mac, ip4: v4, ip6: v6 })) sock.send(f);
      } finally {
        sock.close();
      }
    } catch (e) {
      this.#o.log("warn", `announcing the VIPs: ${(e as Error).message}`);
    }
  }
}
