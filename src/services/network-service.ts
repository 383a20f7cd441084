/** Networks as operations: validate against the store, write the store in one transaction,
 * then make the kernel match (gateway addresses, profiles, subnets, the egress cap). A
 * network's firewall scope comes and goes with it (its rules: the firewall service). A change
 * that fails half-way is undone in reverse: nothing is left half-applied. */
import type { NetworkView } from "../api/contract";
import { Undo } from "../backends";
import { PROFILE_F } from "../datapath/port-maps";
import { SHAPE_KIND } from "../datapath/shape-maps";
import { ERRNO, StratumError } from "../errors";
import { parseSubnet } from "../model/ip";
import { hostIndex, type Network, type NetworkSpec, profileCount, validateNetwork, vniOf } from "../model/network";
import { USER_BRIDGE } from "../model/topology";
import { addAddress, deleteAddress, getLink, listAddresses, STRATUM_ADDR_PROTO, setLink } from "../netlink";
import type { StoredNetwork } from "../store/store";
import { growth, networkEntries } from "./capacity";
import type { EndpointService } from "./endpoint-service";
import type { FirewallService } from "./firewall-service";
import { applyNat } from "./nat";
import { portConfig } from "./port-config";
import type { ServiceContext } from "./service-context";

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
    | "nat"
  >
>;

export class NetworkService {
  /** Deleting a network with --force detaches its endpoints first. */
  #endpoints: EndpointService | undefined;

  constructor(
    readonly ctx: ServiceContext,
    readonly fw: FirewallService,
  ) {}

  useEndpoints(endpoints: EndpointService): void {
    this.#endpoints = endpoints;
  }

  get store() {
    return this.ctx.store;
  }

  get dp() {
    return this.ctx.dp;
  }

  get nl() {
    return this.ctx.nl;
  }

  get log() {
    return this.ctx.log;
  }

  /** Cap counters are read by showNetwork only. */
  view(n: StoredNetwork): NetworkView {
    const eps = this.store.endpointNames(n.name);
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
      vni: this.store.node ? vniOf(n.id) : null,
      defaultAction: n.defaultAction,
      dhcpLeaseTime: n.dhcpLeaseTime,
      dhcpRoutes: n.dhcpRoutes,
      dhcpOptions: n.dhcpOptions,
      egress: n.egress ? { rate: n.egress.rate, burst: n.egress.burst } : null,
      extendToLan: n.extendToLan === true,
      nat: n.nat ? { addresses: n.nat.addresses, ...this.#natInKernel(n.id) } : null,
      createdAt: n.createdAt,
      profiles: { total: profileCount(n.cidr), claimed: eps.length },
      endpoints: eps,
      egressCounts: null,
    };
  }

  /** The addresses the datapath translates a masqueraded network's packets to. */
  #natInKernel(id: number): { v4: string | null; v6: string | null } {
    const c = this.dp.natNet(id);
    return { v4: c?.addr4 ?? null, v6: c?.addr6 ?? null };
  }

  /** Masquerading's kernel state for every network (services/nat.ts). */
  applyNat(): void {
    applyNat(this.ctx, this.store.listNetworks());
  }

  list(): NetworkView[] {
    return this.store.listNetworks().map((n) => this.view(n));
  }

  /** The stored network `name`, or NOT_FOUND. */
  must(name: string): StoredNetwork {
    const n = this.store.getNetwork(name);
    if (!n) throw new StratumError("NOT_FOUND", `network ${name} does not exist`);
    return n;
  }

  show(name: string): NetworkView {
    const n = this.must(name);
    return { ...this.view(n), egressCounts: n.egress ? this.dp.capCounts(SHAPE_KIND.NETWORK, n.id) : null };
  }

  /** The gateway addresses a network puts on the user bridge: IPv4, and IPv6 when it has one;
   * each bare (`ip`) and with its subnet's prefix (`cidr`). */
  gateways(n: Network): Array<{ ip: string; cidr: string; v6: boolean }> {
    const out = [{ ip: n.gateway, cidr: `${n.gateway}/${parseSubnet(n.cidr).prefixLen}`, v6: false }];
    if (n.cidr6 && n.gateway6)
      out.push({ ip: n.gateway6, cidr: `${n.gateway6}/${parseSubnet(n.cidr6).prefixLen}`, v6: true });
    return out;
  }

  #profileFlags(n: StoredNetwork): (i: number) => number {
    const gw = hostIndex(n.cidr, n.gateway);
    const claimed = this.store.claimedIndexes(n.name);
    return (i) => (i === gw ? PROFILE_F.GATEWAY : claimed.has(i) ? PROFILE_F.CLAIMED : 0);
  }

  /** Kernel state of one network: its gateway addresses (and their local entries), profiles,
   * subnets and cap. The reconcile applies each part for every network in turn. */
  apply(n: StoredNetwork): void {
    this.applyGateways(n);
    this.applyProfiles(n);
    this.applySubnets(n);
    this.applyEgress(n);
  }

  /** The gateway addresses on the user bridge, tagged Stratum's, and marked local. `bridge`:
   * the bridge's index and addresses as read once for many networks (a reconcile of hundreds
   * of networks would dump them once per network). */
  applyGateways(n: StoredNetwork, bridge?: { index: number; addresses: Map<string, { proto?: number }> }): void {
    const br = bridge?.index ?? getLink(USER_BRIDGE, this.nl)?.index ?? 0;
    const have = bridge?.addresses ?? new Map(listAddresses({ dev: br }, this.nl).map((a) => [a.cidr, a]));
    for (const g of this.gateways(n)) {
      if (have.get(g.cidr)?.proto !== STRATUM_ADDR_PROTO)
        addAddress(USER_BRIDGE, g.cidr, { replace: true, noDad: g.v6, proto: STRATUM_ADDR_PROTO }, this.nl);
      this.dp.setLocal(g.ip, br, n.id);
    }
  }

  /** Every profile of the network: the gateway's, claimed, or free. */
  applyProfiles(n: StoredNetwork, have?: Map<number, Buffer>): void {
    this.dp.writeProfiles(n.id, n.cidr, this.#profileFlags(n), have);
  }

  /** The network's subnets in stm_subnets, with whether it is extended onto the LAN. */
  applySubnets(n: StoredNetwork): void {
    for (const c of [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]) this.dp.setSubnet(c, { netId: n.id, lan: n.extendToLan });
  }

  /** The network's aggregate cap at the uplink: the bucket first, then the source prefixes
   * that fill it; on removal the other way round. */
  applyEgress(n: StoredNetwork): void {
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
    this.applySubnets(n);
    for (const ep of this.store.listEndpoints(n.name)) {
      const l = getLink(ep.hostIf, this.nl);
      if (l) this.dp.setPort(l.index, portConfig(ep, n, this.ctx.groupId(ep.group)));
    }
  }

  #removeNetworkKernel(n: StoredNetwork): void {
    this.applyEgress({ ...n, egress: undefined });
    for (const c of [n.cidr, ...(n.cidr6 ? [n.cidr6] : [])]) this.dp.deleteSubnet(c);
    this.dp.deleteProfiles(n.id, n.cidr);
    for (const g of this.gateways(n)) {
      this.dp.deleteLocal(g.ip);
      try {
        deleteAddress(USER_BRIDGE, g.cidr, this.nl);
      } catch (e) {
        if (!(e instanceof StratumError && (e.errno === ERRNO.EADDRNOTAVAIL || e.errno === ERRNO.ENOENT))) throw e;
      }
    }
  }

  create(spec: NetworkSpec): NetworkView {
    const mtu = spec.mtu ?? this.ctx.defaultMtu;
    const net = validateNetwork(mtu === undefined ? spec : { ...spec, mtu }, this.store.listNetworks());
    this.ctx.room(networkEntries(net), `create network ${net.name}`);
    const stored = this.store.createNetwork(net);
    try {
      this.apply(stored);
      this.fw.applyScope(stored.id);
      if (stored.nat) this.applyNat();
    } catch (e) {
      const undo = new Undo();
      undo.push("remove kernel state", () => this.#removeNetworkKernel(stored));
      undo.push("remove firewall scope", () => this.fw.removeScope(stored.id));
      undo.push("forget network", () => this.store.deleteNetwork(stored.name));
      if (stored.nat) undo.push("masquerading", () => this.applyNat());
      undo.run(this.log);
      throw e instanceof StratumError ? e.wrap(`create network ${net.name}`) : e;
    }
    this.ctx.changed(new Set([stored.name]));
    return this.view(stored);
  }

  set(name: string, patch: NetworkPatch): NetworkView {
    const cur = this.must(name);
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
        nat: patch.nat === undefined ? spec.nat : patch.nat,
      },
      others,
    );
    this.ctx.room(growth(networkEntries(cur), networkEntries(next)), `set network ${name}`);
    // A new default action goes to the kernel first (FirewallService's order), then the store.
    const updated =
      next.defaultAction !== cur.defaultAction
        ? this.fw.changeDefault({ id: cur.id, name }, next.defaultAction, () => this.store.updateNetwork(name, next))
        : this.store.updateNetwork(name, next);
    if (patch.egress !== undefined) this.applyEgress(updated);
    if (next.extendToLan !== cur.extendToLan) this.#applyLan(updated);
    if (JSON.stringify(next.nat ?? null) !== JSON.stringify(cur.nat ?? null)) this.applyNat();
    if (patch.mtu !== undefined)
      for (const ep of this.store.listEndpoints(name))
        if (getLink(ep.hostIf, this.nl)) setLink(ep.hostIf, { mtu: next.mtu }, this.nl);
    this.ctx.changed(new Set([name]));
    return this.view(updated);
  }

  delete(name: string, force = false): void {
    const n = this.must(name);
    const eps = this.store.listEndpoints(name);
    if (eps.length && !force)
      throw new StratumError(
        "INVALID",
        `network ${name} has ${eps.length} endpoint(s) attached (${eps.map((e) => e.name).join(", ")}): detach them or use --force`,
      );
    for (const ep of eps) this.#endpoints?.detach(name, ep.name);
    this.#removeNetworkKernel(n);
    this.fw.removeScope(n.id);
    this.store.deleteNetwork(name);
    if (n.nat) this.applyNat();
    this.ctx.changed(new Set([name]));
  }
}
