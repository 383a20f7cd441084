/** The node's IPv6 address service on the user bridge: router advertisements and a DHCPv6 server
 * (stateful and stateless) for every network with an IPv6 subnet. All networks share the bridge, so
 * nothing is advertised to all-nodes: each claimed endpoint gets its own network's RA unicast to its
 * link-local address, periodically and on its solicitations, and a request is answered only when its
 * link-local source names a claimed endpoint. A bad packet is counted and dropped. */

import type { udp } from "bun";
import { consola } from "consola";
import { ERRNO, errnoName, errnoOf, StratumError, sysError } from "../errors";
import { bytesToIp, ipToBytes, mustGetLink } from "../netlink";
import { Icmp6Socket } from "../sys/icmp6";
import { raiseReceiveBuffer } from "../sys/socket-buffer";
import { buildRa, decodeRs, dnsLifetime, encodeRa, ICMP6 } from "./ra";
import {
  ALL_DHCP_SERVERS,
  answerDhcp6,
  DHCP6_CLIENT_PORT,
  DHCP6_SERVER_PORT,
  type Dhcp6Client,
  type Dhcp6Decision,
  decodeDhcp6,
  duidLl,
  encodeDhcp6,
  macFromLinkLocal,
  msgName,
} from "./v6";

export interface V6Binding {
  endpoint: string;
  network: string;
  mac: string;
  ip6: string;
  linkLocal: string;
}

export interface V6Network {
  name: string;
  cidr6: string;
  gateway6: string;
  mtu: number;
  dnsZone: string;
  /** Seconds. */
  leaseTime: number;
}

export interface Ipv6Stats {
  raSent: number;
  /** Every router solicitation read, answered or not. */
  rsReceived: number;
  /** Solicitations not answered: malformed, or not from a claimed endpoint's link-local. */
  rsIgnored: number;
  dhcp6: {
    received: number;
    /** Replies sent, by message type (ADVERTISE, REPLY). */
    replies: Record<string, number>;
    /** Well-formed but not answered: unknown client, another server's id, invalid for its type. */
    ignored: number;
    malformed: number;
    relayRefused: number;
  };
}

export interface V6Lease {
  endpoint: string;
  network: string;
  ip6: string;
  iaid: number;
  /** Client DUID, hex. */
  duid: string;
  /** ms since the epoch. */
  expiresAt: number;
}

type Log = (level: "info" | "warn", msg: string) => void;

const ALL_ROUTERS = "ff02::2";
const DEFAULT_RA_INTERVAL_MS = 10_000;
/** Solicitations are read by polling the non-blocking raw socket: Bun has no readiness callback for a
 * foreign fd, and 20 empty recvfrom calls a second cost nothing next to a prompt answer. */
const RS_POLL_MS = 50;
/** An endpoint soliciting faster than this gets the RA it already has, not another: a guest
 * flooding solicitations costs at most a few RAs a second. */
const RS_MIN_GAP_MS = 250;
/** Bridge index and MAC are re-read this often (the agent may recreate the bridge). */
const LINK_CHECK_MS = 30_000;

interface Bound {
  binding: V6Binding;
  network: V6Network;
  /** Everything the endpoint's RA and DHCPv6 answers depend on: a change means a fresh RA. */
  key: string;
  /** Destination of its RAs, 16 bytes. */
  ll: Buffer;
}

const defaultLog: Log = (() => {
  const l = consola.withTag("ipv6");
  return (level, msg) => l[level](msg);
})();

export class Ipv6Service {
  readonly #bridge: string;
  readonly #log: Log;
  readonly #raIntervalMs: number;
  /** Endpoint MAC → what it is bound to. */
  #bound = new Map<string, Bound>();
  #ifindex = 0;
  #routerMac = "";
  #serverDuid: Buffer | null = null;
  #icmp: Icmp6Socket | null = null;
  #udp: udp.Socket<"buffer"> | null = null;
  #pollTimer: ReturnType<typeof setInterval> | null = null;
  #raTimer: ReturnType<typeof setTimeout> | null = null;
  #linkCheckedAt = 0;
  /** Encoded RA per network name; cleared when networks or the bridge MAC change. */
  #raCache = new Map<string, Buffer>();
  #lastRa = new Map<string, number>();
  /** By "duid/iaid". */
  #leases = new Map<string, V6Lease>();
  /** Key of the last warning (see #warnOnce). */
  #lastWarning = "";
  #stats: Ipv6Stats = {
    raSent: 0,
    rsReceived: 0,
    rsIgnored: 0,
    dhcp6: { received: 0, replies: {}, ignored: 0, malformed: 0, relayRefused: 0 },
  };

  constructor(o: { bridge: string; log?: Log; raIntervalMs?: number }) {
    this.#bridge = o.bridge;
    this.#log = o.log ?? defaultLog;
    this.#raIntervalMs = Math.max(1000, o.raIntervalMs ?? DEFAULT_RA_INTERVAL_MS);
  }

  /** Current networks with IPv6 and the claimed endpoints; called after any change; sends an RA
   * to new (or changed) endpoints at once. */
  update(networks: V6Network[], bindings: V6Binding[]): void {
    const nets = new Map(networks.map((n) => [n.name, n]));
    const next = new Map<string, Bound>();
    for (const b of bindings) {
      const e = this.#entry(b, nets);
      if (e) next.set(e.binding.mac, e);
    }
    const fresh = [...next].filter(([mac, e]) => this.#bound.get(mac)?.key !== e.key).map(([, e]) => e);
    this.#bound = next;
    this.#raCache.clear();
    for (const mac of this.#lastRa.keys()) if (!next.has(mac)) this.#lastRa.delete(mac);
    const live = new Set([...next.values()].map((e) => `${e.binding.network}/${e.binding.endpoint}`));
    for (const [k, l] of this.#leases) if (!live.has(`${l.network}/${l.endpoint}`)) this.#leases.delete(k);
    if (this.#icmp) for (const e of fresh) this.#sendRa(e);
  }

  /** One endpoint changed (`before` as the last update had it, `after` as it is now; either
   * absent for an attach or a detach), the networks did not: the same outcome as update()
   * with every binding, in time independent of how many there are. */
  updateEndpoint(networks: V6Network[], before: V6Binding | undefined, after: V6Binding | undefined): void {
    const nets = new Map(networks.map((n) => [n.name, n]));
    const e = after && this.#entry(after, nets);
    if (before) {
      const mac = before.mac.toLowerCase();
      if (this.#bound.get(mac)?.binding.endpoint === before.endpoint && mac !== e?.binding.mac) {
        this.#bound.delete(mac);
        this.#lastRa.delete(mac);
      }
      if (e?.binding.endpoint !== before.endpoint || e.binding.network !== before.network)
        for (const [k, l] of this.#leases)
          if (l.network === before.network && l.endpoint === before.endpoint) this.#leases.delete(k);
    }
    this.#raCache.clear();
    if (!e) return;
    const fresh = this.#bound.get(e.binding.mac)?.key !== e.key;
    this.#bound.set(e.binding.mac, e);
    if (this.#icmp && fresh) this.#sendRa(e);
  }

  /** What a binding serves, or nothing (its network has no IPv6, its link-local is bad). */
  #entry(b: V6Binding, nets: Map<string, V6Network>): Bound | undefined {
    const network = nets.get(b.network);
    if (!network) return undefined;
    const mac = b.mac.toLowerCase();
    let ll: Buffer;
    try {
      ll = ipToBytes(b.linkLocal);
    } catch {
      this.#log("warn", `endpoint ${b.endpoint}: link-local "${b.linkLocal}" is no IPv6 address; not served`);
      return undefined;
    }
    return { binding: { ...b, mac }, network, key: JSON.stringify([b.endpoint, b.ip6, network]), ll };
  }

  /** Opens the sockets; throws StratumError (SYS, UNSUPPORTED) saying what failed. */
  async start(): Promise<void> {
    if (this.#icmp) return;
    const ctx = `start IPv6 address service on ${this.#bridge}`;
    let link: ReturnType<typeof mustGetLink>;
    try {
      link = mustGetLink(this.#bridge);
    } catch (e) {
      const n = e instanceof StratumError && e.errno ? e.errno : (ERRNO.ENODEV as number);
      throw sysError(`${ctx}: ${(e as Error).message}`, n);
    }
    if (!link.mac) throw sysError(`${ctx}: ${this.#bridge} has no MAC address`, ERRNO.EINVAL as number);
    this.#ifindex = link.index;
    this.#routerMac = link.mac;
    // The server's identity outlives MAC changes of the bridge: clients renew against it.
    this.#serverDuid ??= duidLl(link.mac);
    this.#linkCheckedAt = Date.now();
    try {
      this.#icmp = this.#openIcmp();
      this.#udp = await this.#openUdp();
    } catch (e) {
      this.close();
      if (e instanceof StratumError) {
        const code = e.errno === ERRNO.EAFNOSUPPORT ? "UNSUPPORTED" : e.code;
        throw new StratumError(code, `${ctx}: ${e.message}`, { errno: e.errno, cause: e });
      }
      throw new StratumError("SYS", `${ctx}: ${(e as Error).message}`, { cause: e });
    }
    this.#pollTimer = setInterval(() => this.#drainRs(), RS_POLL_MS);
    this.#pollTimer.unref?.();
    this.#scheduleRa();
    for (const e of this.#bound.values()) this.#sendRa(e);
  }

  stats(): Ipv6Stats {
    return structuredClone(this.#stats);
  }

  /** Leases granted and not yet expired or released. */
  leases(): V6Lease[] {
    const now = Date.now();
    for (const [k, l] of this.#leases) if (l.expiresAt <= now) this.#leases.delete(k);
    return [...this.#leases.values()].map((l) => ({ ...l }));
  }

  close(): void {
    if (this.#pollTimer) clearInterval(this.#pollTimer);
    if (this.#raTimer) clearTimeout(this.#raTimer);
    this.#pollTimer = null;
    this.#raTimer = null;
    this.#icmp?.close();
    this.#icmp = null;
    this.#udp?.close();
    this.#udp = null;
  }

  // ---- sockets ----------------------------------------------------------------------------

  #openIcmp(): Icmp6Socket {
    return new Icmp6Socket({
      device: this.#bridge,
      ifindex: this.#ifindex,
      types: [ICMP6.ROUTER_SOLICIT],
      // Unless IPv6 forwarding is on for the bridge the kernel has not joined all-routers there,
      // and solicitations would be dropped before reaching the socket.
      groups: [ipToBytes(ALL_ROUTERS)],
    });
  }

  async #openUdp(): Promise<udp.Socket<"buffer">> {
    let sock: udp.Socket<"buffer">;
    try {
      sock = await Bun.udpSocket({
        hostname: "::",
        port: DHCP6_SERVER_PORT,
        binaryType: "buffer",
        socket: {
          data: (s, data, _port, address) => this.#onDhcp(s, data, address),
          // An ICMP error for an earlier reply (the client went away): nothing to do.
          error: () => {},
        },
      });
    } catch (e) {
      throw bunError(`listen for DHCPv6 on [::]:${DHCP6_SERVER_PORT}`, e);
    }
    try {
      // Bun takes the interface to join on from the scope of "::%<name>". It must be the name:
      // a numeric scope is not read as an index, and the kernel then picks an interface by route
      // (another one whenever the bridge's multicast route is not the first).
      if (!sock.addMembership(ALL_DHCP_SERVERS, `::%${this.#bridge}`)) throw new Error("refused");
    } catch (e) {
      sock.close();
      throw bunError(`join ${ALL_DHCP_SERVERS} on ${this.#bridge}`, e);
    }
    raiseReceiveBuffer(sock, "DHCPv6 server", this.#log);
    return sock;
  }

  /** The bridge may have been recreated (new index: the sockets' bindings are stale) or
   * changed its MAC (the RAs' source link-layer option). */
  #checkLink(): void {
    this.#linkCheckedAt = Date.now();
    let link: ReturnType<typeof mustGetLink>;
    try {
      link = mustGetLink(this.#bridge);
    } catch (e) {
      this.#warnOnce(`bridge: ${(e as Error).message}`);
      return;
    }
    if (link.mac && link.mac !== this.#routerMac) {
      this.#routerMac = link.mac;
      this.#raCache.clear();
    }
    if (link.index === this.#ifindex) return;
    this.#log("info", `${this.#bridge} is now ifindex ${link.index} (was ${this.#ifindex}): reopening sockets`);
    this.#ifindex = link.index;
    try {
      this.#icmp?.close();
      this.#icmp = this.#openIcmp();
      this.#udp?.addMembership(ALL_DHCP_SERVERS, `::%${this.#bridge}`);
    } catch (e) {
      this.#warnOnce(`reopen on ${this.#bridge}: ${(e as Error).message}`);
    }
  }

  /** Warns unless the last warning had the same `key`: a bridge without carrier is one line, not
   * one per endpoint per interval. */
  #warnOnce(msg: string, key = msg): void {
    if (key === this.#lastWarning) return;
    this.#lastWarning = key;
    this.#log("warn", msg);
  }

  // ---- router advertisements ----------------------------------------------------------------

  #scheduleRa(): void {
    // Jitter (±20 %) keeps many agents, and many endpoints' timers in the guests, from locking step.
    const delay = this.#raIntervalMs * (0.8 + 0.4 * Math.random());
    this.#raTimer = setTimeout(() => {
      if (!this.#icmp) return;
      if (Date.now() - this.#linkCheckedAt >= LINK_CHECK_MS) this.#checkLink();
      for (const e of this.#bound.values()) this.#sendRa(e);
      this.#scheduleRa();
    }, delay);
    this.#raTimer.unref?.();
  }

  #raFor(network: V6Network): Buffer {
    let ra = this.#raCache.get(network.name);
    if (!ra) {
      ra = encodeRa(buildRa({ network, routerMac: this.#routerMac, dnsLifetime: dnsLifetime(this.#raIntervalMs) }));
      this.#raCache.set(network.name, ra);
    }
    return ra;
  }

  #sendRa(e: Bound): void {
    if (!this.#icmp) return;
    let ra: Buffer;
    try {
      ra = this.#raFor(e.network);
    } catch (err) {
      this.#warnOnce(`RA for network ${e.network.name}: ${(err as Error).message}`);
      return;
    }
    const n = this.#icmp.sendTo(ra, e.ll, this.#ifindex);
    if (n < 0) {
      this.#warnOnce(`send RA to ${e.binding.endpoint} (${e.binding.linkLocal}): ${errnoName(-n)}`, `ra ${n}`);
      return;
    }
    if (this.#lastWarning.startsWith("ra ")) {
      this.#log("info", `sending RAs on ${this.#bridge} again`);
      this.#lastWarning = "";
    }
    this.#stats.raSent++;
    this.#lastRa.set(e.binding.mac, Date.now());
  }

  #drainRs(): void {
    if (!this.#icmp) return;
    // Bounded: a flood cannot hold the event loop; the rest waits for the next tick.
    for (let i = 0; i < 64; i++) {
      let pkt: ReturnType<Icmp6Socket["recv"]>;
      try {
        pkt = this.#icmp.recv();
      } catch (e) {
        this.#warnOnce((e as Error).message);
        return;
      }
      if (!pkt) return;
      this.#onRs(pkt.data, pkt.from);
    }
  }

  #onRs(data: Buffer, from: Buffer): void {
    this.#stats.rsReceived++;
    let slla: string | undefined;
    try {
      const rs = decodeRs(data);
      slla = rs.options.find((o) => o.kind === "sourceLinkAddr")?.mac;
    } catch {
      // decodeRs throws only NdFormatError; whatever it throws, the packet is what was wrong.
      this.#stats.rsIgnored++;
      return;
    }
    const mac = macFromLinkLocal(bytesToIp(from));
    const e = mac ? this.#bound.get(mac) : undefined;
    // A link-layer option naming another MAC than the source address does is not our endpoint's.
    if (!e || (slla !== undefined && slla !== mac)) {
      this.#stats.rsIgnored++;
      return;
    }
    const last = this.#lastRa.get(e.binding.mac) ?? 0;
    if (Date.now() - last < RS_MIN_GAP_MS) return;
    this.#sendRa(e);
  }

  // ---- DHCPv6 -------------------------------------------------------------------------------------

  #client(mac: string): Dhcp6Client | undefined {
    const e = this.#bound.get(mac);
    if (!e) return undefined;
    return {
      endpoint: e.binding.endpoint,
      network: e.network.name,
      ip6: e.binding.ip6,
      cidr6: e.network.cidr6,
      gateway6: e.network.gateway6,
      dnsZone: e.network.dnsZone,
      leaseTime: e.network.leaseTime,
    };
  }

  #onDhcp(sock: udp.Socket<"buffer">, data: Buffer, address: string): void {
    const st = this.#stats.dhcp6;
    st.received++;
    // Bun gives a link-local source with its arrival interface ("fe80::1%br0"): the same link-local
    // on another interface (the management bridge) is someone else.
    const scope = address.includes("%") ? address.slice(address.indexOf("%") + 1) : "";
    if (scope && scope !== this.#bridge && scope !== String(this.#ifindex)) {
      st.ignored++;
      return;
    }
    let decision: Dhcp6Decision;
    try {
      decision = answerDhcp6(decodeDhcp6(data), {
        source: address,
        serverDuid: this.#serverDuid as Buffer,
        lookup: (mac) => this.#client(mac),
      });
    } catch {
      // The decoder throws only Dhcp6FormatError; anything else here is still the packet's fault.
      st.malformed++;
      return;
    }
    if (decision.action === "ignore") {
      if (decision.reason === "relay") st.relayRefused++;
      else st.ignored++;
      return;
    }
    const now = Date.now();
    // One binding per endpoint (it has exactly one address): a client that asks for thousands
    // of IAs, each with a fresh IAID, still costs one entry.
    for (const g of decision.grants)
      this.#leases.set(g.endpoint, {
        endpoint: g.endpoint,
        network: g.network,
        ip6: g.ip6,
        iaid: g.iaid,
        duid: g.duid,
        expiresAt: now + g.validSeconds * 1000,
      });
    // A client ends its own bindings only: it may name any DUID and IAID, but its source
    // link-local (which its port enforces) says which endpoint it is.
    for (const r of decision.releases)
      for (const [k, l] of this.#leases)
        if (l.endpoint === r.endpoint && l.duid === r.duid && l.iaid === r.iaid) this.#leases.delete(k);
    if (decision.declined?.length)
      this.#log(
        "warn",
        `DHCPv6 client at ${address} declined ${decision.declined.join(", ")}: another host uses its profile address`,
      );
    let bytes: Buffer;
    try {
      bytes = encodeDhcp6(decision.reply);
    } catch (e) {
      // Only a network whose stored settings cannot be encoded gets here (a DNS zone label too long).
      this.#warnOnce(`DHCPv6 ${msgName(decision.reply.type)} for ${address}: ${(e as Error).message}`);
      return;
    }
    // Scoped link-local destination: the reply leaves through the bridge whatever the routes say.
    if (!sock.send(bytes, DHCP6_CLIENT_PORT, address)) {
      this.#warnOnce(`send DHCPv6 ${msgName(decision.reply.type)} to ${address}: refused`);
      return;
    }
    const name = msgName(decision.reply.type);
    st.replies[name] = (st.replies[name] ?? 0) + 1;
  }
}

/** Bun's socket errors carry `code` ("EADDRINUSE"); keep it as the errno of a SYS error. */
function bunError(context: string, e: unknown): StratumError {
  const code = (e as { code?: string })?.code;
  const n = code ? errnoOf(code) : undefined;
  if (n !== undefined) return sysError(context, n);
  return new StratumError("SYS", `${context}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}
