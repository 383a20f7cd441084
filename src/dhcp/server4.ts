/** The node's DHCPv4 server: one UDP socket on port 67 serves every network on the user
 * bridge. It answers a client only when the client's MAC holds a claimed endpoint profile
 * (the port programs have already checked that chaddr is the sending port's own MAC), keeps
 * the leases in the store, and quarantines (counts, never serves) lease rows that fail
 * validation at load. A bad packet is counted and dropped; nothing a client sends can stop it. */
import type { udp } from "bun";
import { z } from "zod";
import { ETH_P, ethernet, IPPROTO, ipv4, udp as udpSegment } from "../datapath/packet";
import { StratumError } from "../errors";
import { contains, parseIp, parseSubnet } from "../model/ip";
import { getLink, NL, type Rtnl, setNeighbour } from "../netlink";
import type { Endpoint, Lease, Store, StoredNetwork } from "../store/store";
import { PacketSocket } from "../sys/os";
import { raiseReceiveBuffer, tieToDevice } from "../sys/socket-buffer";
import { type Binding4, encodeReply, type Ignore4, type Outcome4, respond4, TYPE_NAMES } from "./policy4";
import { DHCP4, Dhcp4FormatError, type Dhcp4Message, dec, macOf, OPT, parseDhcp4 } from "./v4";

export interface Dhcp4Stats {
  /** Requests by message type (discover, request, …). */
  received: Record<string, number>;
  /** Replies sent by type (offer, ack, nak). */
  replies: Record<string, number>;
  ignored: Record<Ignore4, number>;
  malformed: number;
  releases: number;
  declines: number;
  sendErrors: number;
  leasesQuarantined: number;
  leasesActive: number;
}

type Log = (level: "info" | "warn", msg: string) => void;

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const LeaseRow = z.object({
  network: z.string().min(1),
  mac: z.string().regex(MAC_RE, "not a MAC address"),
  family: z.union([z.literal(4), z.literal(6)]),
  ip: z.string().min(2).max(45),
  endpoint: z.string().max(64).nullable(),
  hostname: z.string().max(255).nullable(),
  state: z.enum(["bound", "released", "declined"]),
  expires_at: z.number().int().nonnegative(),
  updated_at: z.number().int().nonnegative(),
});

/** Longest a renewal waits before it is written to the store. */
export const FLUSH_MS = 1000;

const IGNORE_REASONS: Ignore4[] = [
  "not-a-request",
  "bootp",
  "relayed",
  "unknown-client",
  "outside-range",
  "other-server",
  "wrong-address",
  "bad-type",
];

/** The lease row of a binding. */
function leaseOf(
  b: Binding4,
  hostname: string | undefined,
  state: Lease["state"],
  expiresAt: number,
  now: number,
): Lease {
  return {
    network: b.network.name,
    mac: b.mac,
    family: 4,
    ip: b.ip,
    endpoint: b.endpoint,
    hostname,
    state,
    expiresAt,
    updatedAt: now,
  };
}

/** An endpoint as the server indexes it: its network by name (see #nets). */
interface Entry4 {
  endpoint: string;
  network: string;
  ip: string;
  mac: string;
}

export class Dhcp4Server {
  readonly #store: Store;
  readonly #bridge: string;
  readonly #nl: Rtnl | undefined;
  readonly #log: Log;
  readonly #port: number;
  readonly #clientPort: number;
  /** Bind the socket to the bridge (the agent; tests on loopback do not). */
  readonly #tie: boolean;
  readonly #loopback: boolean;
  /** Send-only packet socket on the bridge, for broadcast replies (the agent's server only). */
  #raw: PacketSocket | undefined;
  #sock: udp.Socket<"uint8array"> | undefined;
  /** Client MAC → its endpoint, by its network's name: rebuilt by update(), changed by
   * updateEndpoint(). */
  #index = new Map<string, Entry4>();
  /** The networks as the last update had them, by name: a binding takes its network's
   * settings from here, so an update of one endpoint leaves the others' current. */
  #nets = new Map<string, StoredNetwork>();
  /** Bound leases by "network mac", as the store has them. */
  #leases = new Map<string, Lease>();
  /** Leases whose renewal is not in the store yet (see #save). */
  readonly #dirty = new Set<string>();
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  /** Neighbour entries written recently (ip → ms): a renew storm costs no netlink round trips. */
  #neigh = new Map<string, number>();
  #stats: Dhcp4Stats = {
    received: {},
    replies: {},
    ignored: Object.fromEntries(IGNORE_REASONS.map((r) => [r, 0])) as Record<Ignore4, number>,
    malformed: 0,
    releases: 0,
    declines: 0,
    sendErrors: 0,
    leasesQuarantined: 0,
    leasesActive: 0,
  };

  /** `nl`: where the neighbour entries of unicast replies go (the agent's namespace);
   * undefined writes none (tests that answer on loopback). */
  constructor(o: {
    store: Store;
    bridge: string;
    nl?: Rtnl;
    log?: Log;
    port?: number;
    clientPort?: number;
    /** Tie the socket to the bridge (default: when `nl` is given, i.e. in the agent). */
    tieToBridge?: boolean;
    /** Tests on loopback: every reply goes to 127.0.0.1 (the client port), whatever its address. */
    loopbackReplies?: boolean;
  }) {
    this.#store = o.store;
    this.#bridge = o.bridge;
    this.#nl = o.nl;
    this.#log = o.log ?? (() => {});
    this.#port = o.port ?? 67;
    this.#clientPort = o.clientPort ?? 68;
    this.#tie = o.tieToBridge ?? o.nl !== undefined;
    this.#loopback = o.loopbackReplies === true;
  }

  /** Loads the stored leases of `networks`; a row that fails validation is quarantined. */
  loadLeases(networks: StoredNetwork[]): void {
    const byName = new Map(networks.map((n) => [n.name, n]));
    for (const raw of this.#store.loadLeases()) {
      if (raw.family === 6) continue; // DHCPv6 bindings belong to the IPv6 service
      const { rowid, ...fields } = raw;
      const p = LeaseRow.safeParse(fields);
      let why = p.success ? "" : `${p.error.issues[0]?.path.join(".")}: ${p.error.issues[0]?.message}`;
      if (p.success) {
        const n = byName.get(p.data.network);
        try {
          const ip = parseIp(p.data.ip);
          if (!n || ip.family !== 4 || !contains(parseSubnet(n.cidr), ip))
            why = `address ${p.data.ip} is not in network ${p.data.network}`;
        } catch {
          why = `address ${JSON.stringify(p.data.ip).slice(0, 60)} is not an IP address`;
        }
      }
      if (why || !p.success) {
        const text = JSON.stringify(fields, (_k, v) => (typeof v === "bigint" ? String(v) : v)).slice(0, 2000);
        this.#store.quarantineLease(rowid, text, why);
        this.#stats.leasesQuarantined++;
        this.#log("warn", `dhcp: lease row ${rowid} quarantined (${why}): it is kept aside and not served`);
        continue;
      }
      const d = p.data;
      this.#leases.set(`${d.network} ${d.mac}`, {
        network: d.network,
        mac: d.mac,
        family: 4,
        ip: d.ip,
        ...(d.endpoint ? { endpoint: d.endpoint } : {}),
        ...(d.hostname ? { hostname: d.hostname } : {}),
        state: d.state,
        expiresAt: d.expires_at,
        updatedAt: d.updated_at,
      });
    }
  }

  /** The endpoints served, after any change; leases of endpoints that are gone are dropped. */
  update(networks: StoredNetwork[], endpoints: Endpoint[]): void {
    this.#nets = new Map(networks.map((n) => [n.name, n]));
    const index = new Map<string, Entry4>();
    for (const e of endpoints)
      if (this.#nets.has(e.network)) index.set(e.mac, { endpoint: e.name, network: e.network, ip: e.ip, mac: e.mac });
    this.#index = index;
    for (const [key, l] of this.#leases) this.#dropStale(key, l);
  }

  /** One endpoint changed (`before` as the last update had it, `after` as it is now; either
   * absent for an attach or a detach), nothing else: the same outcome as update() with every
   * endpoint, in time independent of how many there are. */
  updateEndpoint(networks: StoredNetwork[], before: Endpoint | undefined, after: Endpoint | undefined): void {
    this.#nets = new Map(networks.map((n) => [n.name, n]));
    if (before && this.#index.get(before.mac)?.endpoint === before.name) this.#index.delete(before.mac);
    if (after && this.#nets.has(after.network))
      this.#index.set(after.mac, { endpoint: after.name, network: after.network, ip: after.ip, mac: after.mac });
    for (const mac of new Set([before?.mac, after?.mac]))
      if (mac !== undefined)
        for (const n of networks) {
          const key = `${n.name} ${mac}`;
          const l = this.#leases.get(key);
          if (l) this.#dropStale(key, l);
        }
  }

  /** A lease whose MAC is no endpoint of its network any more is forgotten. */
  #dropStale(key: string, l: Lease): void {
    const b = this.#index.get(l.mac);
    if (b && b.network === l.network) return;
    this.#leases.delete(key);
    this.#dirty.delete(key);
    try {
      if (this.#nets.has(l.network)) this.#store.deleteLease(l.network, l.mac, 4);
    } catch (e) {
      this.#log("warn", `dhcp: forget lease of ${l.mac}: ${(e as Error).message}`);
    }
  }

  /** The binding of a client MAC, with its network's current settings. */
  #binding(mac: string): Binding4 | undefined {
    const e = this.#index.get(mac);
    const network = e && this.#nets.get(e.network);
    return network ? { endpoint: e.endpoint, network, ip: e.ip, mac: e.mac } : undefined;
  }

  async start(): Promise<void> {
    try {
      this.#sock = await Bun.udpSocket({
        hostname: "0.0.0.0",
        port: this.#port,
        socket: {
          data: (_s, buf, port, addr) => this.#onPacket(buf, port, addr),
          // An ICMP error for an earlier reply (the client's port closed): it went away.
          error: () => {
            this.#stats.sendErrors++;
          },
        },
      });
    } catch (e) {
      throw new StratumError("SYS", `DHCP server: bind 0.0.0.0:${this.#port}: ${(e as Error).message}`);
    }
    this.#sock.setBroadcast(true);
    // On the user bridge only: requests arrive there, and a broadcast reply (a NAK, a client
    // that asked for one) leaves there even when the node has no default route.
    if (this.#tie)
      try {
        tieToDevice(this.#sock, this.#bridge);
        // Broadcast replies are whole frames from the network's gateway: sent by the UDP socket
        // they would take the bridge's first address as their source, which another network's
        // ports drop as not theirs.
        this.#raw = new PacketSocket(this.#bridge, { sendOnly: true });
      } catch (e) {
        this.#sock.close();
        this.#sock = undefined;
        throw new StratumError("SYS", `DHCP server: ${(e as Error).message}`);
      }
    raiseReceiveBuffer(this.#sock, "DHCP server", this.#log);
  }

  get port(): number {
    return this.#sock?.port ?? this.#port;
  }

  #onPacket(buf: Uint8Array, _port: number, _addr: string): void {
    const h = this.handle(buf);
    const out = h?.out;
    if (!h || out?.kind !== "reply" || !this.#sock) return;
    try {
      // Only the address being leased is learned: a client-chosen ciaddr must not point a neighbour entry at it.
      if (out.to === "unicast" && this.#nl && out.dest === out.reply.yiaddr) this.#learn(out.dest, macOf(out.reply));
      const bytes = encodeReply(out.reply, h.req);
      const sent =
        out.to === "broadcast" && this.#raw
          ? this.#sendBroadcast(bytes, out.source)
          : this.#sock.send(bytes, this.#clientPort, this.#loopback ? "127.0.0.1" : out.dest);
      if (!sent) this.#stats.sendErrors++;
      else {
        const t = TYPE_NAMES[out.type] ?? String(out.type);
        this.#stats.replies[t] = (this.#stats.replies[t] ?? 0) + 1;
      }
    } catch (e) {
      this.#stats.sendErrors++;
      this.#log("warn", `dhcp: reply to ${out.dest}: ${(e as Error).message}`);
    }
  }

  /** A broadcast reply as a whole frame on the bridge: from the bridge's MAC and the network's
   * gateway (`source`) to everyone on the link. */
  #sendBroadcast(bytes: Uint8Array, source: string): boolean {
    const mac = getLink(this.#bridge, this.#nl)?.mac;
    if (!mac || !this.#raw) return false;
    const frame = ethernet(
      { src: mac, dst: "ff:ff:ff:ff:ff:ff", type: ETH_P.IP },
      ipv4(
        { src: source, dst: "255.255.255.255", proto: IPPROTO.UDP },
        udpSegment({ src: source, dst: "255.255.255.255", sport: this.#port, dport: this.#clientPort }, bytes),
      ),
    );
    return this.#raw.send(frame) === 1;
  }

  /** A client without its address yet cannot answer ARP: the reply's neighbour entry is
   * written first (the profile's MAC, which the port enforces anyway). */
  #learn(ip: string, mac: string): void {
    const now = Date.now();
    if ((this.#neigh.get(ip) ?? 0) > now - 30_000) return;
    setNeighbour(this.#bridge, ip, mac, this.#nl, NL.NUD_STALE);
    if (this.#neigh.size > 100_000) this.#neigh.clear();
    this.#neigh.set(ip, now);
  }

  /** One request in, its outcome out (and the lease state updated). Never throws for any
   * input: a bad packet is counted as malformed. */
  handle(buf: Uint8Array, now = Date.now()): { req: Dhcp4Message; out: Outcome4 } | undefined {
    let req: Dhcp4Message;
    try {
      req = parseDhcp4(buf);
    } catch (e) {
      if (!(e instanceof Dhcp4FormatError)) this.#log("warn", `dhcp: parser: ${(e as Error).message}`);
      this.#stats.malformed++;
      return undefined;
    }
    let out: Outcome4;
    try {
      const t = req.options.get(OPT.MSG_TYPE);
      const name = t?.length === 1 ? (TYPE_NAMES[t[0] as number] ?? "other") : "bootp";
      this.#stats.received[name] = (this.#stats.received[name] ?? 0) + 1;
      out = respond4(req, (mac) => this.#binding(mac));
    } catch (e) {
      // A well-formed message with a hostile option value (a bad requested address, say).
      if (!(e instanceof Dhcp4FormatError)) this.#log("warn", `dhcp: ${(e as Error).message}`);
      this.#stats.malformed++;
      return undefined;
    }
    switch (out.kind) {
      case "ignore":
        this.#stats.ignored[out.why]++;
        break;
      case "reply":
        if (out.type === DHCP4.ACK && out.reply.yiaddr !== "0.0.0.0") {
          const b = this.#binding(macOf(out.reply)) as Binding4;
          const host = req.options.get(OPT.HOSTNAME);
          let hostname: string | undefined;
          try {
            hostname = host ? dec.text(host).slice(0, 255) : undefined;
          } catch {}
          this.#save(leaseOf(b, hostname, "bound", now + b.network.dhcpLeaseTime * 1000, now));
        }
        break;
      case "release":
        this.#stats.releases++;
        this.#end(out.binding, "released", now);
        break;
      case "decline":
        this.#stats.declines++;
        this.#log(
          "warn",
          `dhcp: ${out.binding.endpoint} (${out.binding.mac}) declined ${out.binding.ip}: another host answers for that address on network ${out.binding.network.name}`,
        );
        this.#end(out.binding, "declined", now);
        break;
    }
    return { req, out };
  }

  #end(b: Binding4, state: "released" | "declined", now: number): void {
    const cur = this.#leases.get(`${b.network.name} ${b.mac}`);
    this.#save(leaseOf(b, cur?.hostname, state, now, now));
  }

  /** A new or changed lease is written at once. A renewal that only moves the expiry is
   * written with the others within FLUSH_MS, in one transaction: the address is the
   * profile's whatever the stored expiry says, so an agent killed before the flush loses
   * nothing a client depends on, and a renew storm costs no write per ACK. */
  #save(l: Lease): void {
    const key = `${l.network} ${l.mac}`;
    const cur = this.#leases.get(key);
    this.#leases.set(key, l);
    if (
      cur !== undefined &&
      l.state === "bound" &&
      cur.state === "bound" &&
      cur.ip === l.ip &&
      cur.endpoint === l.endpoint &&
      cur.hostname === l.hostname
    ) {
      this.#dirty.add(key);
      this.#flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS);
      this.#flushTimer.unref?.();
      return;
    }
    this.#dirty.delete(key);
    try {
      this.#store.putLease(l);
    } catch (e) {
      this.#log("warn", `dhcp: store lease of ${l.mac}: ${(e as Error).message}`);
    }
  }

  /** Writes the renewals not yet in the store (close() does too). */
  flush(): void {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#dirty.size === 0) return;
    const ls: Lease[] = [];
    for (const k of this.#dirty) {
      const l = this.#leases.get(k);
      if (l) ls.push(l);
    }
    this.#dirty.clear();
    try {
      this.#store.putLeases(ls);
    } catch (e) {
      this.#log("warn", `dhcp: store ${ls.length} lease renewals: ${(e as Error).message}`);
    }
  }

  stats(now = Date.now()): Dhcp4Stats {
    let active = 0;
    for (const l of this.#leases.values()) if (l.state === "bound" && l.expiresAt > now) active++;
    return { ...this.#stats, leasesActive: active };
  }

  close(): void {
    this.flush();
    this.#sock?.close();
    this.#sock = undefined;
    this.#raw?.close();
    this.#raw = undefined;
  }
}
