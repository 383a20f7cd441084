/** The node's user bridges. A Linux bridge takes at most 1,023 ports, so a node's endpoints
 * beyond what cnv-user-br0 holds go on extension bridges cnv-user-br1 …, each joined to
 * cnv-user-br0 by a veth pair (cnv-user-l<i>a on cnv-user-br0, cnv-user-l<i>b on the extension).
 * The networks stay on cnv-user-br0 (its gateways, the uplink, the overlay): an extension is
 * more ports of the same segment.
 *
 * - Both ends of a link carry stm_link_out (bpf/include/stm_link.h): a frame that crosses keeps
 *   the port it came from, so isolation, port security and the firewall judge it as on one bridge.
 * - cnv-user-br0 has a static FDB entry on the link for every endpoint of the extension; an
 *   extension floods what it does not know to its link only (its endpoints' ports flood no
 *   unknown unicast). Learning is off on both ends.
 * - Order (fail closed): a link's interface entries and programs are in place before its ends
 *   join a bridge and come up.
 *
 * cnv-user-br0 keeps a port for the link of every extension there may be, so a node fills
 * cnv-user-br0 first and extensions in turn. Docs: docs/networks.md#capacity. */
import { readFileSync, writeFileSync } from "node:fs";
import type { PortDatapath } from "../datapath/port-datapath";
import { ERRNO, StratumError } from "../errors";
import { bridgeLinkNames, bridgeLinkNumber, USER_BRIDGE, userBridgeName, userBridgeNumber } from "../model/topology";
import {
  addFdb,
  createBridge,
  createVeth,
  deleteFdbIfExists,
  deleteLinkIfExists,
  getLink,
  type Link,
  listLinks,
  type Rtnl,
  setBridgePort,
  setLink,
} from "../netlink";
import { bridgeMac } from "../netlink/bridge-mac";
import { type BridgeLimits, bridgeLimits, mainEndpointsMax } from "./capacity";

/** Turns IPv6 off on a device (its link-local address, router solicitations, MLD): true when it
 * was on. A kernel without IPv6 has nothing to turn off. */
export function ipv6Off(dev: string): boolean {
  const path = `/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`;
  try {
    if (readFileSync(path, "utf8").trim() === "1") return false;
    writeFileSync(path, "1");
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}

/** A link end's MTU: never what limits a frame (a bridge's MTU follows its ports' lowest). */
const LINK_MTU = 65535;

export interface UserBridge {
  number: number;
  index: number;
  name: string;
}

export class UserBridges {
  /** Ports of each user bridge by its ifindex, counted from a dump and kept since. */
  readonly #fill = new Map<number, number>();
  /** Bridge number (0: cnv-user-br0) by ifindex. */
  readonly #numbers = new Map<number, number>();
  /** The ifindex of extension n's link end, by n, when it is a port of cnv-user-br0. */
  readonly #mainEnds = new Map<number, number>();
  /** Ports of cnv-user-br0 that are no endpoint's: links' ends, the uplink, the overlay. */
  #mainOthers = 0;
  #counted = false;

  constructor(
    private readonly nl: Rtnl,
    private readonly dp: PortDatapath,
    readonly limits: BridgeLimits = bridgeLimits(),
  ) {}

  /** Counts every user bridge's ports from a dump of the links (default: one made now). */
  count(links: Iterable<Link> = listLinks(this.nl)): void {
    const all = [...links];
    this.#fill.clear();
    this.#numbers.clear();
    this.#mainEnds.clear();
    this.#mainOthers = 0;
    let main: number | undefined;
    for (const l of all) {
      const i = userBridgeNumber(l.name);
      if (i === undefined || l.kind !== "bridge") continue;
      this.#numbers.set(l.index, i);
      this.#fill.set(l.index, 0);
      if (i === 0) main = l.index;
    }
    const devices = new Set(this.dp.ifaceIndexes()); // the uplink, the overlay, links' ends
    for (const l of all) {
      const f = l.master === undefined ? undefined : this.#fill.get(l.master);
      if (f === undefined) continue;
      this.#fill.set(l.master as number, f + 1);
      if (l.master !== main) continue;
      const e = bridgeLinkNumber(l.name);
      if (e !== undefined && l.name === bridgeLinkNames(e).main) this.#mainEnds.set(e, l.index);
      if (e !== undefined || devices.has(l.index)) this.#mainOthers++;
    }
    this.#counted = true;
  }

  /** The user bridge with ifindex `index`, or undefined for another device. */
  bridgeOf(index: number | undefined): UserBridge | undefined {
    if (index === undefined) return undefined;
    if (!this.#counted) this.count();
    const n = this.#numbers.get(index);
    return n === undefined ? undefined : { number: n, index, name: userBridgeName(n) };
  }

  /** The ifindex of extension `n`'s link end on cnv-user-br0 (its FDB entries are there). */
  linkIndex(n: number): number | undefined {
    if (!this.#counted) this.count();
    return this.#mainEnds.get(n);
  }

  /** The extensions there are, by number. */
  extensions(): number[] {
    if (!this.#counted) this.count();
    return [...this.#numbers.values()].filter((n) => n > 0).sort((a, b) => a - b);
  }

  /** The bridge a new port joins: cnv-user-br0 while it has room for one more endpoint
   * (mainEndpointsMax), else the first extension with a free port (its link repaired first if
   * it is not whole), else a new extension (made here, with its link). Counted again once
   * before it says every bridge is full (a port deleted behind its back). */
  place(recounted = false): UserBridge {
    if (!this.#counted) this.count();
    const byNumber = new Map([...this.#numbers].map(([index, n]) => [n, index]));
    const main = byNumber.get(0);
    if (main === undefined) throw new StratumError("NOT_FOUND", `bridge ${USER_BRIDGE} does not exist`);
    if ((this.#fill.get(main) ?? 0) - this.#mainOthers < mainEndpointsMax(this.limits))
      return { number: 0, index: main, name: USER_BRIDGE };
    for (let n = 1; n <= this.limits.extensions; n++) {
      let index = byNumber.get(n);
      if (index === undefined || !this.#mainEnds.has(n)) index = this.ensureExtension(n).bridge.index;
      if ((this.#fill.get(index) ?? 0) < this.limits.ports) return { number: n, index, name: userBridgeName(n) };
    }
    if (!recounted) {
      this.count();
      return this.place(true);
    }
    throw new StratumError(
      "CAPACITY",
      `every user bridge is full (${USER_BRIDGE} and ${this.limits.extensions} extensions of ${this.limits.ports} ports)`,
    );
  }

  /** Puts `port` on a user bridge (the one `place` picks) unless it is on one already; a bridge
   * that turns out full (EXFULL: counted before another's change) is counted again and the next
   * one tried. Returns the bridge. */
  join(port: Link): UserBridge {
    const on = this.bridgeOf(port.master);
    if (on) return on;
    for (let tries = 0; ; tries++) {
      try {
        const br = this.place();
        setLink(port.name, { master: br.name }, this.nl);
        this.#fill.set(br.index, (this.#fill.get(br.index) ?? 0) + 1);
        return br;
      } catch (e) {
        if (!(e instanceof StratumError && e.errno === ERRNO.EXFULL) || tries >= 2) throw e;
        this.count();
      }
    }
  }

  /** A port left bridge `index` (its device deleted or moved). */
  left(index: number | undefined): void {
    const f = index === undefined ? undefined : this.#fill.get(index);
    if (f !== undefined) this.#fill.set(index as number, Math.max(0, f - 1));
  }

  /** cnv-user-br0's static FDB entry for an endpoint of extension `n`: on the link. */
  addMainEntry(n: number, mac: string): void {
    addFdb({ dev: bridgeLinkNames(n).main, mac }, {}, this.nl);
  }

  /** Removes that entry (gone already: nothing to do). */
  deleteMainEntry(n: number, mac: string): void {
    deleteFdbIfExists({ dev: bridgeLinkNames(n).main, mac }, this.nl);
  }

  /** Makes (or repairs) extension `n`: the veth pair, each end's interface entry and program,
   * the bridge, the ends joined (learning off; no unknown unicast from cnv-user-br0 into the
   * extension), then up. Idempotent; `links`: a dump to read instead of asking per device.
   * `changed`: whether it changed a link (made, joined, flags, up). */
  ensureExtension(n: number, links?: Map<string, Link>): { bridge: Link; changed: boolean } {
    let changed = false;
    const get = (name: string) => (links ? (links.get(name) ?? null) : getLink(name, this.nl));
    const names = bridgeLinkNames(n);
    const name = userBridgeName(n);
    let main = get(names.main);
    let ext = get(names.ext);
    if (!main || !ext || main.kind !== "veth" || ext.kind !== "veth") {
      deleteLinkIfExists(names.main, this.nl);
      deleteLinkIfExists(names.ext, this.nl);
      main = createVeth(names.main, names.ext, { mtu: LINK_MTU }, this.nl);
      ext = getLink(names.ext, this.nl) as Link;
      changed = true;
    }
    for (const end of [main, ext]) {
      this.dp.setIface(end.index, { kind: "link" });
      this.dp.attachLink(end.index);
      changed = ipv6Off(end.name) || changed;
    }
    let br = get(name);
    if (br && br.kind !== "bridge")
      throw new StratumError("INVALID", `${name} exists but is a ${br.kind ?? "non-bridge"} device`);
    const mac = bridgeMac(name);
    // A switch only: its own stack takes nothing (its program before it comes up) and it
    // speaks no IPv6 of its own.
    if (!br) {
      br = createBridge(name, { mac }, this.nl);
      changed = true;
    }
    this.dp.attachLinkBridge(br.index);
    changed = ipv6Off(name) || changed;
    if (!br.up || br.mac !== mac) {
      setLink(name, { up: true, mac }, this.nl);
      changed = true;
    }
    const mainBr = get(USER_BRIDGE);
    if (!mainBr) throw new StratumError("NOT_FOUND", `bridge ${USER_BRIDGE} does not exist`);
    if (!this.#numbers.has(br.index)) {
      this.#numbers.set(br.index, n);
      this.#fill.set(br.index, 0);
    }
    const wire = (end: Link, master: Link, unicastFlood: boolean) => {
      let now = end;
      if (end.master !== master.index) {
        setLink(end.name, { master: master.name }, this.nl);
        now = getLink(end.name, this.nl) as Link;
        changed = true;
        this.#fill.set(master.index, (this.#fill.get(master.index) ?? 0) + 1);
        if (master === mainBr) this.#mainOthers++;
      }
      if (now.bridgePort?.learning !== false || now.bridgePort?.unicastFlood !== unicastFlood) {
        setBridgePort(end.name, { learning: false, unicastFlood }, this.nl);
        changed = true;
      }
      if (!now.up) {
        setLink(end.name, { up: true }, this.nl);
        changed = true;
      }
    };
    wire(main, mainBr, false);
    wire(ext, br, true);
    this.#mainEnds.set(n, main.index);
    return { bridge: br, changed };
  }

  /** Makes (or repairs) a macvtap lower link (docs/networks.md#vms-on-a-macvtap): the veth
   * pair, the inner end a link end (its interface entry, stm_link_in/out) and a port of a user
   * bridge (cnv-user-br0 for the shared one; placed as an endpoint's port for a passthru VM's
   * own), learning and unknown-unicast flooding off, hairpin on for the shared one (the bridge
   * reflects VEPA traffic); the outer end with stm_mvl_out on egress; IPv6 off on both; then up.
   * Idempotent. Returns the outer end (the macvtaps' lower device) and the bridge of the inner. */
  ensureMacvtapLower(
    names: { outer: string; inner: string; own: boolean },
    links?: Map<string, Link>,
  ): { outer: Link; inner: Link; bridge: UserBridge } {
    const get = (name: string) => (links ? (links.get(name) ?? null) : getLink(name, this.nl));
    let outer = get(names.outer);
    let inner = get(names.inner);
    if (!outer || !inner || outer.kind !== "veth" || inner.kind !== "veth") {
      deleteLinkIfExists(names.outer, this.nl);
      deleteLinkIfExists(names.inner, this.nl);
      outer = createVeth(names.outer, names.inner, { mtu: LINK_MTU }, this.nl);
      inner = getLink(names.inner, this.nl) as Link;
    }
    this.dp.setIface(inner.index, { kind: "link" });
    this.dp.attachLink(inner.index);
    this.dp.attachMacvtapLower(outer.index);
    ipv6Off(names.outer);
    ipv6Off(names.inner);
    let bridge: UserBridge | undefined;
    if (names.own) bridge = this.join(inner);
    else {
      bridge = this.bridgeOf(inner.master);
      if (bridge?.number !== 0) {
        setLink(names.inner, { master: USER_BRIDGE }, this.nl);
        inner = getLink(names.inner, this.nl) as Link;
        bridge = this.bridgeOf(inner.master);
        if (bridge) this.#fill.set(bridge.index, (this.#fill.get(bridge.index) ?? 0) + 1);
        this.#mainOthers++;
      }
    }
    if (!bridge) throw new StratumError("NOT_FOUND", `bridge ${USER_BRIDGE} does not exist`);
    const hairpin = !names.own;
    if (
      inner.bridgePort?.learning !== false ||
      inner.bridgePort?.unicastFlood !== false ||
      (inner.bridgePort?.hairpin ?? false) !== hairpin
    )
      setBridgePort(names.inner, { learning: false, unicastFlood: false, hairpin }, this.nl);
    if (!inner.up) setLink(names.inner, { up: true }, this.nl);
    if (!outer.up) setLink(names.outer, { up: true }, this.nl);
    return { outer: getLink(names.outer, this.nl) as Link, inner, bridge };
  }

  /** Removes a macvtap lower link (its macvtaps go with its outer end). */
  removeMacvtapLower(names: { outer: string; inner: string }): void {
    const inner = getLink(names.inner, this.nl);
    if (inner) {
      const br = this.bridgeOf(inner.master);
      setLink(names.inner, { up: false }, this.nl);
      this.dp.deleteIface(inner.index);
      deleteLinkIfExists(names.inner, this.nl);
      if (br) this.left(br.index);
      if (br?.number === 0) this.#mainOthers = Math.max(0, this.#mainOthers - 1);
    }
    deleteLinkIfExists(names.outer, this.nl);
  }

  /** Removes extension `n` with its link (its endpoints' ports must be gone). */
  removeExtension(n: number): void {
    const names = bridgeLinkNames(n);
    for (const end of [names.main, names.ext]) {
      const l = getLink(end, this.nl);
      if (!l) continue;
      setLink(end, { up: false }, this.nl);
      deleteLinkIfExists(end, this.nl);
      this.dp.deleteIface(l.index);
    }
    deleteLinkIfExists(userBridgeName(n), this.nl);
    this.count();
  }

  /** ifindexes of the links' ends there are (their interface entries are theirs). */
  linkEnds(links: Iterable<Link>): Set<number> {
    const out = new Set<number>();
    for (const l of links) if (bridgeLinkNumber(l.name) !== undefined) out.add(l.index);
    return out;
  }
}
