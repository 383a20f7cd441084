/** The agent's address and name services for every network: the DHCPv4 server, the IPv6
 * router advertisements and DHCPv6 server, and the DNS server on each gateway address. They
 * serve what the store holds and are refreshed after every change of networks, endpoints or
 * records. A service that cannot start is logged and reported, never fatal: enforcement does
 * not depend on it. */

import { Ipv6Service, type Ipv6Stats, type V6Binding, type V6Network } from "../dhcp/ipv6-service";
import { Dhcp4Server, type Dhcp4Stats } from "../dhcp/server4";
import { DnsServer, type DnsStats, type ZoneInput } from "../dns/server";
import { linkLocal, profileIp6 } from "../model/network";
import { lowerBound } from "../model/sorted";
import { USER_BRIDGE } from "../model/topology";
import type { Rtnl } from "../netlink";
import { type Endpoint, localEndpoints, type Store, type StoredDnsRecord } from "../store/store";

type Log = (level: "info" | "warn", msg: string) => void;

export interface AddressingStats {
  dhcp4: Dhcp4Stats;
  dns: DnsStats;
  ipv6: Ipv6Stats;
  /** Services that failed to start, with why. */
  down: Record<string, string>;
}

export class Addressing {
  readonly dhcp4: Dhcp4Server;
  readonly dns: DnsServer;
  readonly ipv6: Ipv6Service;
  readonly #store: Store;
  readonly #log: Log;
  readonly #down: Record<string, string> = {};
  #pending: Promise<void> = Promise.resolve();
  #v6sync: ReturnType<typeof setInterval> | undefined;
  /** DHCPv6 bindings last written to the store, by "network mac" → "ip expiry". */
  #v6stored = new Map<string, string>();

  constructor(o: { store: Store; nl: Rtnl; log: Log; dnsForwarderPort?: number }) {
    this.#store = o.store;
    this.#log = o.log;
    this.dhcp4 = new Dhcp4Server({ store: o.store, bridge: USER_BRIDGE, nl: o.nl, log: o.log });
    this.dns = new DnsServer({ log: o.log, forwarderPort: o.dnsForwarderPort });
    this.ipv6 = new Ipv6Service({ bridge: USER_BRIDGE, log: o.log });
  }

  /** Loads the leases, opens the sockets and serves the current state. */
  async start(): Promise<void> {
    this.dhcp4.loadLeases(this.#store.listNetworks());
    await this.#startDown(["dhcp", "ipv6"]);
    this.refresh();
    await this.#pending;
    // DHCPv6 bindings live in the IPv6 service; the store gets them every few seconds so
    // `dhcp leases` lists them beside the DHCPv4 ones (and they survive a restart's listing).
    this.#v6sync = setInterval(() => this.#syncV6Leases(), 2000);
    this.#v6sync.unref?.();
  }

  /** Starts the services named (at start) or those down (at a refresh: the user bridge, for
   * one, exists only once a network does). A failure is recorded and logged once. */
  async #startDown(names: Array<"dhcp" | "ipv6">): Promise<void> {
    for (const name of names) {
      const svc = name === "dhcp" ? this.dhcp4 : this.ipv6;
      try {
        await svc.start();
        if (this.#down[name]) this.#log("info", `${name}: serving now`);
        delete this.#down[name];
      } catch (e) {
        const msg = (e as Error).message;
        if (this.#down[name] !== msg) this.#log("warn", `${name}: not serving: ${msg}`);
        this.#down[name] = msg;
      }
    }
  }

  #syncV6Leases(now = Date.now()): void {
    const macs = new Map(localEndpoints(this.#store).map((e) => [e.name, e.mac]));
    const seen = new Set<string>();
    for (const l of this.ipv6.leases()) {
      const mac = macs.get(l.endpoint);
      if (!mac) continue;
      const key = `${l.network} ${mac}`;
      seen.add(key);
      const val = `${l.ip6} ${l.expiresAt}`;
      if (this.#v6stored.get(key) === val) continue;
      try {
        this.#store.putLease({
          network: l.network,
          mac,
          family: 6,
          ip: l.ip6,
          endpoint: l.endpoint,
          state: "bound",
          expiresAt: l.expiresAt,
          updatedAt: now,
        });
        this.#v6stored.set(key, val);
      } catch (e) {
        this.#log("warn", `dhcp6: store binding of ${l.endpoint}: ${(e as Error).message}`);
      }
    }
    for (const key of this.#v6stored.keys()) {
      if (seen.has(key)) continue;
      const [network, mac] = key.split(" ") as [string, string];
      this.#v6stored.delete(key);
      try {
        if (this.#store.getNetwork(network)) this.#store.deleteLease(network, mac, 6);
      } catch {}
    }
  }

  /** Each network's endpoints (of every node) and DNS records as the last refresh read them. */
  #epsOf = new Map<string, Endpoint[]>();
  #recordsOf = new Map<string, StoredDnsRecord[]>();

  /** Rebuilds what every service answers from the store. `networks`: only these networks'
   * endpoints and records changed (every change says which, an API request's or another
   * node's): the others' are not read again, and their DNS zones are kept as they are (a
   * cluster holds every network's endpoints, and reading them all again on every change
   * anywhere took a fifth of a second at 60,000); with `endpoint`, only that endpoint of them
   * changed, and it alone is read again (an attach to a network of thousands). DNS listeners
   * open and close asynchronously; refreshes run one after another. */
  refresh(networks?: ReadonlySet<string>, endpoint?: string): void {
    const nets = this.#store.listNetworks();
    const node = this.#store.node;
    const isLocal = (e: Endpoint) => node === undefined || e.node === node;
    /** Set when one endpoint alone changed in networks already read: the servers take that
     * endpoint (before and after) instead of every endpoint again. */
    let only: { before?: Endpoint; after?: Endpoint } | undefined;
    if (!networks) {
      // Grouped once: a filter per network would go through every endpoint once per network.
      this.#epsOf = groupBy(this.#store.listEndpoints(), (e) => e.network);
      this.#recordsOf = groupBy(this.#store.listDnsRecords(), (r) => r.network);
    } else {
      const live = new Set(nets.map((n) => n.name));
      let gone = false;
      for (const name of [...this.#epsOf.keys()])
        if (!live.has(name)) {
          this.#epsOf.delete(name);
          gone = true;
        }
      for (const name of [...this.#recordsOf.keys()]) if (!live.has(name)) this.#recordsOf.delete(name);
      const one = endpoint === undefined ? undefined : this.#store.getEndpoint(endpoint);
      if (endpoint !== undefined && !gone) only = one?.network && networks.has(one.network) ? { after: one } : {};
      for (const n of nets) {
        const kept = this.#epsOf.get(n.name);
        if (kept && endpoint !== undefined && networks.has(n.name)) {
          const before = findByName(kept, endpoint);
          if (before && only) only.before = before;
          this.#epsOf.set(n.name, withEndpoint(kept, endpoint, one?.network === n.name ? one : null));
          continue;
        }
        if (networks.has(n.name) || !kept) {
          only = undefined;
          this.#epsOf.set(n.name, this.#store.listEndpoints(n.name));
          this.#recordsOf.set(n.name, this.#store.listDnsRecords(n.name));
        }
      }
    }
    // Every endpoint of every network for the names; this node's own for addresses (in a
    // cluster each node's DHCP and router advertisements serve the endpoints it runs).
    const served = (e: Endpoint | undefined) => (e && isLocal(e) ? e : undefined);
    if (only) this.dhcp4.updateEndpoint(nets, served(only.before), served(only.after));
    else this.dhcp4.update(nets, node === undefined ? [...this.#epsOf.values()].flat() : localEndpoints(this.#store));
    const unchanged = networks ? new Set(nets.filter((n) => !networks.has(n.name)).map((n) => n.name)) : undefined;

    const v6nets: V6Network[] = [];
    const v6binds: V6Binding[] = [];
    const zones: ZoneInput[] = [];
    for (const n of nets) {
      const eps = this.#epsOf.get(n.name) ?? [];
      zones.push({
        network: n,
        endpoints: eps,
        records: this.#recordsOf.get(n.name) ?? [],
      });
      if (!n.cidr6 || !n.gateway6) continue;
      v6nets.push({
        name: n.name,
        cidr6: n.cidr6,
        gateway6: n.gateway6,
        mtu: n.mtu,
        dnsZone: n.dnsZone,
        leaseTime: n.dhcpLeaseTime,
      });
      if (!only) for (const e of eps) if (isLocal(e)) v6binds.push(v6Binding(n.cidr6, e));
    }
    try {
      if (only) {
        const v6 = new Map(nets.map((n) => [n.name, n.cidr6 && n.gateway6 ? n.cidr6 : undefined]));
        const bind = (e: Endpoint | undefined) => {
          const cidr6 = e && isLocal(e) ? v6.get(e.network) : undefined;
          return e && cidr6 ? v6Binding(cidr6, e) : undefined;
        };
        this.ipv6.updateEndpoint(v6nets, bind(only.before), bind(only.after));
      } else this.ipv6.update(v6nets, v6binds);
    } catch (e) {
      this.#log("warn", `ipv6: ${(e as Error).message}`);
    }
    const down = (["dhcp", "ipv6"] as const).filter((n) => this.#down[n]);
    this.#pending = this.#pending
      .then(() => (down.length && nets.length ? this.#startDown([...down]) : undefined))
      .then(() => this.dns.update(zones, unchanged))
      .then(
        () => {
          delete this.#down.dns;
        },
        (e) => {
          this.#down.dns = (e as Error).message;
          this.#log("warn", `dns: ${(e as Error).message}`);
        },
      );
  }

  /** Resolves when the last refresh's listeners are open. */
  settled(): Promise<void> {
    return this.#pending;
  }

  stats(): AddressingStats {
    return { dhcp4: this.dhcp4.stats(), dns: this.dns.stats(), ipv6: this.ipv6.stats(), down: { ...this.#down } };
  }

  close(): void {
    if (this.#v6sync) clearInterval(this.#v6sync);
    this.dhcp4.close();
    this.dns.close();
    this.ipv6.close();
  }
}

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    const list = out.get(k);
    if (list) list.push(x);
    else out.set(k, [x]);
  }
  return out;
}

/** What the IPv6 address service serves an endpoint of a network with IPv6. */
function v6Binding(cidr6: string, e: Endpoint): V6Binding {
  return {
    endpoint: e.name,
    network: e.network,
    mac: e.mac,
    ip6: profileIp6(cidr6, e.mac),
    linkLocal: linkLocal(e.mac),
  };
}

/** Where `name` is or would go in a network's endpoints (sorted by name, as the store lists them). */
function nameIndex(list: readonly Endpoint[], name: string): number {
  return lowerBound(list, (e) => e.name < name);
}

function findByName(list: readonly Endpoint[], name: string): Endpoint | undefined {
  const e = list[nameIndex(list, name)];
  return e?.name === name ? e : undefined;
}

/** A network's endpoints (by name, as the store lists them) with `name` replaced by `e`, added,
 * or (null) taken out; a new array, the one given is left as it was. */
export function withEndpoint(list: readonly Endpoint[], name: string, e: Endpoint | null): Endpoint[] {
  const lo = nameIndex(list, name);
  const found = list[lo]?.name === name;
  const out = list.slice();
  if (e) out.splice(lo, found ? 1 : 0, e);
  else if (found) out.splice(lo, 1);
  return out;
}
