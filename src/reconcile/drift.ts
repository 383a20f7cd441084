/** Which rtnetlink notifications mean the kernel has drifted from what Stratum keeps there:
 * its bridges (up, with their MAC), each endpoint's port and the uplink (up, ports of the user
 * bridge; an endpoint's port with learning and unicast flooding off), the gateway addresses on
 * the user bridge (present, tagged IFA_PROTO 0x53; no other address so tagged) and each
 * endpoint's static FDB entry on its port. Everything else (another device, an ARP entry, the
 * operator's own address, a carrier change) is none of its business.
 *
 * A notice is judged by the state it reports, not by the fact that something changed: of all
 * notices about one object read together only the last counts, and it counts only if it
 * disagrees with the store. So the agent's own changes, which end in the state the store
 * asks for, open nothing, whoever made them; a port created down and then brought up is
 * right by the end of the batch.
 *
 * Apart from drift, the watch remembers whether any notice since untouch() was one a whole
 * run might act on: drift, or what the judge cannot see whole (a port's clsact programs
 * swapped, a port moved to another bridge, an extension bridge or its link touched). A quick
 * reconcile pass (seal.ts) trusts the kernel's per-port state only while none came. Pure:
 * no I/O. */

import { bridgeLinkNumber, MACVTAP_LOWER, USER_BRIDGE, userBridgeNumber } from "../model/topology";
import { NL, type RtnlEvent, STRATUM_ADDR_PROTO } from "../netlink";

/** What the store asks of the kernel, as far as notices can tell. */
export interface DesiredState {
  /** Bridge name → the MAC it must have. */
  bridges: Map<string, string>;
  /** Endpoint port (host-side interface) → its endpoint's profile MAC, lower case (a Map, or a
   * look-up in the store by port). */
  ports: Pick<ReadonlyMap<string, string>, "get" | "has">;
  uplink?: string;
  /** Gateway addresses the user bridge must have ("10.20.0.1/24"). */
  gateways: Set<string>;
}

/** The clsact qdisc (TC_H_INGRESS as its parent) or a filter on one of its two hooks: where
 * a port's programs are. A device's root qdisc comes and goes with it, none of Stratum's business. */
function onClsact(tc: { object: "qdisc" | "filter"; parent: number }): boolean {
  return tc.object === "qdisc" ? tc.parent === 0xfffffff1 : tc.parent === 0xfffffff2 || tc.parent === 0xfffffff3;
}

export class DriftWatch {
  readonly #desired: () => DesiredState;
  /** ifindex → name, from every link notice and the last seed: address and FDB notices name
   * their device by index only. */
  readonly #names = new Map<number, string>();
  /** Object → why it differs from the store, for the objects whose last notice disagreed. */
  readonly #open = new Map<string, string>();
  /** The ifindexes of cnv-user-br0 and its extensions, kept with #names. */
  readonly #userBridges = new Set<number>();
  /** Link notices that renamed a device, with the name it had. */
  readonly #renames = new WeakMap<RtnlEvent, string>();
  /** The first notice since untouch() that a whole run might act on, as a phrase. */
  #touched: string | undefined;
  /** ifindex → the bridge it was last seen on (link notices, the seed). */
  readonly #masters = new Map<number, number | undefined>();

  constructor(desired: () => DesiredState) {
    this.#desired = desired;
  }

  /** Learns the names of the links there are now (at start, and after notices were lost). */
  seed(links: Array<{ index: number; name: string; master?: number }>): void {
    this.#names.clear();
    this.#userBridges.clear();
    this.#masters.clear();
    for (const l of links) {
      this.#setName(l.index, l.name);
      this.#masters.set(l.index, l.master);
    }
  }

  /** Takes notices in the order the kernel sent them; true when they changed what differs. */
  observe(events: RtnlEvent[]): boolean {
    const last = new Map<string, RtnlEvent>();
    for (const ev of events) {
      const key = this.#key(ev);
      if (key === undefined) continue;
      last.delete(key); // keep the order of the last notices
      last.set(key, ev);
    }
    if (!last.size) return false;
    const want = this.#desired();
    let userBridge: number | undefined;
    for (const i of this.#userBridges) if (this.#names.get(i) === USER_BRIDGE) userBridge = i;
    // An endpoint's port may be on an extension of the user bridge (services/user-bridges.ts).
    const userBridges = this.#userBridges;
    let changed = false;
    for (const [key, ev] of last) {
      const why = this.#judge(ev, want, userBridge, userBridges);
      this.#touched ??= why ?? this.#beyond(ev, want);
      if (ev.kind === "link" && ev.link.family !== NL.AF_BRIDGE) {
        if (ev.op === "del") this.#masters.delete(ev.link.index);
        else this.#masters.set(ev.link.index, ev.link.master);
      }
      if (why === this.#open.get(key)) continue;
      changed = true;
      if (why) this.#open.set(key, why);
      else this.#open.delete(key);
    }
    return changed;
  }

  #setName(index: number, name: string): void {
    this.#names.set(index, name);
    if (userBridgeNumber(name) !== undefined) this.#userBridges.add(index);
    else this.#userBridges.delete(index);
  }

  /** Why the kernel differs from the store, one line per object, since the last clear(). */
  get drift(): string[] {
    return [...this.#open.values()];
  }

  /** A reconcile run is about to make everything right: what was open is its job now. */
  clear(): void {
    this.#open.clear();
  }

  /** The first notice since untouch() that a whole run might act on ("port tp7 is down",
   * "a notice about a filter on port tp7"); undefined when none came. */
  get touched(): string | undefined {
    return this.#touched;
  }

  /** A whole reconcile run has just found the kernel right: notices count from now. */
  untouch(): void {
    this.#touched = undefined;
  }

  /** Notices were lost: any of them may have been about Stratum's objects. */
  touch(why: string): void {
    this.#touched ??= why;
  }

  /** Whether a notice may make a whole run act on what the judge cannot see: the phrase
   * for it, or undefined. A whole run checks, device by device, a port's bridge (the judge
   * takes any of the user bridges), its clsact programs (a notice cannot say which program),
   * the extension bridges and their links and the static entries on those links; anything
   * else a notice reports the judge sees whole. */
  #beyond(ev: RtnlEvent, want: DesiredState): string | undefined {
    const extension = (name: string | undefined): boolean =>
      name !== undefined &&
      name !== USER_BRIDGE &&
      (userBridgeNumber(name) !== undefined ||
        bridgeLinkNumber(name) !== undefined ||
        Object.values(MACVTAP_LOWER).includes(name as never));
    switch (ev.kind) {
      case "link": {
        const l = ev.link;
        const name = this.#renames.get(ev) ?? l.name;
        if (extension(name) || extension(l.name)) return `a notice about link ${name}`;
        if (l.family === NL.AF_BRIDGE || ev.op === "del" || !want.ports.has(name)) return undefined;
        const before = this.#masters.get(l.index);
        return before !== l.master ? `port ${name} moved between bridges` : undefined;
      }
      case "neigh": {
        const n = ev.neigh;
        // Learned entries come and go with traffic; Stratum's are static.
        if (!(n.state & (NL.NUD_NOARP | NL.NUD_PERMANENT))) return undefined;
        const on = this.#names.get(n.ifindex);
        return extension(on) ? `a notice about FDB entry ${n.mac ?? ""} on ${on}` : undefined;
      }
      case "tc": {
        // A port's programs, or a link end's (stm_link_in: the bridges' reconciler keeps them).
        const on = this.#names.get(ev.tc.ifindex);
        return on !== undefined && (want.ports.has(on) || extension(on)) && onClsact(ev.tc)
          ? `a notice about a ${ev.tc.object} on ${want.ports.has(on) ? "port " : ""}${on}`
          : undefined;
      }
      case "addr":
        return undefined;
    }
  }

  /** The object a notice is about; undefined when it can never matter. Keeps the index map. */
  #key(ev: RtnlEvent): string | undefined {
    switch (ev.kind) {
      case "link": {
        const l = ev.link;
        if (l.family === NL.AF_BRIDGE) return `brport ${l.name}`;
        const before = this.#names.get(l.index);
        if (ev.op === "del") {
          this.#names.delete(l.index);
          this.#userBridges.delete(l.index);
        } else this.#setName(l.index, l.name);
        if (before === undefined || before === l.name) return `link ${l.name}`;
        // Renamed: the old name is gone, which is what matters if it was one of Stratum's.
        this.#renames.set(ev, before);
        return `link ${before}`;
      }
      case "addr":
        return `addr ${ev.addr.index} ${ev.addr.cidr}`;
      case "neigh":
        // Bridge FDB entries only: ARP and ND entries come and go all the time.
        if (ev.neigh.family !== NL.AF_BRIDGE || !ev.neigh.mac) return undefined;
        return `fdb ${ev.neigh.ifindex} ${ev.neigh.mac.toLowerCase()}`;
      case "tc":
        return `tc ${ev.tc.object} ${ev.tc.ifindex} ${ev.tc.parent}`;
    }
  }

  #judge(
    ev: RtnlEvent,
    want: DesiredState,
    userBridge: number | undefined,
    userBridges: ReadonlySet<number>,
  ): string | undefined {
    switch (ev.kind) {
      case "link":
        return this.#judgeLink(ev, want, userBridge, userBridges);
      case "addr": {
        const a = ev.addr;
        if (a.index !== userBridge) return undefined;
        const wanted = want.gateways.has(a.cidr);
        if (ev.op === "del") return wanted ? `gateway address ${a.cidr} removed from ${USER_BRIDGE}` : undefined;
        if (wanted && a.proto !== STRATUM_ADDR_PROTO)
          return `gateway address ${a.cidr} on ${USER_BRIDGE} is not tagged as Stratum's`;
        if (!wanted && a.proto === STRATUM_ADDR_PROTO)
          return `address ${a.cidr} on ${USER_BRIDGE} is tagged as Stratum's but no network has it`;
        return undefined;
      }
      case "neigh": {
        const n = ev.neigh;
        const port = this.#names.get(n.ifindex);
        const mac = port === undefined ? undefined : want.ports.get(port);
        if (port === undefined || mac === undefined || mac !== n.mac?.toLowerCase()) return undefined;
        // An entry in the port's own table (NTF_SELF), not the bridge's, is not the one Stratum keeps.
        if (n.flags & NL.NTF_SELF && !(n.flags & NL.NTF_MASTER)) return undefined;
        if (ev.op === "del") return `static FDB entry ${mac} on ${port} removed`;
        if (!(n.state & NL.NUD_NOARP)) return `FDB entry ${mac} on ${port} is not static`;
        return undefined;
      }
      case "tc": {
        // A port's programs hang off its clsact qdisc; one swapped cannot be told from a
        // notice (a whole run asks for the program ids), one removed can.
        const port = this.#names.get(ev.tc.ifindex);
        if (port === undefined || !want.ports.has(port) || ev.op !== "del" || !onClsact(ev.tc)) return undefined;
        return ev.tc.object === "qdisc" ? `port ${port} lost a qdisc` : `a filter was removed from port ${port}`;
      }
    }
  }

  #judgeLink(
    ev: RtnlEvent & { kind: "link" },
    want: DesiredState,
    userBridge: number | undefined,
    userBridges: ReadonlySet<number>,
  ): string | undefined {
    const l = ev.link;
    if (l.family === NL.AF_BRIDGE) {
      // The bridge's notice about one of its ports: only an endpoint port's flags are Stratum's.
      if (!want.ports.has(l.name)) return undefined;
      if (ev.op === "del") return `port ${l.name} left its bridge`;
      const bp = l.bridgePort;
      if (bp?.learning === true) return `port ${l.name} learns MAC addresses`;
      if (bp?.unicastFlood === true) return `port ${l.name} floods unknown unicast`;
      return undefined;
    }
    const renamed = this.#renames.get(ev);
    const name = renamed ?? l.name;
    const bridge = want.bridges.get(name);
    const port = want.ports.has(name) || name === want.uplink;
    if (bridge === undefined && !port) return undefined;
    const what = bridge !== undefined ? "bridge" : name === want.uplink ? "uplink" : "port";
    if (renamed) return `${what} ${renamed} renamed to ${l.name}`;
    if (ev.op === "del") return `${what} ${name} deleted`;
    if (bridge !== undefined) {
      if (l.kind !== undefined && l.kind !== "bridge") return `${name} is a ${l.kind}, not a bridge`;
      if (!l.up) return `bridge ${name} is down`;
      if (l.mac && l.mac !== bridge) return `bridge ${name} has MAC ${l.mac}, not ${bridge}`;
      return undefined;
    }
    // The uplink belongs on cnv-user-br0; an endpoint's port on it or one of its extensions; a
    // VM's macvtap on its lower device (a whole run checks which).
    if (l.kind === "macvtap" && what === "port") {
      if (l.link === undefined) return `macvtap ${name} has no lower device`;
    } else {
      const on = name === want.uplink ? l.master === userBridge : l.master !== undefined && userBridges.has(l.master);
      if (userBridge === undefined || !on) return `${what} ${name} is not a port of ${USER_BRIDGE}`;
    }
    if (!l.up) return `${what} ${name} is down`;
    return undefined;
  }
}
