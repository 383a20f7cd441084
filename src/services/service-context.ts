/** What every service of the node works with: the store (the desired state), the datapath and
 * rtnetlink (the kernel), a log for what is not fatal, the change feed the address and name
 * servers follow, and the capacity check every request passes before it writes anything. */

import type { PortDatapath } from "../datapath/port-datapath";
import { XskDatapath } from "../datapath/xsk";
import { type MicrosegDoc, MSEG } from "../model/microseg";
import { type Rtnl, rtnl } from "../netlink";
import type { Store } from "../store/store";
import { checkRoom, type Entries } from "./capacity";
import { UserBridges } from "./user-bridges";

/** What changed: some networks (absent: anything), and of them only one endpoint. */
export type ChangeListener = (networks?: ReadonlySet<string>, endpoint?: string) => void;

export class ServiceContext {
  /** Called after every change that the DHCP and DNS servers serve (networks, endpoints,
   * records): they rebuild what they answer from the store; with `networks`, only those
   * networks changed. */
  readonly #listeners: ChangeListener[] = [];

  /** A cluster node: the overlay's MTU (its underlay's less VXLAN's overhead), a new network's
   * MTU unless it says one. Absent: 1500. */
  defaultMtu?: number;

  /** The NAT port range (agent --nat-ports, else outside the kernel's ephemeral ports). */
  natPorts: { lo: number; hi: number } = { lo: 1024, hi: 32767 };

  /** A gateway in gateway groups: the VIPs of its groups (the first group's of each family, by
   * name), what masquerading translates to before the uplink's own address. */
  groupVips?: () => { v4?: string; v6?: string };

  constructor(
    readonly store: Store,
    readonly dp: PortDatapath,
    readonly nl: Rtnl = rtnl(),
    readonly log: (msg: string) => void = () => {},
  ) {}

  #groupIds?: { doc: MicrosegDoc; ids: Map<string, number> };
  #bridges?: UserBridges;

  #xsk?: XskDatapath;

  /** AF_XDP for VMs: the xsk object, loaded when first needed (datapath/xsk.ts). */
  get xsk(): XskDatapath {
    this.#xsk ??= new XskDatapath(this.dp.pinRoot);
    return this.#xsk;
  }

  /** The user bridges and how full they are (user-bridges.ts). */
  get bridges(): UserBridges {
    this.#bridges ??= new UserBridges(this.nl, this.dp);
    return this.#bridges;
  }

  /** The id of a microsegmentation group (0: none, or a group the policy does not have). */
  groupId(name: string | undefined): number {
    if (name === undefined) return MSEG.UNTAGGED;
    const doc = this.store.getMicroseg();
    if (this.#groupIds?.doc !== doc) this.#groupIds = { doc, ids: new Map(doc.groups.map((g) => [g.name, g.id])) };
    return this.#groupIds.ids.get(name) ?? MSEG.UNTAGGED;
  }

  onChange(fn: ChangeListener): void {
    this.#listeners.push(fn);
  }

  /** `networks`: only these networks changed (absent: anything may have); `endpoint`: of
   * them, only this endpoint (attached, detached, its settings), so a listener that keeps
   * each network's endpoints may read that one again instead of them all. */
  changed(networks?: ReadonlySet<string>, endpoint?: string): void {
    for (const fn of this.#listeners) {
      try {
        fn(networks, endpoint);
      } catch (e) {
        this.log(`refresh after a change: ${(e as Error).message}`);
      }
    }
  }

  /** CAPACITY, before anything is written, when `need` does not fit in the maps (capacity.ts). */
  room(need: Partial<Entries>, what: string): void {
    checkRoom(this.store, this.dp, need, what);
  }
}
