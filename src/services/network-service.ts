/** Networks and endpoints as operations: validate against the store, write the store in
 * one transaction, then make the kernel match. A network's firewall scope comes and goes
 * with it (the rules themselves: FirewallService, `fw`). Every multi-step change keeps an undo list
 * and, when a step fails, undoes what it did in reverse (nothing is left half-applied:
 * no profile claimed, no interface, no program, no map entry). */

import { existsSync } from "node:fs";
import type { DnsRecordSelector, DnsRecordView, EndpointView, LeaseView, NetworkView } from "../api/contract";
import { FirewallTables } from "../datapath/firewall-tables";
import type { PortDatapath } from "../datapath/port-datapath";
import { type PortConfig, PROFILE_F } from "../datapath/port-maps";
import { SHAPE_KIND } from "../datapath/shape-maps";
import { StratumError } from "../errors";
import { type DnsRecordSpec, relativeOwner, validateDnsRecord } from "../model/dns-record";
import type { EgressCap } from "../model/egress-cap";
import { formatIp, hostRange, parseIp, parseSubnet } from "../model/ip";
import {
  checkName,
  hostAddress,
  hostIndex,
  linkLocal,
  type Network,
  type NetworkSpec,
  profileCount,
  profileIp6,
  profileMac,
  validateNetwork,
} from "../model/network";
import { hostIfName, MGMT_BRIDGE, USER_BRIDGE } from "../model/topology";
import {
  addAddress,
  addFdb,
  addRoute,
  createTap,
  createVeth,
  deleteAddress,
  deleteLinkIfExists,
  getLink,
  type Link,
  listAddresses,
  listFdb,
  netnsPath,
  Rtnl,
  rtnl,
  STRATUM_ADDR_PROTO,
  setBridgePort,
  setLink,
} from "../netlink";
import type { Endpoint, Lease, Store, StoredNetwork } from "../store/store";
import { checkRoom, type Entries, endpointEntries, growth, networkEntries } from "./capacity";
import { FirewallService, type FwKernel } from "./firewall-service";

export { hostIfName, MGMT_BRIDGE, USER_BRIDGE };

export interface AttachRequest {
  network: string;
  name: string;
  netns?: string;
  ifname?: string;
  tap?: string;
  ip?: string;
  configure?: boolean;
}

export type NetworkPatch = Partial<
  Pick<
    NetworkSpec,
    | "mtu"
    | "defaultAction"
    | "dnsForwarders"
    | "dhcpRange"
    | "dnsZone"
    | "dhcpLeaseTime"
    | "dhcpRoutes"
    | "dhcpOptions"
    | "egress"
    | "extendToLan"
  >
>;

/** What a port's programs check for an endpoint of network `n`. */
export function portConfig(ep: Pick<Endpoint, "ip" | "mac" | "egress">, n: StoredNetwork): PortConfig {
  return {
    ...(ep.egress ? { shaped: true } : {}),
    ...(n.extendToLan ? { lan: true } : {}),
    netId: n.id,
    ip4: ep.ip,
    mac: ep.mac,
    cidr4: n.cidr,
    gw4: n.gateway,
    ...(n.cidr6 ? { ip6: profileIp6(n.cidr6, ep.mac), cidr6: n.cidr6 } : {}),
    ...(n.gateway6 ? { gw6: n.gateway6 } : {}),
  };
}

/** The addresses of an endpoint the uplink must never accept from outside. */
export function endpointLocals(ep: Pick<Endpoint, "ip" | "mac">, n: StoredNetwork): string[] {
  return [ep.mac, ep.ip, linkLocal(ep.mac), ...(n.cidr6 ? [profileIp6(n.cidr6, ep.mac)] : [])];
}

/** An interface name the kernel takes (IFNAMSIZ: at most 15 bytes; no '/', ':' or white space;
 * not "." or ".."), checked before anything is claimed or created. */
export function checkIfName(name: string, what: string): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name) || name === "." || name === "..")
    throw new StratumError(
      "INVALID",
      `${what} "${name.length > 40 ? `${name.slice(0, 40)}…` : name}" is not an interface name: 1-15 letters, digits, '.', '-' or '_'`,
    );
  return name;
}

/** MACs of FDB entries by port ifindex. */
export function fdbMacs(entries: Array<{ ifindex: number; mac?: string }>): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const f of entries) if (f.mac) out.set(f.ifindex, [...(out.get(f.ifindex) ?? []), f.mac.toLowerCase()]);
  return out;
}

class Undo {
  #steps: Array<[string, () => void]> = [];
  push(what: string, fn: () => void): void {
    this.#steps.push([what, fn]);
  }
  /** Runs every undo step in reverse; a failing step is reported and the rest still run. */
  run(log: (msg: string) => void): void {
    for (const [what, fn] of this.#steps.reverse()) {
      try {
        fn();
      } catch (e) {
        log(`rollback: ${what}: ${(e as Error).message}`);
      }
    }
    this.#steps = [];
  }
}

export class NetworkService {
  readonly fw: FirewallService;
  /** Called after every change that the DHCP and DNS servers serve (networks, endpoints,
   * records): they rebuild what they answer from the store. */
  readonly #listeners: Array<() => void> = [];

  /** `fwKernel`: the firewall's tables (default: on `dp`, which must be open). */
  constructor(
    readonly store: Store,
    readonly dp: PortDatapath,
    readonly nl: Rtnl = rtnl(),
    readonly log: (msg: string) => void = () => {},
    fwKernel: FwKernel = new FirewallTables(dp),
  ) {
    this.fw = new FirewallService(store, fwKernel, log);
  }

  onChange(fn: () => void): void {
    this.#listeners.push(fn);
  }

  #changed(): void {
    for (const fn of this.#listeners) {
      try {
        fn();
      } catch (e) {
        this.log(`refresh after a change: ${(e as Error).message}`);
      }
    }
  }

  // ---- DHCP leases and DNS records ----------------------------------------------------------

  dhcpLeases(network?: string, now = Date.now()): LeaseView[] {
    if (network) this.mustNetwork(network);
    return this.store
      .loadLeases()
      .filter((r) => network === undefined || r.network === network)
      .map((r) => ({
        network: String(r.network),
        mac: String(r.mac),
        family: Number(r.family) as 4 | 6,
        ip: String(r.ip),
        endpoint: r.endpoint ? String(r.endpoint) : null,
        hostname: r.hostname ? String(r.hostname) : null,
        state: String(r.state) as Lease["state"],
        // Stored as ms since the epoch; the API speaks RFC 3339.
        expiresAt: new Date(Number(r.expires_at)).toISOString(),
        updatedAt: new Date(Number(r.updated_at)).toISOString(),
        active: String(r.state) === "bound" && Number(r.expires_at) > now,
      }))
      .sort(
        (a, b) =>
          a.network.localeCompare(b.network) ||
          a.family - b.family ||
          a.ip.localeCompare(b.ip, "en", { numeric: true }),
      );
  }

  dnsRecords(network?: string): DnsRecordView[] {
    if (network) this.mustNetwork(network);
    return this.store.listDnsRecords(network);
  }

  addDnsRecord(network: string, spec: DnsRecordSpec): DnsRecordView {
    const n = this.mustNetwork(network);
    const rec = validateDnsRecord(
      n.dnsZone,
      spec,
      this.store.listDnsRecords(network),
      this.store.listEndpoints(network).map((e) => e.name),
    );
    const stored = this.store.addDnsRecord(network, rec);
    this.#changed();
    return stored;
  }

  /** Deletes the records `sel` names; NOT_FOUND when it names none. Returns what went. */
  deleteDnsRecords(network: string, sel: DnsRecordSelector): DnsRecordView[] {
    const n = this.mustNetwork(network);
    if (sel.id === undefined && sel.name === undefined)
      throw new StratumError("INVALID", "name the record: its id, or its owner name (with type and value to narrow)");
    const owner = sel.name === undefined ? undefined : relativeOwner(n.dnsZone, sel.name);
    // A value is matched in its stored form ("10 5 8080 web" → "10 5 8080 web.<zone>").
    let value = sel.value;
    if (sel.value !== undefined && sel.type !== undefined && sel.name !== undefined)
      try {
        value = validateDnsRecord(n.dnsZone, { name: sel.name, type: sel.type, value: sel.value }, [], []).value;
      } catch {}
    const hit = this.store
      .listDnsRecords(network)
      .filter(
        (r) =>
          (sel.id === undefined || r.id === sel.id) &&
          (owner === undefined || r.name === owner) &&
          (sel.type === undefined || r.type === sel.type.toUpperCase()) &&
          (value === undefined || r.value === value || r.value === value.toLowerCase().replace(/\.$/, "")),
      );
    if (!hit.length) throw new StratumError("NOT_FOUND", `no DNS record in network ${network} matches`);
    this.store.deleteDnsRecords(
      network,
      hit.map((r) => r.id),
    );
    this.#changed();
    return hit;
  }

  /** `n`: the endpoint's network when the caller has it already (lists read each network once).
   * Drops and cap counters are read by showEndpoint only. */
  #endpointView(e: Endpoint, n = this.store.getNetwork(e.network)): EndpointView {
    return {
      name: e.name,
      network: e.network,
      ip: e.ip,
      ip6: n?.cidr6 ? profileIp6(n.cidr6, e.mac) : null,
      mac: e.mac,
      hostIndex: e.hostIndex,
      kind: e.kind,
      interface: e.hostIf,
      netns: e.netns ?? null,
      ifname: e.ifname ?? null,
      egress: e.egress ? { rate: e.egress.rate, burst: e.egress.burst } : null,
      createdAt: e.createdAt,
      drops: null,
      egressCounts: null,
    };
  }

  /** Cap counters are read by showNetwork only. */
  #view(n: StoredNetwork): NetworkView {
    const eps = this.store.listEndpoints(n.name);
    return {
      id: n.id,
      name: n.name,
      cidr: n.cidr,
      gateway: n.gateway,
      cidr6: n.cidr6 ?? null,
      gateway6: n.gateway6 ?? null,
      dhcpRange: { first: n.dhcpRange.first, last: n.dhcpRange.last },
      dnsZone: n.dnsZone,
      dnsForwarders: n.dnsForwarders,
      mtu: n.mtu,
      defaultAction: n.defaultAction,
      dhcpLeaseTime: n.dhcpLeaseTime,
      dhcpRoutes: n.dhcpRoutes,
      dhcpOptions: n.dhcpOptions,
      egress: n.egress ? { rate: n.egress.rate, burst: n.egress.burst } : null,
      extendToLan: n.extendToLan === true,
      createdAt: n.createdAt,
      profiles: { total: profileCount(n.cidr), claimed: eps.length },
      endpoints: eps.map((e) => e.name),
      egressCounts: null,
    };
  }

  listNetworks(): NetworkView[] {
    return this.store.listNetworks().map((n) => this.#view(n));
  }

  mustNetwork(name: string): StoredNetwork {
    const n = this.store.getNetwork(name);
    if (!n) throw new StratumError("NOT_FOUND", `network ${name} does not exist`);
    return n;
  }

  showNetwork(name: string): NetworkView {
    const n = this.mustNetwork(name);
    return { ...this.#view(n), egressCounts: n.egress ? this.dp.capCounts(SHAPE_KIND.NETWORK, n.id) : null };
  }

  /** The gateway addresses a network puts on the user bridge: IPv4, and IPv6 when it has one;
   * each bare (`ip`) and with its subnet's prefix (`cidr`). */
  gateways(n: Network): Array<{ ip: string; cidr: string; v6: boolean }> {
    const out = [{ ip: n.gateway, cidr: `${n.gateway}/${parseSubnet(n.cidr).prefixLen}`, v6: false }];
    if (n.cidr6 && n.gateway6)
      out.push({ ip: n.gateway6, cidr: `${n.gateway6}/${parseSubnet(n.cidr6).prefixLen}`, v6: true });
    return out;
  }

  /** CAPACITY, before anything is written, when `need` does not fit in the maps (capacity.ts). */
  #room(need: Partial<Entries>, what: string): void {
    checkRoom(this.store, this.dp, need, what);
  }

  #profileFlags(n: StoredNetwork): (i: number) => number {
    const gw = hostIndex(n.cidr, n.gateway);
    const claimed = this.store.claimedIndexes(n.name);
    return (i) => (i === gw ? PROFILE_F.GATEWAY : claimed.has(i) ? PROFILE_F.CLAIMED : 0);
  }

  /** Kernel state of one network: gateway address(es) on the user bridge and every profile. */
  applyNetwork(n: StoredNetwork): void {
    const br = getLink(USER_BRIDGE, this.nl)?.index ?? 0;
    const have = new Map(listAddresses({ dev: br }, this.nl).map((a) => [a.cidr, a]));
    for (const g of this.gateways(n)) {
      if (have.get(g.cidr)?.proto !== STRATUM_ADDR_PROTO)
        addAddress(USER_BRIDGE, g.cidr, { replace: true, noDad: g.v6, proto: STRATUM_ADDR_PROTO }, this.nl);
      this.dp.setLocal(g.ip, br, n.id);
    }
    this.dp.writeProfiles(n.id, n.cidr, this.#profileFlags(n));
    for (const c of [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]) this.dp.setSubnet(c, { netId: n.id, lan: n.extendToLan });
    this.applyNetworkEgress(n);
  }

  /** The network's aggregate cap at the uplink: the bucket first, then the source prefixes
   * that fill it; on removal the other way round. */
  applyNetworkEgress(n: StoredNetwork): void {
    const cidrs = [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])];
    if (n.egress) {
      this.dp.setCap(SHAPE_KIND.NETWORK, n.id, n.egress);
      for (const c of cidrs) this.dp.setCapSource(c, n.id);
    } else {
      for (const c of cidrs) this.dp.deleteCapSource(c);
      this.dp.deleteCap(SHAPE_KIND.NETWORK, n.id);
    }
  }

  /** A network extended onto the LAN, or taken back: its ports' flags and its subnets' entries. */
  #applyLan(n: StoredNetwork): void {
    for (const c of [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]) this.dp.setSubnet(c, { netId: n.id, lan: n.extendToLan });
    for (const ep of this.store.listEndpoints(n.name)) {
      const l = getLink(ep.hostIf, this.nl);
      if (l) this.dp.setPort(l.index, portConfig(ep, n));
    }
  }

  #removeNetworkKernel(n: StoredNetwork): void {
    this.applyNetworkEgress({ ...n, egress: undefined });
    for (const c of [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]) this.dp.deleteSubnet(c);
    this.dp.deleteProfiles(n.id, n.cidr);
    for (const g of this.gateways(n)) {
      this.dp.deleteLocal(g.ip);
      try {
        deleteAddress(USER_BRIDGE, g.cidr, this.nl);
      } catch (e) {
        if (!(e instanceof StratumError && (e.errno === 99 || e.errno === 2))) throw e;
      }
    }
  }

  createNetwork(spec: NetworkSpec): NetworkView {
    const net = validateNetwork(spec, this.store.listNetworks());
    this.#room(networkEntries(net), `create network ${net.name}`);
    const stored = this.store.createNetwork(net);
    try {
      this.applyNetwork(stored);
      this.fw.applyScope(stored.id);
    } catch (e) {
      const undo = new Undo();
      undo.push("remove kernel state", () => this.#removeNetworkKernel(stored));
      undo.push("remove firewall scope", () => this.fw.removeScope(stored.id));
      undo.push("forget network", () => this.store.deleteNetwork(stored.name));
      undo.run(this.log);
      throw e instanceof StratumError ? e.wrap(`create network ${net.name}`) : e;
    }
    this.#changed();
    return this.#view(stored);
  }

  setNetwork(name: string, patch: NetworkPatch): NetworkView {
    const cur = this.mustNetwork(name);
    const { id: _i, createdAt: _c, ...spec } = cur;
    const others = this.store.listNetworks().filter((n) => n.name !== name);
    const next = validateNetwork(
      {
        ...spec,
        dhcpRange: patch.dhcpRange ?? `${spec.dhcpRange.first}-${spec.dhcpRange.last}`,
        mtu: patch.mtu ?? spec.mtu,
        defaultAction: patch.defaultAction ?? spec.defaultAction,
        dnsForwarders: patch.dnsForwarders ?? spec.dnsForwarders,
        dnsZone: patch.dnsZone ?? spec.dnsZone,
        dhcpLeaseTime: patch.dhcpLeaseTime ?? spec.dhcpLeaseTime,
        dhcpRoutes: patch.dhcpRoutes ?? spec.dhcpRoutes,
        dhcpOptions: patch.dhcpOptions ?? spec.dhcpOptions,
        egress: patch.egress === undefined ? spec.egress : patch.egress,
        extendToLan: patch.extendToLan ?? spec.extendToLan,
      },
      others,
    );
    this.#room(growth(networkEntries(cur), networkEntries(next)), `set network ${name}`);
    // A new default action goes to the kernel first (FirewallService's order), then the store.
    const updated =
      next.defaultAction !== cur.defaultAction
        ? this.fw.changeDefault({ id: cur.id, name }, next.defaultAction, () => this.store.updateNetwork(name, next))
        : this.store.updateNetwork(name, next);
    if (patch.egress !== undefined) this.applyNetworkEgress(updated);
    if (next.extendToLan !== cur.extendToLan) this.#applyLan(updated);
    if (patch.mtu !== undefined)
      for (const ep of this.store.listEndpoints(name))
        if (getLink(ep.hostIf, this.nl)) setLink(ep.hostIf, { mtu: next.mtu }, this.nl);
    this.#changed();
    return this.#view(updated);
  }

  deleteNetwork(name: string, force = false): void {
    const n = this.mustNetwork(name);
    const eps = this.store.listEndpoints(name);
    if (eps.length && !force)
      throw new StratumError(
        "INVALID",
        `network ${name} has ${eps.length} endpoint(s) attached (${eps.map((e) => e.name).join(", ")}): detach them or use --force`,
      );
    for (const ep of eps) this.detach(name, ep.name);
    this.#removeNetworkKernel(n);
    this.fw.removeScope(n.id);
    this.store.deleteNetwork(name);
    this.#changed();
  }

  // ---- endpoints ----------------------------------------------------------------------------

  listEndpoints(network?: string): EndpointView[] {
    if (network) this.mustNetwork(network);
    const networks = new Map(this.store.listNetworks().map((n) => [n.name, n]));
    return this.store.listEndpoints(network).map((e) => this.#endpointView(e, networks.get(e.network)));
  }

  /** One endpoint with its port's drop counters. */
  showEndpoint(name: string): EndpointView {
    const e = this.store.getEndpoint(name);
    if (!e) throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
    const link = getLink(e.hostIf, this.nl);
    return {
      ...this.#endpointView(e),
      drops: link ? this.dp.drops(link.index) : null,
      egressCounts: link && e.egress ? this.dp.capCounts(SHAPE_KIND.ENDPOINT, link.index) : null,
    };
  }

  /** Sets, changes (in place: flows go on at the new rate) or with null removes an
   * endpoint's egress cap. The cap is in the datapath before the port is told to use it, and
   * the port stops using it before it goes. */
  setEndpointEgress(name: string, cap: EgressCap | null): EndpointView {
    const e = this.store.getEndpoint(name);
    if (!e) throw new StratumError("NOT_FOUND", `endpoint ${name} does not exist`);
    const n = this.mustNetwork(e.network);
    this.#room(growth(endpointEntries(e, n), endpointEntries({ egress: cap ?? undefined }, n)), `set endpoint ${name}`);
    const link = getLink(e.hostIf, this.nl);
    if (link) this.#setPortAndCap(link.index, { ...e, egress: cap ?? undefined }, n);
    try {
      this.store.setEndpointEgress(name, cap);
    } catch (err) {
      if (link) this.#setPortAndCap(link.index, e, n); // back to what the store still says
      throw err;
    }
    this.#changed();
    return this.showEndpoint(name);
  }

  #pickAddress(n: StoredNetwork, ip?: string): { index: number; ip: string } {
    const gw = hostIndex(n.cidr, n.gateway);
    const claimed = this.store.claimedIndexes(n.name);
    if (ip !== undefined) {
      const index = hostIndex(n.cidr, formatIp(parseIp(ip)));
      if (index === gw) throw new StratumError("INVALID", `${ip} is the gateway address of network ${n.name}`);
      const holder = this.store.listEndpoints(n.name).find((e) => e.hostIndex === index);
      if (holder) throw new StratumError("INVALID", `${ip} is already claimed by endpoint ${holder.name}`);
      return { index, ip: hostAddress(n.cidr, index) };
    }
    const r = hostRange(parseSubnet(n.cidr));
    const total = Number(r.last - r.first + 1n);
    for (let i = 0; i < total; i++) if (i !== gw && !claimed.has(i)) return { index: i, ip: hostAddress(n.cidr, i) };
    throw new StratumError("INVALID", `network ${n.name} has no free address left`);
  }

  attach(req: AttachRequest): EndpointView {
    const name = checkName("endpoint", req.name);
    const n = this.mustNetwork(req.network);
    if ((req.netns === undefined) === (req.tap === undefined))
      throw new StratumError("INVALID", "give exactly one of --netns (container) or --tap (VM)");
    if (this.store.getEndpoint(name)) throw new StratumError("CONFLICT", `endpoint ${name} already exists`);
    if (req.tap !== undefined && req.configure)
      throw new StratumError("INVALID", "--configure applies to --netns endpoints (a VM configures itself)");
    if (req.tap !== undefined) checkIfName(req.tap, "--tap");
    if (req.ifname !== undefined) {
      if (req.netns === undefined) throw new StratumError("INVALID", "--ifname names the interface inside --netns");
      checkIfName(req.ifname, "--ifname");
    }
    const { index, ip } = this.#pickAddress(n, req.ip);
    const mac = profileMac(n.id, index);
    const prefixLen = parseSubnet(n.cidr).prefixLen;
    const hostIf = req.tap ?? hostIfName(name);
    const ifname = req.netns !== undefined ? (req.ifname ?? "eth0") : undefined;

    if (getLink(hostIf, this.nl)) throw new StratumError("CONFLICT", `interface ${hostIf} already exists on this node`);
    this.#room(endpointEntries({}, n), `attach ${name} to ${n.name}`);
    let nsNl: Rtnl | undefined;
    if (req.netns !== undefined) {
      if (!existsSync(netnsPath(req.netns)))
        throw new StratumError("INVALID", `network namespace ${req.netns} does not exist (${netnsPath(req.netns)})`);
      nsNl = new Rtnl({ netns: req.netns });
      if (getLink(ifname as string, nsNl))
        throw new StratumError("CONFLICT", `interface ${ifname} already exists in namespace ${req.netns}`);
    }

    const undo = new Undo();
    try {
      const ep = this.store.claimEndpoint({
        name,
        network: n.name,
        ip,
        mac,
        hostIndex: index,
        kind: req.tap !== undefined ? "tap" : "veth",
        hostIf,
        netns: req.netns,
        ifname,
      });
      undo.push("release profile", () => this.store.releaseEndpoint(name));
      this.dp.setProfile(n.id, n.cidr, index, PROFILE_F.CLAIMED);
      undo.push("unclaim profile", () => this.dp.setProfile(n.id, n.cidr, index, 0));
      this.#plugPort(ep, n, undo);
      if (req.configure && nsNl) this.#configure(nsNl, ifname as string, `${ip}/${prefixLen}`, n, mac);
      this.#changed();
      return this.#endpointView(ep);
    } catch (e) {
      undo.run(this.log);
      throw e instanceof StratumError ? e.wrap(`attach ${name} to ${n.name}`) : e;
    } finally {
      nsNl?.close();
    }
  }

  /** Creates (if missing) and wires the host side of an endpoint: bridge port with learning
   * and unicast flooding off, port config, programs, static FDB entry, then link up. */
  #plugPort(ep: Endpoint, n: StoredNetwork, undo: Undo, fdbs?: Map<number, string[]>): number {
    const link = this.#preparePort(ep, n, undo);
    this.#wirePort(ep, link, undo, fdbs);
    return link.index;
  }

  /** The first half of plugging a port: the device (created down if missing), its
   * configuration, cap and local addresses in the maps. No program is swapped yet. */
  #preparePort(ep: Endpoint, n: StoredNetwork, undo: Undo): Link {
    let link = getLink(ep.hostIf, this.nl);
    if (!link) {
      if (ep.kind === "veth") {
        if (!ep.netns || !existsSync(netnsPath(ep.netns)))
          throw new StratumError("NOT_FOUND", `network namespace ${ep.netns} of endpoint ${ep.name} does not exist`);
        link = createVeth(
          ep.hostIf,
          ep.ifname ?? "eth0",
          { peerNetns: ep.netns, peerMac: ep.mac, mtu: n.mtu },
          this.nl,
        );
      } else {
        link = createTap(ep.hostIf, { mtu: n.mtu }, this.nl);
      }
      undo.push(`delete ${ep.hostIf}`, () => deleteLinkIfExists(ep.hostIf, this.nl));
      this.dp.clearDrops(link.index); // a new device may reuse the ifindex of a deleted one
    }
    // Programs and port configuration go in before the port comes up: never a moment without them.
    const ifindex = link.index;
    // No cap: none left over from a reused ifindex either.
    this.#setPortAndCap(ifindex, ep, n);
    undo.push("remove egress cap", () => this.dp.deleteCap(SHAPE_KIND.ENDPOINT, ifindex));
    undo.push("remove port config", () => this.dp.deletePort(ifindex));
    for (const a of endpointLocals(ep, n)) {
      this.dp.setLocal(a, ifindex, n.id);
      undo.push(`forget local address ${a}`, () => this.dp.deleteLocal(a));
    }
    return link;
  }

  /** The second half: programs (kept, or swapped in place), bridge membership, port flags,
   * the static FDB entry, then up. */
  #wirePort(ep: Endpoint, link: Link, undo: Undo, fdbs?: Map<number, string[]>): void {
    const ifindex = link.index;
    this.dp.attachPort(ifindex);
    undo.push("detach port programs", () => this.dp.detachPort(ifindex));
    // Each step only when the kernel differs: a restore of a port that is right changes nothing.
    let port = link;
    const br = getLink(USER_BRIDGE, this.nl);
    if (!br || port.master !== br.index) {
      setLink(ep.hostIf, { master: USER_BRIDGE }, this.nl);
      port = getLink(ep.hostIf, this.nl) ?? port;
    }
    if (port.bridgePort?.learning !== false || port.bridgePort?.unicastFlood !== false)
      setBridgePort(ep.hostIf, { learning: false, unicastFlood: false }, this.nl);
    const fdb = (fdbs ?? fdbMacs(listFdb({ dev: ifindex }, this.nl))).get(ifindex) ?? [];
    if (!fdb.includes(ep.mac.toLowerCase())) addFdb({ dev: ep.hostIf, mac: ep.mac }, {}, this.nl);
    if (!port.up) setLink(ep.hostIf, { up: true }, this.nl);
  }

  /** A port's configuration and its endpoint's cap, in the order that never leaves the port
   * pointing at a missing cap: the cap before a port that uses it, after one that stopped. */
  #setPortAndCap(ifindex: number, ep: Endpoint, n: StoredNetwork): void {
    if (ep.egress) {
      this.dp.setCap(SHAPE_KIND.ENDPOINT, ifindex, ep.egress);
      this.dp.setPort(ifindex, portConfig(ep, n));
    } else {
      this.dp.setPort(ifindex, portConfig(ep, n));
      this.dp.deleteCap(SHAPE_KIND.ENDPOINT, ifindex);
    }
  }

  #configure(nsNl: Rtnl, ifname: string, cidr: string, n: StoredNetwork, mac: string): void {
    setLink("lo", { up: true }, nsNl);
    setLink(ifname, { up: true, mtu: n.mtu }, nsNl);
    addAddress(ifname, cidr, { replace: true }, nsNl);
    addRoute({ dst: "default", gateway: n.gateway }, { replace: true }, nsNl);
    if (n.cidr6 && n.gateway6) {
      addAddress(ifname, `${profileIp6(n.cidr6, mac)}/64`, { replace: true, noDad: true }, nsNl);
      addRoute({ dst: "default", gateway: n.gateway6 }, { replace: true }, nsNl);
    }
  }

  detach(network: string, name: string): void {
    const n = this.mustNetwork(network);
    const ep = this.store.getEndpoint(name);
    if (!ep || ep.network !== n.name)
      throw new StratumError("NOT_FOUND", `endpoint ${name} is not attached to network ${network}`);
    const link = getLink(ep.hostIf, this.nl);
    // Down first, then programs off: the port never passes traffic without them.
    if (link) {
      setLink(ep.hostIf, { up: false }, this.nl);
      this.dp.detachPort(link.index);
      this.dp.deletePort(link.index);
      this.dp.deleteCap(SHAPE_KIND.ENDPOINT, link.index);
      this.dp.clearDrops(link.index);
    }
    for (const a of endpointLocals(ep, n)) this.dp.deleteLocal(a);
    deleteLinkIfExists(ep.hostIf, this.nl);
    this.store.releaseEndpoint(name);
    this.dp.setProfile(n.id, n.cidr, ep.hostIndex, 0);
    this.#changed();
  }

  /** Re-applies stored endpoints (restart, or a kernel that lost them); idempotent: a port
   * that is right is not touched. `fdbs`: the bridge's FDB by port ifindex, read once.
   * Two passes: every port's device and map entries first, then
   * every port's programs and wiring. After an upgrade the new programs use new maps: none
   * is swapped in before every entry any of them reads is written. Returns the errors, by
   * endpoint. */
  restoreEndpoints(eps: Endpoint[], fdbs?: Map<number, string[]>): { restored: number; errors: string[] } {
    const errors: string[] = [];
    const ready: Array<{ ep: Endpoint; link: Link }> = [];
    for (const ep of eps) {
      try {
        ready.push({ ep, link: this.#preparePort(ep, this.mustNetwork(ep.network), new Undo()) });
      } catch (e) {
        errors.push(`endpoint ${ep.name}: ${(e as Error).message}`);
      }
    }
    let restored = 0;
    for (const { ep, link } of ready) {
      try {
        this.#wirePort(ep, link, new Undo(), fdbs);
        restored++;
      } catch (e) {
        errors.push(`endpoint ${ep.name}: ${(e as Error).message}`);
      }
    }
    return { restored, errors };
  }
}
